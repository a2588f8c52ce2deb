#pragma once
// The server's application layer, shared by the REST API and the CLI's
// serve command: the content index (applications and configurations parsed
// once, kept in memory, persisted in the store), run submission with durable
// enqueue, the per-queue dispatcher, waiting for runs (?wait=), revoke,
// replay and crash recovery. Thread-safe; never blocks on a run.
//
// Guarantees: submit() reports success only after the run record and its
// queue entry are committed; a run's final record and the removal of its
// queue entry commit together; at start-up every queue entry whose run is
// not finished is run again (attempt + 1). So an accepted run is run at least
// once and a finished run never again.
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "stepflow/actors/engine.hpp"
#include "stepflow/runtime/content.hpp"
#include "stepflow/runtime/launcher.hpp"
#include "stepflow/runtime/kv_store.hpp"
#include "stepflow/runtime/model.hpp"
#include "stepflow/runtime/plan.hpp"
#include "stepflow/runtime/run_record.hpp"

namespace stepflow::actors {

/// Options of the task service, read once at start-up.
struct task_service_options {
  /// Runs at once per queue unless `queue_workers` names the queue.
  /// Default: 64 (steps wait on I/O asynchronously, so a run costs little).
  size_t default_workers = 64;
  /// Per-queue worker counts; 0 means the queue keeps its runs until workers
  /// are configured (PowerFlow: a queue nobody listens to).
  std::map<std::string, size_t> queue_workers;
  /// Accepted-but-unfinished runs (all queues) above which submissions are
  /// refused with errc::overloaded-like 503. Default: 100000.
  size_t max_queue_depth = 100000;
  /// Longest ?wait= honoured, seconds (PowerFlow: 30).
  int max_wait_s = 30;
  plan_options plan;
};

/// What a caller asks for (POST /applications/run).
struct run_request {
  std::string application;
  json::object params;
  std::string configuration; ///< "" = the application's own
  std::string queue = "default";
  int priority = 0;
  int log_level = -1; ///< -1 = from params.loglevel or the default
  std::string parent_task;
  /// The task this run replays ("" when it is not a replay).
  std::string replay_of;
  /// Runs this application instead of looking `application` up (POST
  /// /steps/run). It lives only in memory: after a crash such a run fails
  /// with "application ... no longer exists" instead of running again.
  std::shared_ptr<const stepflow::application> adhoc;
};

/// Transforms a configuration after it is read and before a run uses it
/// (decryption); identity when not set.
using config_transform = std::function<caf::expected<configuration>(configuration)>;

class task_service final : public run_launcher {
public:
  task_service(task_service_options opts, kv_store& store, engine& eng,
               const step_registry& registry, config_transform decrypt = nullptr);
  ~task_service();
  task_service(const task_service&) = delete;
  task_service& operator=(const task_service&) = delete;

  // -- content ------------------------------------------------------------------

  /// Loads stored content, then adds SyncPack content that is not stored yet.
  caf::error load_content(const std::vector<syncpack_content>& packs);
  std::shared_ptr<const application> find_application(const std::string& id) const;
  std::shared_ptr<const configuration> find_configuration(const std::string& name) const;
  std::vector<std::shared_ptr<const application>> applications() const;
  std::vector<std::shared_ptr<const configuration>> configurations() const;
  /// Stores (add or overwrite).
  caf::error put_application(application app);
  caf::error put_configuration(configuration cfg);
  caf::expected<bool> erase_application(const std::string& id);
  caf::expected<bool> erase_configuration(const std::string& name);

  // -- runs ---------------------------------------------------------------------

  /// Validates `req` (unknown application: errc::not_found; missing variables:
  /// errc::missing_variables; ...), commits the pending run and its queue
  /// entry, then calls `done` with the new task id (on the store's writer
  /// thread: keep it short), or with the error.
  void submit(run_request req, std::function<void(caf::expected<std::string>)> done);

  /// Calls `done` with the run's record once it ends, or with the current
  /// record after `timeout` (or at once when it already ended). nullopt when
  /// the task is unknown.
  void wait(const std::string& task_id, std::chrono::milliseconds timeout,
            std::function<void(std::optional<run_record>)> done);

  /// Revokes a task: pending ones never run, running ones stop after the
  /// current step (or at once with `terminate`). errc::not_found for an
  /// unknown task; false when it already ended.
  caf::expected<bool> revoke(const std::string& task_id, bool terminate);
  /// Revokes every pending and running task (of `application` when given);
  /// returns how many.
  size_t revoke_all(const std::string& application, bool terminate);

  /// Runs a finished or failed task again with the same variables,
  /// configuration and queue.
  void replay(const std::string& task_id, std::function<void(caf::expected<std::string>)> done);

  /// Re-queues runs accepted but not finished before a crash. Call once,
  /// after load_content and before serving.
  caf::expected<size_t> recover();

  /// Stops starting runs (shutdown); queued runs stay in the store.
  void stop_dispatching();

  // -- run_launcher (Trigger Application) ----------------------------------------
  // Child runs are recorded in table::children, start at once regardless of
  // their queue's worker limit (a parent waiting on a child must not
  // deadlock a full queue), and nest at most max_run_depth deep.
  void launch(child_run_request req,
              std::function<void(caf::expected<std::string>)> done) override;
  void when_done(const std::string& task_id,
                 std::function<void(std::optional<run_record>, json::value)> done) override;
  /// Task ids of the runs `task_id` started.
  std::vector<std::string> children(const std::string& task_id) const;

  struct queue_stats {
    std::string name;
    size_t workers = 0;
    size_t queued = 0;
    size_t running = 0;
  };
  std::vector<queue_stats> queues() const;
  size_t depth() const;
  size_t running() const;
  /// True while `task_id` holds a worker (started and not finished).
  bool is_running(const std::string& task_id) const;
  /// `r` with status "running" when its stored record still says pending
  /// but the run has started (the server does not rewrite the record when a
  /// run starts).
  void refresh_status(run_record& r) const;

  run_store& runs() noexcept;
  kv_store& store() noexcept;
  const step_registry& registry() const noexcept;

  struct impl;

private:
  std::unique_ptr<impl> impl_;
};

} // namespace stepflow::actors
