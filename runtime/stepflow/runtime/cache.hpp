#pragma once
// The application cache (PowerFlow's CacheSave / CacheRead): JSON values under
// string keys with an optional time-to-live, stored in table::cache with an
// expiry index in table::cache_expiry. Thread-safe.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "stepflow/runtime/clock.hpp"
#include "stepflow/runtime/json.hpp"
#include "stepflow/runtime/kv_store.hpp"

namespace stepflow {

class cache {
public:
  cache(kv_store& store, const clock_source& clock) noexcept
    : store_(store), clock_(clock) {}

  /// Stores `value` under `key`; `ttl_seconds` <= 0 means no expiry.
  caf::error put(std::string_view key, const json::value& value, int64_t ttl_seconds = 0);

  /// Asynchronous put; `done` runs on the store's writer thread after commit.
  void put_async(std::string_view key, const json::value& value, int64_t ttl_seconds,
                 std::function<void(caf::error)> done);

  /// The value, std::nullopt when absent or expired.
  caf::expected<std::optional<json::value>> get(std::string_view key) const;

  /// Removes `key`; removing an absent key is not an error.
  caf::error erase(std::string_view key);

  /// Asynchronous erase; `done` runs on the store's writer thread after
  /// commit (or at once on the caller's thread for an invalid key).
  void erase_async(std::string_view key, std::function<void(caf::error)> done);

  /// Deletes every expired entry; returns how many went.
  caf::expected<uint64_t> sweep_expired();

private:
  kv_store& store_;
  const clock_source& clock_;
};

} // namespace stepflow
