#pragma once
// The embedded store: named tables of ordered byte keys, one writer with
// group commit, many concurrent readers. Two implementations: LMDB
// (open_lmdb_store) and an in-memory fake with identical semantics
// (make_memory_store) for tests. All members are thread-safe.
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "stepflow/runtime/errc.hpp"
#include "stepflow/runtime/histogram.hpp"

namespace stepflow {

/// The named databases of the store. Key layouts are documented in
/// docs/architecture.md ("Store layout").
enum class table : uint8_t {
  applications,   ///< app id -> application JSON
  configurations, ///< config name -> configuration JSON (encrypted values stay encrypted)
  steps,          ///< step name -> step definition JSON
  runs,           ///< run id -> run record JSON
  runs_by_time,   ///< be64(created ns) + run id -> "" (timeline, retention)
  step_state,     ///< run id + '\0' + be32(step index) -> step record JSON (with data)
  step_logs,      ///< run id + '\0' + be32(step index) + be32(seq) -> log line JSON
  cache,          ///< cache key -> be64(expiry ns, 0 = never) + JSON value
  cache_expiry,   ///< be64(expiry ns) + cache key -> ""
  meta,           ///< store-level settings (schema version, admin user, ...)
  queue,          ///< queue name + '\0' + be32(255 - priority) + be64(seq) -> task id:
                  ///< runs accepted and not yet finished (the durable queue)
  children,       ///< parent task id + '\0' + child task id -> "" (runs started by runs)
};
inline constexpr int table_count = 12;

std::string_view table_name(table t) noexcept;

/// One change inside a write batch.
struct write_op {
  enum kind_t : uint8_t { put, erase, erase_prefix };
  kind_t kind = put;
  table tbl = table::meta;
  std::string key;
  std::string value; ///< only for put
};

/// Changes applied atomically: all of them or none.
using write_batch = std::vector<write_op>;

/// Visitor for scans; return false to stop.
using scan_fn = std::function<bool(std::string_view key, std::string_view value)>;

struct store_stats {
  uint64_t map_size = 0;      ///< current LMDB map size in bytes (0 for memory)
  uint64_t commits = 0;       ///< write transactions committed
  uint64_t batches = 0;       ///< write batches applied (>= commits: group commit)
  uint64_t map_resizes = 0;   ///< times the map was grown after MDB_MAP_FULL
  /// Time of one commit (writing pages and syncing them), over the last
  /// commit_window commits, in microseconds; 0 when none was made.
  static constexpr size_t commit_window = 1024;
  uint64_t commit_us_p50 = 0;
  uint64_t commit_us_p99 = 0;
  uint64_t commit_us_max = 0;
  /// Commits since start that took longer than 10 ms (a slow or busy disk).
  uint64_t slow_commits = 0;
  /// Commits since start by duration (see histogram.hpp).
  duration_counts commit_histogram{};
};

class kv_store {
public:
  virtual ~kv_store() = default;

  /// The value under `key`, std::nullopt when absent, or errc::store_error.
  virtual caf::expected<std::optional<std::string>> get(table t,
                                                        std::string_view key) const = 0;

  /// Visits keys >= `from` in ascending order (descending from the last key
  /// <= `from` when `reverse`; an empty `from` then means "from the end")
  /// while they start with `prefix`.
  virtual caf::error scan(table t, std::string_view prefix, std::string_view from,
                          bool reverse, const scan_fn& f) const = 0;

  /// Applies `batch` in one durable transaction; returns after the commit.
  virtual caf::error write(write_batch batch) = 0;

  /// Queues `batch`; `done` runs on the store's completion thread (in commit
  /// order; keep it short) once the transaction holding it committed (or
  /// failed). Batches queued while a commit is in
  /// progress are committed together (group commit). A failing batch fails
  /// alone: the others of the group are retried without it.
  virtual void write_async(write_batch batch, std::function<void(caf::error)> done) = 0;

  virtual store_stats stats() const = 0;
};

/// Options of the LMDB store, read once at start-up.
struct store_options {
  /// Directory holding data.mdb / lock.mdb; created if missing.
  std::string path;
  /// Initial map size in bytes; the map doubles whenever it fills up.
  /// Default: 256 MiB.
  uint64_t initial_map_size = 256ull << 20;
  /// fsync on every commit (durability). Tests may turn it off. Default: true.
  bool sync = true;
  /// Called on the writer thread before each group's transaction begins
  /// (tests hold the writer with it to build a group). Default: none.
  std::function<void()> before_commit;
};

caf::expected<std::unique_ptr<kv_store>> open_lmdb_store(const store_options& opts);

/// In-memory store with the same semantics (no durability).
std::unique_ptr<kv_store> make_memory_store();

// -- key helpers --------------------------------------------------------------

/// Big-endian encodings keep numeric keys ordered.
std::string be64(uint64_t x);
std::string be32(uint32_t x);
uint64_t read_be64(std::string_view s) noexcept; ///< first 8 bytes
uint32_t read_be32(std::string_view s) noexcept; ///< first 4 bytes

/// True if `s` begins with `prefix`.
bool starts_with(std::string_view s, std::string_view prefix) noexcept;

/// The smallest key greater than every key starting with `prefix`;
/// std::nullopt when there is none (empty prefix or all 0xFF bytes).
std::optional<std::string> prefix_successor(std::string_view prefix);

} // namespace stepflow
