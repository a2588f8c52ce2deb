#pragma once
// Counts of durations in fixed millisecond buckets, lock-free (the store's
// commits and the HTTP server's requests; shown by GET /api/v1/status).
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

namespace stepflow {

/// Upper bounds of the buckets in milliseconds; the last one (0) counts the
/// rest.
inline constexpr std::array<uint32_t, 10> duration_buckets_ms{1, 2, 5, 10, 20, 50,
                                                              100, 200, 500, 0};

/// counts[i]: durations up to duration_buckets_ms[i] that no smaller bucket
/// holds.
using duration_counts = std::array<uint64_t, duration_buckets_ms.size()>;

/// The bucket's name in JSON: "le_N", or "more" for the last.
inline std::string duration_bucket_name(size_t i) {
  auto limit = duration_buckets_ms[i];
  return limit ? "le_" + std::to_string(limit) : std::string("more");
}

class duration_histogram {
public:
  void record(std::chrono::microseconds d) noexcept {
    size_t b = 0;
    while (b + 1 < duration_buckets_ms.size()
           && d.count() > int64_t{duration_buckets_ms[b]} * 1000)
      ++b;
    counts_[b].fetch_add(1, std::memory_order_relaxed);
  }

  duration_counts counts() const noexcept {
    duration_counts out{};
    for (size_t b = 0; b < out.size(); ++b)
      out[b] = counts_[b].load(std::memory_order_relaxed);
    return out;
  }

private:
  std::array<std::atomic<uint64_t>, duration_buckets_ms.size()> counts_{};
};

} // namespace stepflow
