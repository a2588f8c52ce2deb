#pragma once
// The step interface. Every kind of step implements it: built-in C++ steps,
// connector steps, dynamic plugins and external-process steps. A step type is
// stateless and shared; each execution gets its own step_context and reports
// through a completion callback, so steps that wait on I/O never block a
// thread of the actor scheduler.
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "stepflow/runtime/errc.hpp"
#include "stepflow/runtime/json.hpp"

namespace stepflow {

class kv_store;
class cache;
class http_client;
class clock_source;
class run_launcher;

/// Shared services a step may use. Pointers outlive every run.
struct step_services {
  kv_store* store = nullptr;
  stepflow::cache* cache = nullptr;
  http_client* http = nullptr;
  const clock_source* clock = nullptr;
  /// Starts child runs (Trigger Application); null where unavailable.
  run_launcher* launcher = nullptr;
};

struct log_line {
  int64_t time_ns = 0;
  int level = 20;
  std::string message;
};

/// Everything one execution of a step sees. Built by the runtime before
/// run() and kept alive by the shared_ptr until the step completes.
class step_context {
public:
  // -- identity ---------------------------------------------------------------
  std::string run_id;
  std::string application;
  std::string step_name;
  std::string step_type;

  // -- inputs -----------------------------------------------------------------
  /// The step's parameters with every ${...} reference resolved.
  json::object params;
  /// Names of the steps this one feeds (flow-control steps choose among them).
  std::vector<std::string> outputs;
  /// Data saved by previous steps that feed this one, in application order.
  std::vector<std::pair<std::string, std::shared_ptr<const json::value>>> inputs;
  /// The run's application variables (defaults overridden by run
  /// parameters); shared by every step of the run, never null when run by
  /// the engine.
  std::shared_ptr<const json::object> app_variables;
  /// The aligned configuration's values by name (decrypted); shared like
  /// app_variables.
  std::shared_ptr<const json::object> configuration;
  /// Lines below this level are dropped.
  int log_level = 20;

  step_services services;

  // -- helpers ----------------------------------------------------------------
  /// The parameter `name`, or nullptr.
  const json::value* param(std::string_view name) const noexcept;
  /// The parameter as text (strings as-is, numbers and booleans printed),
  /// or `fallback` when absent or null.
  std::string param_string(std::string_view name, std::string_view fallback = {}) const;
  /// The parameter as a number (numbers, or strings holding one).
  double param_number(std::string_view name, double fallback) const;
  /// The parameter as a boolean (true/false, "true"/"false", 1/0).
  bool param_bool(std::string_view name, bool fallback) const;
  /// The data of input `name`, or nullptr.
  const json::value* input(std::string_view name) const noexcept;
  /// PowerFlow's join_previous_step_data: the only input's data when there is
  /// one, an object by step name when there are several, null when none.
  json::value joined_input() const;

  /// Records a log line (thread-safe). `flow` lines use level info.
  void log(int level, std::string message);
  /// Takes the lines recorded so far.
  std::vector<log_line> take_logs();

  /// Set when the run is revoked or the step timed out; long steps poll it.
  std::atomic<bool> cancelled{false};

private:
  mutable std::mutex log_mtx_;
  std::vector<log_line> logs_;
};

/// What a step hands back.
struct step_outcome {
  bool ok = true;
  /// Data saved for the next steps (on failure: optional diagnostic data,
  /// e.g. QueryREST's {http_code, headers, body}).
  json::value data;
  /// One sentence when !ok.
  std::string error;
  /// Flow control: names of the steps this step feeds whose branch is not
  /// taken (they, and what only they lead to, end as skipped).
  std::vector<std::string> not_taken;

  static step_outcome success(json::value data) { return {true, std::move(data), {}}; }
  static step_outcome failure(std::string why, json::value data = nullptr) {
    return {false, std::move(data), std::move(why)};
  }
};

/// Must be called exactly once per run(), from any thread.
using step_done = std::function<void(step_outcome)>;

struct param_info {
  std::string name;
  std::string description;
  bool required = false;
  json::value default_value;
  /// "string", "number", "boolean", "object", "array", "any".
  std::string type = "any";
};

/// Appends a parameter description (the order step declarations read best in).
void add_param(std::vector<param_info>& params, std::string name, std::string type,
               json::value default_value, std::string description, bool required = false);

struct step_info {
  std::string name; ///< the "file" an application names, e.g. "QueryREST"
  std::string friendly_name;
  std::string description;
  std::string version = "1.0.0";
  std::string syncpack = "base_steps";
  std::vector<param_info> params;
};

class step_type {
public:
  virtual ~step_type() = default;

  virtual const step_info& info() const noexcept = 0;

  /// Checks resolved parameters before the step starts. The default checks
  /// that every required parameter is present.
  virtual caf::error check(const json::object& params) const;

  /// Starts one execution. Calls `done` exactly once. Must not throw; if it
  /// does anyway, the runtime fails the step with the exception's message.
  virtual void run(std::shared_ptr<step_context> ctx, step_done done) const = 0;

  /// True for step types whose run() always calls `done` before it returns,
  /// on the calling thread, and does no I/O (StaticData, Log, Transform...).
  /// The engine runs them inside the run supervisor, without a step actor or
  /// a timeout timer. Default: false.
  virtual bool completes_inline() const noexcept { return false; }
};

/// Step types that can appear while the process runs (steps uploaded through
/// POST /api/v1/steps). Thread-safe; a type it returned stays valid for the
/// life of the process.
class dynamic_step_source {
public:
  virtual ~dynamic_step_source() = default;
  /// The step type named `file`, or nullptr.
  virtual const step_type* find(std::string_view file) const noexcept = 0;
  virtual std::vector<const step_type*> all() const = 0;
};

/// Step types by name, filled once at start-up from the explicit lists
/// (connectors/registry.cpp, connectors/.../connector.cpp), read-only
/// afterwards; names it does not know are looked up in the dynamic source.
class step_registry {
public:
  /// errc::already_exists on a duplicate name.
  caf::error add(std::shared_ptr<const step_type> type);

  /// Set once at start-up, before any run.
  void set_dynamic(std::shared_ptr<const dynamic_step_source> source) noexcept {
    dynamic_ = std::move(source);
  }

  /// The step type named `file` (fixed ones first, then dynamic), or nullptr.
  const step_type* find(std::string_view file) const noexcept;

  /// A step type registered at start-up (built-in, connector, plugin,
  /// SyncPack), or nullptr: these cannot be replaced or deleted.
  const step_type* find_fixed(std::string_view file) const noexcept;

  /// Fixed types by name, then the dynamic ones.
  std::vector<const step_type*> all() const;

private:
  std::map<std::string, std::shared_ptr<const step_type>, std::less<>> types_;
  std::shared_ptr<const dynamic_step_source> dynamic_;
};

/// step_info as the JSON PowerFlow's GET /steps shows.
json::value to_json(const step_info& info);

} // namespace stepflow
