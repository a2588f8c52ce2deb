// The application cache on kv_store.
//
// table::cache        key -> be64(expiry ns, 0 = never) + compact JSON
// table::cache_expiry be64(expiry ns) + key -> ""   (only when expiry != 0)
//
// Cache keys are 1..503 bytes: the index key prepends 8 bytes and LMDB keys
// stop at 511. Longer or empty keys fail with errc::invalid_argument.
//
// Expiry is lazy: get() hides an expired entry, sweep_expired() deletes it.
// An entry expires when now >= expiry.
//
// Concurrency. kv_store has no compare-and-set, so put reads the old entry
// (to drop its index key) before its batch commits, and two racing puts of
// one key can leave a stale index key behind. sweep_expired therefore only
// deletes a value whose stored expiry equals the index key it found; stale
// index keys are just removed. The remaining hazard, a sweep deleting a value
// that a racing put has just replaced, is closed by a process-wide registry
// of puts: sweep skips every key with a put in flight or finished since the
// sweep began, and it checks the registry and queues its erase batch under
// the registry's mutex, so a put registered later is queued after the erase.
// The registry mutex is never held while reading the store or waiting for
// the writer (a scan callback may put; the writer's callbacks take it).
#include "stepflow/runtime/cache.hpp"

#include <algorithm>
#include <limits>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include <boost/json/serialize.hpp>
#include <fmt/format.h>

namespace stepflow {

namespace {

constexpr size_t max_cache_key_size = 511 - 8;

/// Index keys looked at per sweep round.
constexpr size_t sweep_chunk = 1000;

caf::error check_cache_key(std::string_view key) {
  if (key.empty())
    return make_error(errc::invalid_argument, "empty cache key");
  if (key.size() > max_cache_key_size)
    return make_error(errc::invalid_argument,
                      fmt::format("cache key of {} bytes exceeds the {}-byte limit",
                                  key.size(), max_cache_key_size));
  return {};
}

/// Expiry in ns for a TTL starting now; 0 (never) when ttl_seconds <= 0.
uint64_t expiry_for(int64_t now_ns, int64_t ttl_seconds) noexcept {
  if (ttl_seconds <= 0)
    return 0;
  constexpr int64_t ns_per_s = 1'000'000'000;
  constexpr int64_t max = std::numeric_limits<int64_t>::max();
  int64_t now = std::max<int64_t>(now_ns, 0);
  if (ttl_seconds > (max - now) / ns_per_s)
    return static_cast<uint64_t>(max);
  return static_cast<uint64_t>(now + ttl_seconds * ns_per_s); // > 0
}

bool is_expired(uint64_t expiry, int64_t now_ns) noexcept {
  return expiry != 0 && now_ns > 0 && expiry <= static_cast<uint64_t>(now_ns);
}

/// The expiry of a stored entry, std::nullopt when the entry is malformed.
std::optional<uint64_t> stored_expiry(std::string_view raw) noexcept {
  if (raw.size() < 8)
    return std::nullopt;
  return read_be64(raw);
}

std::string index_key(uint64_t expiry, std::string_view key) {
  auto k = be64(expiry);
  k.append(key);
  return k;
}

// -- puts in flight ---------------------------------------------------------------

struct put_registry {
  struct entry {
    uint32_t running = 0; ///< puts queued, not yet committed
    uint64_t last_end = 0; ///< `seq` when the last one finished
  };
  std::mutex mutex;
  std::unordered_map<std::string, entry> keys;
  uint64_t seq = 0;
  bool sweeping = false; ///< keep finished entries for the running sweep

  static std::string id(const kv_store& store, std::string_view key) {
    return fmt::format("{}/{}", static_cast<const void*>(&store), key);
  }

  void begin(const std::string& id) {
    std::lock_guard guard(mutex);
    ++keys[id].running;
  }

  void end(const std::string& id) {
    std::lock_guard guard(mutex);
    auto i = keys.find(id);
    if (i == keys.end())
      return;
    --i->second.running;
    i->second.last_end = ++seq;
    if (i->second.running == 0 && !sweeping)
      keys.erase(i);
  }

