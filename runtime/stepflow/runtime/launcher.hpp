#pragma once
// Starting child runs from a step (PowerFlow's Trigger Application). The
// server implements it with its durable queues, `stepflow run` in process.
// Implementations are thread-safe; callbacks may run on any thread.
#include <functional>
#include <optional>
#include <string>

#include "stepflow/runtime/json.hpp"
#include "stepflow/runtime/run_record.hpp"

namespace stepflow {

struct child_run_request {
  std::string application;
  json::object params;
  std::string configuration; ///< "" = the application's own
  std::string queue;         ///< "" = the parent's queue
  std::string parent_task;
};

/// Deepest chain of runs started by runs (stops runaway recursion).
inline constexpr int max_run_depth = 8;

class run_launcher {
public:
  virtual ~run_launcher() = default;
  /// Starts a child run; `done` gets its task id, or an error (unknown
  /// application: errc::not_found; missing variables; depth limit:
  /// errc::invalid_argument).
  virtual void launch(child_run_request req,
                      std::function<void(caf::expected<std::string>)> done) = 0;
  /// `done` gets the run's final record (with step data) once it ended, and
  /// its result (child_result over the application's final steps); nullopt
  /// for an unknown task.
  virtual void when_done(const std::string& task_id,
                         std::function<void(std::optional<run_record>, json::value)> done) = 0;
};

/// Forwards to a launcher set later (the engine's services are fixed before
/// the object that launches runs exists).
class forwarding_launcher final : public run_launcher {
public:
  run_launcher* target = nullptr;
  void launch(child_run_request req,
              std::function<void(caf::expected<std::string>)> done) override {
    if (!target)
      return done(make_error(errc::unavailable, "runs cannot start other runs yet"));
    target->launch(std::move(req), std::move(done));
  }
  void when_done(const std::string& task_id,
                 std::function<void(std::optional<run_record>, json::value)> done) override {
    if (!target)
      return done(std::nullopt, nullptr);
    target->when_done(task_id, std::move(done));
  }
};

/// A child's result as the triggering step outputs it: the data of the
/// child's final steps (those feeding nothing) that succeeded — one step's
/// data as is, several as an object by step name.
json::value child_result(const run_record& r, const std::vector<bool>& is_sink);

} // namespace stepflow
