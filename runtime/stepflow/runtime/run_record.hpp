#pragma once
// A run (PowerFlow: task) and its steps as recorded in the store and shown by
// the CLI and the REST API. Layout in the store:
//   runs[task_id]                      the task object without step data,
//                                      written when the run starts and ends
//   runs_by_time[be64(created)+id]     ""  (timeline order, retention)
//   step_state[id '\0' be32(step)]     the step's record: {status, started_ns,
//                                      ended_ns, error, log_count, data}
//   step_logs[id '\0' be32(step) be32(seq)]  one log line {time_ns, level, message}
// Each update is one write batch, so a crash never leaves half a record;
// load() merges step records over the run record.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "stepflow/runtime/json.hpp"
#include "stepflow/runtime/kv_store.hpp"
#include "stepflow/runtime/plan.hpp"
#include "stepflow/runtime/step.hpp"

namespace stepflow {

struct step_record {
  std::string name;
  std::string file;
  step_status status = step_status::pending;
  int64_t started_ns = 0;
  int64_t ended_ns = 0;
  std::shared_ptr<const json::value> data;
  std::string error;
  uint32_t log_count = 0;
};

struct run_record {
  std::string task_id;
  std::string application;
  std::string configuration;
  std::string queue = "default";
  /// 0 (lowest) .. 9 (highest): order within the queue.
  int priority = 0;
  json::object params;
  int log_level = 20;
  run_status status = run_status::pending;
  int64_t created_ns = 0;
  int64_t started_ns = 0;
  int64_t ended_ns = 0;
  /// Why the run failed before or outside its steps ("" otherwise).
  std::string error;
  std::string parent_task;
  /// The task this one replays (POST /tasks/{id}/replay), "" otherwise.
  std::string replay_of;
  uint32_t attempt = 1;
  std::vector<step_record> steps;
};

/// "isapp-" + a UUID version 7 (time-ordered, random low bits).
std::string new_task_id();

/// The task object. With `with_data`, every step carries its "data".
json::value to_json(const run_record& r, bool with_data = true);

/// The task object as stored in table::runs: compact JSON of the record's
/// fields, defaults left out (no step data, no display-only fields).
std::string stored_run_json(const run_record& r);

/// A record from its stored JSON (stored_run_json, or the display form older
/// versions stored); errc::bad_json / errc::store_error when it is corrupt.
caf::expected<run_record> parse_stored_run(std::string_view raw);

/// One log line as stored and shown: {"time", "level", "levelname", "message"}.
json::value to_json(const log_line& l);

/// Persistence of run records over a kv_store. Thread-safe.
class run_store {
public:
  explicit run_store(kv_store& store) noexcept : store_(store) {}

  /// Ops that write the whole record (without step data).
  write_batch record_ops(const run_record& r) const;
  /// Ops that write step `index` of `r` (its record with data) and `logs`
  /// numbered from `first_seq`. The run record itself is not rewritten.
  write_batch step_ops(const run_record& r, size_t index, const std::vector<log_line>& logs,
                       uint32_t first_seq) const;

  /// The record with step data, nullopt when unknown. A pending record whose
  /// steps have started is reported as running.
  caf::expected<std::optional<run_record>> load(const std::string& task_id) const;
  /// Log lines of one step in order.
  caf::expected<std::vector<log_line>> logs(const std::string& task_id, size_t index) const;
  /// Newest first, at most `limit`; step statuses as of the last run record
  /// (start or end), without step data.
  caf::expected<std::vector<run_record>> list(size_t limit) const;
  /// Deletes runs created before `cutoff_ns`; returns how many.
  caf::expected<uint64_t> purge_before(int64_t cutoff_ns);

private:
  kv_store& store_;
};

} // namespace stepflow
