#pragma once
// The engine runs applications: it owns the CAF actor system, and for each
// run spawns a run supervisor actor, which spawns one actor per step and
// routes data between them (run_protocol.hpp). This header keeps CAF out of
// its includers. All members are thread-safe.
#include <functional>
#include <memory>
#include <string>

#include "stepflow/runtime/plan.hpp"
#include "stepflow/runtime/run_record.hpp"
#include "stepflow/runtime/step.hpp"

namespace stepflow::actors {

/// Options of the engine, read once at start-up.
struct engine_options {
  /// Scheduler threads of the actor system. Default: 2 (one per core here).
  size_t scheduler_threads = 2;
  /// CAF scheduling policy, "sharing" or "stealing". Default: "sharing"
  /// (measured ~25% faster than stealing on 2 cores).
  std::string scheduler_policy = "sharing";
};

/// Callbacks about one run; called from actor or store-writer threads, so
/// they must be thread-safe and short.
struct run_observer {
  /// A step ended (its record is in r.steps[index]); called after the step's
  /// record was committed to the store, if there is one.
  std::function<void(const run_record& r, size_t index)> on_step_end;
  /// The run ended; called after its final record was committed.
  std::function<void(const run_record& r)> on_done;
  /// Extra changes committed atomically with the run's final record (the
  /// server removes the run's queue entry here, so a run is either finished
  /// and dequeued, or neither).
  write_batch final_ops;
  /// Write the run record when the run starts (status running). The server
  /// turns it off: its pending record is already committed, and readers
  /// derive "running" from the step records (run_store::load).
  bool record_start = true;
};

class engine {
public:
  /// `services.store`, when set, receives every run and step record.
  engine(engine_options opts, step_services services);
  /// Waits for running runs to finish.
  ~engine();
  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  /// Starts `plan`. `rec` carries the run's identity (task id, queue,
  /// parameters...); steps are filled in from the plan.
  void start(run_plan plan, run_record rec, run_observer obs);

  /// Revokes a running run: pending steps never start; with `terminate`
  /// running steps are cancelled too. False when the run is not running.
  bool revoke(const std::string& task_id, bool terminate);

  /// Runs in progress.
  size_t active_runs() const;

  const step_services& services() const noexcept;

  struct impl;

private:
  std::unique_ptr<impl> impl_;
};

} // namespace stepflow::actors
