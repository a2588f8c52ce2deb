#pragma once
// Warm external processes that speak newline-delimited JSON on stdin/stdout
// (docs/step-protocol.md). One I/O thread owns every pipe and timer; callers
// submit tasks from any thread and hear back through callbacks that run on
// that thread (keep them short: post or anon_send elsewhere). Never blocks
// the caller.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "stepflow/runtime/errc.hpp"
#include "stepflow/runtime/json.hpp"

namespace stepflow {

/// How to run the processes of one group (one external step type).
struct process_spec {
  /// Used in error sentences: the step type's name.
  std::string name;
  /// argv; argv[0] is an absolute path or a program name looked up on PATH.
  std::vector<std::string> argv;
  /// Working directory; empty for the current one.
  std::string cwd;
  /// Variables added to (or replacing in) the inherited environment.
  std::vector<std::pair<std::string, std::string>> env;
  /// Inherited variables the processes must not see (secrets of stepflow's own).
  std::vector<std::string> env_unset;
  /// Most processes of the group at once; further tasks wait in order.
  std::size_t concurrency = 4;
  /// Time from start to the "ready" line.
  std::chrono::milliseconds start_timeout{30'000};
  /// Longest task before its process is killed; 0 for none (the step's own
  /// timeout still applies through the task's cancelled flag).
  std::chrono::milliseconds task_timeout{0};
  /// Resident memory after which a process is recycled between tasks; 0 for none.
  std::uint64_t memory_limit_bytes = std::uint64_t{1024} << 20;
  /// Tasks after which a process is recycled; 0 for no limit.
  std::uint64_t max_tasks = 0;
};

/// Writes one protocol line (without '\n') to the task's process. Callable
/// from any thread; dropped once the task has ended.
using process_reply = std::function<void(std::string line)>;

struct process_task {
  /// The task id, echoed by the process in every line of the task.
  std::string id;
  /// The "run" line, without '\n'.
  std::string request;
  /// Each line of the task other than its result (log, cache...), on the
  /// pool's thread. May be empty.
  std::function<void(json::object msg, const process_reply& reply)> on_message;
  /// Polled while the task runs; once true the process is killed and the
  /// task ends with errc::cancelled. May be empty.
  std::function<bool()> is_cancelled;
  /// Called exactly once: with the result line, or with errc::timeout,
  /// errc::cancelled, errc::step_failed (the process died: exit status and
  /// the last lines of stderr) or errc::unavailable (pool stopping).
  std::function<void(caf::expected<json::object>)> done;
};

struct process_pool_options {
  /// How often running tasks' cancelled flags are polled. Default: 100 ms.
  std::chrono::milliseconds cancel_poll{100};
  /// Time processes get to exit after their stdin is closed before they are
  /// killed. Default: 5 s.
  std::chrono::milliseconds exit_grace{5'000};
};

struct process_group_stats {
  std::size_t processes = 0; ///< alive now
  std::size_t busy = 0;      ///< running a task now
  std::size_t queued = 0;    ///< tasks waiting for a process
  std::uint64_t started = 0; ///< processes started so far
  std::uint64_t recycled = 0; ///< ended for memory or max_tasks
  std::uint64_t died = 0;    ///< exited or were killed during a task
  std::uint64_t tasks = 0;   ///< tasks that got a result line
};

class process_pool {
public:
  using group_id = std::size_t;

  explicit process_pool(process_pool_options opts = {});
  /// Fails queued and running tasks (errc::unavailable), closes every
  /// process's stdin, kills those still alive after exit_grace, joins.
  ~process_pool();
  process_pool(const process_pool&) = delete;
  process_pool& operator=(const process_pool&) = delete;

  /// Registers a group; processes start on demand.
  group_id add_group(process_spec spec);

  /// Queues `task` for a process of `group`.
  void submit(group_id group, process_task task);

  /// Ends the group's processes once they are idle (queued and running
  /// tasks still finish). Later tasks would start new processes.
  void retire(group_id group);

  /// A snapshot (thread-safe).
  process_group_stats stats(group_id group) const;

  struct impl;

private:
  std::shared_ptr<impl> impl_;
};

/// Resident memory of process `pid` in bytes (from /proc), 0 when unknown.
std::uint64_t resident_bytes(int pid);

} // namespace stepflow
