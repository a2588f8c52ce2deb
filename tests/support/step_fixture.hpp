#pragma once
// Runs step types the way a step actor does, for connector tests: check(),
// then run() with a step_context like the engine's (run "run-1",
// application "app", log level debug, a real http_client), waiting for the
// one done() call. Failures throw std::runtime_error saying what went wrong.
// run_step() and started_step do the run() part alone, for a step and a
// context a test makes itself.
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>

#include "stepflow/runtime/http_client.hpp"
#include "stepflow/runtime/json.hpp"
#include "stepflow/runtime/step.hpp"

namespace stepflow::test {

/// A context like the engine's: run "run-1", application "app", log level
/// debug, the step `step_name` of type `type`; no services.
std::shared_ptr<step_context> make_step_context(const char* type, json::object params,
                                                std::string step_name = "step");

/// A run() in progress: the constructor calls `step.run(ctx, done)` (no
/// check() first); wait() gives the outcome of done().
class started_step {
public:
  started_step(const step_type& step, std::shared_ptr<step_context> ctx);
  /// The outcome of the done() call. Throws when done() is not called
  /// within `bound`, or when it is called more than once.
  step_outcome wait(std::chrono::seconds bound = std::chrono::seconds(60));

private:
  std::string type_;
  std::shared_ptr<std::promise<step_outcome>> promise_;
  std::future<step_outcome> future_;
  std::shared_ptr<std::atomic<int>> calls_;
};

/// started_step{step, ctx}.wait(bound)
step_outcome run_step(const step_type& step, std::shared_ptr<step_context> ctx,
                      std::chrono::seconds bound = std::chrono::seconds(60));

struct step_fixture {
  http_client client;
  step_registry registry;

  /// The registered step type `name`; throws when there is none.
  const step_type& step(const char* name);

  /// A fresh context for a step of type `type` named `step_name`.
  std::shared_ptr<step_context> context(const char* type, json::object params,
                                        std::string step_name = "step");

  /// Checks and runs a step of type `type`; the outcome of its done() call.
  /// Throws when check() fails, when done() is not called within 60 s, or
  /// when it is called more than once. `keep`, when set, gets the context
  /// (for its logs).
  step_outcome run(const char* type, json::object params,
                   std::shared_ptr<step_context>* keep = nullptr,
                   std::string step_name = "step");
};

/// A step_fixture with one connector's steps registered by `add` (e.g.
/// connectors::add_sl1_steps) from `Options`; fast() sets quick retries.
template <class Options, caf::error (*add)(step_registry&, const Options&)>
struct connector_fixture : step_fixture {
  explicit connector_fixture(Options o = fast()) {
    if (auto err = add(registry, o))
      throw std::runtime_error("adding the connector's steps failed: " + message_of(err));
  }
  static Options fast() {
    Options o;
    o.retry_base_delay_ms = 5; // keep retried tests quick
    return o;
  }
};

/// The object inside `v`; throws when `v` is not an object.
json::object& obj(json::value& v);

/// Whether a log line of `ctx` contains `needle`; takes the lines.
bool logged(const std::shared_ptr<step_context>& ctx, const std::string& needle);

} // namespace stepflow::test
