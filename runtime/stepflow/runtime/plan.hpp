#pragma once
// Turning an application + configuration + one-time parameters into a run
// plan (everything resolved and checked before any step executes), and the
// DAG state machine that decides which steps run, wait or are skipped.
// Pure logic: no actors, no I/O.
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "stepflow/runtime/json.hpp"
#include "stepflow/runtime/model.hpp"
#include "stepflow/runtime/step.hpp"

namespace stepflow {

enum class step_status : uint8_t { pending, running, success, failed, skipped };
enum class run_status : uint8_t { pending, running, success, failed, revoked };

std::string_view to_string(step_status s) noexcept;
std::string_view to_string(run_status s) noexcept;

struct planned_step {
  /// Parameters with configuration and variable references resolved;
  /// references to earlier steps' data (${step.path}) are resolved when the
  /// step starts.
  json::object params;
  const step_type* type = nullptr;
  /// Seconds before the step is failed as timed out.
  double timeout_s = 0;
  /// True when the parameters reference earlier steps' data: `params` then
  /// holds them as written, resolved in one pass when the step starts.
  bool deferred = false;
};

struct run_plan {
  std::shared_ptr<const application> app;
  /// Name of the configuration used, "" for none.
  std::string configuration;
  /// Resolved configuration values by name.
  json::object config_values;
  /// Application variables after defaults and one-time parameters.
  json::object variables;
  /// The one-time parameters as given (kept for replay).
  json::object params;
  int log_level = 20;
  std::vector<planned_step> steps;
};

struct plan_options {
  /// Timeout of a step without a "timeout" parameter, in seconds. Default: 300.
  double default_step_timeout_s = 300;
  /// Log level when neither the request nor params.loglevel sets one.
  int default_log_level = 20;
};

/// Checks and resolves everything a run needs. `cfg` may be null (no
/// configuration). `log_level` < 0 means: take params.loglevel, else the
/// default. Errors: errc::missing_variables listing every missing required
/// variable, errc::not_found for an unknown step type, errc::bad_reference
/// for an unresolvable ${...}, errc::invalid_definition for a bad parameter.
caf::expected<run_plan> prepare_run(std::shared_ptr<const application> app,
                                    const configuration* cfg, const json::object& params,
                                    int log_level, const step_registry& registry,
                                    const plan_options& opts = {});

/// The parameters of step `index` as the step receives them: for a deferred
/// step, every reference (configuration, variables, finished steps' data)
/// resolved in one pass; otherwise the planned parameters.
caf::expected<json::object>
resolve_step_data_refs(const run_plan& plan, size_t index,
                       const std::vector<std::shared_ptr<const json::value>>& data);

/// Like resolve_step_data_refs, but moves a non-deferred step's parameters
/// out of the plan instead of copying them (each step starts once).
caf::expected<json::object>
take_step_params(run_plan& plan, size_t index,
                 const std::vector<std::shared_ptr<const json::value>>& data);

/// Which steps may run. A step starts once every step feeding it has ended:
/// it runs when none of them failed (or was skipped because of a failure)
/// and at least one succeeded through a taken edge; it is skipped otherwise
/// (so steps reachable only through branches not taken are skipped, and a
/// step reachable through any taken branch still runs).
class dag_state {
public:
  explicit dag_state(const application& app);

  struct transition {
    std::vector<size_t> ready;   ///< now runnable (still pending until started)
    std::vector<size_t> skipped; ///< newly skipped
  };

  /// Steps with no inputs.
  transition start();
  void mark_running(size_t i);
  /// Records the end of a running step. `not_taken` lists successors of i
  /// whose edge from i is a branch not taken (flow control): for them, i
  /// counts as if it had been skipped.
  transition finish(size_t i, bool ok, const std::vector<size_t>& not_taken = {});
  /// Skips step i as a branch not taken (flow control), with everything
  /// reachable only through it.
  transition skip_branch(size_t i);
  /// Revokes the run: every pending step is skipped.
  transition revoke();

  step_status status(size_t i) const noexcept { return status_[i]; }
  size_t running() const noexcept;
  /// True when no step is pending or running.
  bool done() const noexcept;
  run_status final_status() const noexcept;

private:
  void settle(size_t i, transition& t);
  bool edge_taken(size_t from, size_t to) const noexcept;
  const application& app_;
  std::vector<std::pair<size_t, size_t>> not_taken_; ///< edges (from, to)
  std::vector<step_status> status_;
  std::vector<bool> failure_skip_;
  bool revoked_ = false;
};

} // namespace stepflow
