#pragma once
// Wall-clock time behind an interface so tests can control it.
#include <cstdint>
#include <memory>
#include <string>

namespace stepflow {

class clock_source {
public:
  virtual ~clock_source() = default;
  /// Nanoseconds since the Unix epoch.
  virtual int64_t now_ns() const noexcept = 0;
};

/// The system clock (a process-wide instance; thread-safe).
const clock_source& system_clock() noexcept;

/// A clock that only moves when told to (tests).
class manual_clock final : public clock_source {
public:
  explicit manual_clock(int64_t start_ns = 1'700'000'000'000'000'000) noexcept
    : now_(start_ns) {}
  int64_t now_ns() const noexcept override { return now_; }
  void advance_ns(int64_t d) noexcept { now_ += d; }
  void set_ns(int64_t t) noexcept { now_ = t; }

private:
  int64_t now_;
};

/// ISO-8601 UTC with milliseconds, e.g. "2026-11-22T02:33:10.123Z".
std::string format_time(int64_t ns);

} // namespace stepflow