  /// True when a put of `id` ran at any time after `since` (a sequence
  /// number taken when the sweep began). Requires `mutex`.
  bool touched_since(const std::string& id, uint64_t since) const {
    auto i = keys.find(id);
    return i != keys.end() && (i->second.running > 0 || i->second.last_end > since);
  }
};

put_registry& puts() {
  // Leaked on purpose: writer threads of static stores may still call end()
  // during static destruction.
  static auto* registry = new put_registry;
  return *registry;
}

/// Serialises sweeps in the process (concurrent ones would only duplicate
/// work and counts).
std::mutex& sweep_mutex() {
  static auto* m = new std::mutex;
  return *m;
}

/// The batch storing `value` under `key`, dropping the old entry's index key.
caf::expected<write_batch> make_put(const kv_store& store, const clock_source& clock,
                                    std::string_view key, const json::value& value,
                                    int64_t ttl_seconds) {
  if (auto err = check_cache_key(key))
    return err;
  auto old = store.get(table::cache, key);
  if (!old)
    return old.error();
  uint64_t expiry = expiry_for(clock.now_ns(), ttl_seconds);
  write_batch batch;
  if (*old) {
    if (auto old_expiry = stored_expiry(**old); old_expiry && *old_expiry != 0)
      batch.push_back({write_op::erase, table::cache_expiry, index_key(*old_expiry, key), {}});
  }
  std::string stored = be64(expiry);
  stored += json::serialize(value);
  batch.push_back({write_op::put, table::cache, std::string{key}, std::move(stored)});
  if (expiry != 0)
    batch.push_back({write_op::put, table::cache_expiry, index_key(expiry, key), {}});
  return batch;
}

} // namespace

caf::error cache::put(std::string_view key, const json::value& value, int64_t ttl_seconds) {
  auto batch = make_put(store_, clock_, key, value, ttl_seconds);
  if (!batch)
    return batch.error();
  auto id = put_registry::id(store_, key);
  puts().begin(id);
  auto err = store_.write(std::move(*batch));
  puts().end(id);
  return err;
}

void cache::put_async(std::string_view key, const json::value& value, int64_t ttl_seconds,
                      std::function<void(caf::error)> done) {
  auto batch = make_put(store_, clock_, key, value, ttl_seconds);
  if (!batch) {
    // Nothing was queued: report on the caller's thread.
    if (done)
      done(batch.error());
    return;
  }
  auto id = put_registry::id(store_, key);
  puts().begin(id);
  store_.write_async(std::move(*batch),
                     [id = std::move(id), done = std::move(done)](caf::error err) {
                       puts().end(id);
                       if (done)
                         done(std::move(err));
                     });
}

caf::expected<std::optional<json::value>> cache::get(std::string_view key) const {
  if (auto err = check_cache_key(key))
    return err;
  auto raw = store_.get(table::cache, key);
  if (!raw)
    return raw.error();
  if (!*raw)
    return std::optional<json::value>{};
  std::string_view s = **raw;
  auto expiry = stored_expiry(s);
  if (!expiry)
    return make_error(errc::store_error, fmt::format("cache entry {} is corrupt", key));
  if (is_expired(*expiry, clock_.now_ns()))
    return std::optional<json::value>{};
  auto v = parse_json(s.substr(8), fmt::format("cache entry {}", key));
  if (!v)
    return make_error(errc::store_error, message_of(v.error()));
  return std::optional<json::value>{std::move(*v)};
}

namespace {
caf::expected<write_batch> make_erase(const kv_store& store, std::string_view key) {
  if (auto err = check_cache_key(key))
    return err;
  auto old = store.get(table::cache, key);
  if (!old)
    return old.error();
  // Erase the value even when it looks absent: a queued put may land first.
  write_batch batch;
  batch.push_back({write_op::erase, table::cache, std::string{key}, {}});
  if (*old) {
    if (auto expiry = stored_expiry(**old); expiry && *expiry != 0)
      batch.push_back({write_op::erase, table::cache_expiry, index_key(*expiry, key), {}});
  }
  return batch;
}
} // namespace

caf::error cache::erase(std::string_view key) {
  auto batch = make_erase(store_, key);
  if (!batch)
    return batch.error();
  return store_.write(std::move(*batch));
}

void cache::erase_async(std::string_view key, std::function<void(caf::error)> done) {
  auto batch = make_erase(store_, key);
  if (!batch) {
    if (done)
      done(batch.error());
    return;
  }
  store_.write_async(std::move(*batch), std::move(done));
}

caf::expected<uint64_t> cache::sweep_expired() {
  std::lock_guard sweep_guard(sweep_mutex());
  int64_t now = clock_.now_ns();
  if (now <= 0)
    return uint64_t{0};
  auto& registry = puts();
  uint64_t since;
  {
    std::lock_guard guard(registry.mutex);
    registry.sweeping = true;
    since = registry.seq;
  }
  struct sweep_end {
    put_registry& r;
    ~sweep_end() {
      std::lock_guard guard(r.mutex);
      r.sweeping = false;
      std::erase_if(r.keys, [](const auto& kv) { return kv.second.running == 0; });
    }
  } end_guard{registry};

  uint64_t removed = 0;
  std::string from; // next index key to look at
  for (;;) {
    std::vector<std::string> index_keys;
    bool more = false;
    auto err = store_.scan(table::cache_expiry, "", from, false,
                           [&](std::string_view k, std::string_view) {
                             if (read_be64(k) > static_cast<uint64_t>(now))
                               return false;
                             if (index_keys.size() == sweep_chunk) {
                               more = true;
                               return false;
                             }
                             index_keys.emplace_back(k);
                             return true;
                           });
    if (err)
      return err;
    if (index_keys.empty())
      break;
    // Whether each index key still describes the stored value.
    std::vector<bool> current(index_keys.size(), false);
    for (size_t i = 0; i < index_keys.size(); ++i) {
      const auto& ik = index_keys[i];
      if (ik.size() <= 8)
        continue; // malformed: no value to match
      auto raw = store_.get(table::cache, std::string_view{ik}.substr(8));
      if (!raw)
        return raw.error();
      current[i] = *raw && stored_expiry(**raw) == read_be64(ik);
    }
    write_batch batch;
    uint64_t n = 0;
    auto result = std::make_shared<caf::error>();
    {
      std::lock_guard guard(registry.mutex);
      for (size_t i = 0; i < index_keys.size(); ++i) {
        const auto& ik = index_keys[i];
        std::string_view key = std::string_view{ik}.substr(std::min<size_t>(ik.size(), 8));
        if (!key.empty() && registry.touched_since(put_registry::id(store_, key), since))
          continue; // what we read may be stale: leave it to a later sweep
        batch.push_back({write_op::erase, table::cache_expiry, ik, {}});
        if (current[i]) {
          batch.push_back({write_op::erase, table::cache, std::string{key}, {}});
          ++n;
        }
      }
      if (!batch.empty())
        store_.write_async(std::move(batch),
                           [result](caf::error e) { *result = std::move(e); });
    }
    // An empty write queued after ours returns once ours committed and its
    // callback ran.
    if (auto barrier = store_.write({}))
      return barrier;
    if (*result)
      return *result;
    removed += n;
    if (!more)
      break;
    from = index_keys.back();
    from.push_back('\0'); // the next key after it
  }
  return removed;
}

} // namespace stepflow
