#include "stepflow/runtime/plan.hpp"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include <doctest/doctest.h>

using namespace stepflow;

namespace {

json::value doc(std::string_view text) {
  auto v = parse_json(text, "test");
  REQUIRE_MESSAGE(v, message_of(v.error()));
  return std::move(*v);
}

/// A step type that does nothing; `required` names required parameters.
class test_step final : public step_type {
public:
  explicit test_step(std::string name, std::vector<std::string> required = {}) {
    info_.name = std::move(name);
    for (auto& r : required) {
      param_info p;
      p.name = std::move(r);
      p.required = true;
      info_.params.push_back(std::move(p));
    }
  }
  const step_info& info() const noexcept override { return info_; }
  void run(std::shared_ptr<step_context>, step_done done) const override {
    done(step_outcome::success(nullptr));
  }

private:
  step_info info_;
};

const step_registry& registry() {
  static const step_registry reg = [] {
    step_registry r;
    REQUIRE_FALSE(r.add(std::make_shared<test_step>("Log")));
    REQUIRE_FALSE(r.add(std::make_shared<test_step>("Fetch", std::vector<std::string>{"url"})));
    return r;
  }();
  return reg;
}

std::shared_ptr<const application> app_of(std::string_view text) {
  auto app = parse_application(doc(text), "apps/app.json", "app");
  REQUIRE_MESSAGE(app, message_of(app.error()));
  return std::make_shared<const application>(std::move(*app));
}

configuration config_of(std::string_view text) {
  auto cfg = parse_configuration(doc(text), "configs/c.json", "c");
  REQUIRE_MESSAGE(cfg, message_of(cfg.error()));
  return std::move(*cfg);
}

json::object obj(std::string_view text) {
  return doc(text).as_object();
}

run_plan plan_of(std::shared_ptr<const application> app, const configuration* cfg = nullptr,
                 const json::object& params = {}, int log_level = -1,
                 const plan_options& opts = {}) {
  auto plan = prepare_run(std::move(app), cfg, params, log_level, registry(), opts);
  REQUIRE_MESSAGE(plan, message_of(plan.error()));
  return std::move(*plan);
}

caf::error plan_error(std::shared_ptr<const application> app, const configuration* cfg = nullptr,
                      const json::object& params = {}) {
  auto plan = prepare_run(std::move(app), cfg, params, -1, registry());
  REQUIRE_FALSE(plan);
  return plan.error();
}

/// A one-step application whose step has the parameters `params` (JSON
/// object members without braces).
std::shared_ptr<const application> one_step(std::string_view vars, std::string_view params) {
  auto text = std::string(R"({"name": "app", "app_variables": [)") + std::string(vars)
              + R"(], "steps": [{"name": "A", "file": "Log")"
              + (params.empty() ? "" : ", ") + std::string(params) + "}]}";
  return app_of(text);
}

using idx = std::vector<size_t>;

idx sorted(idx v) {
  std::sort(v.begin(), v.end());
  return v;
}

} // namespace

// -- variables -----------------------------------------------------------------

TEST_CASE("a run missing required variables fails listing every missing name") {
  auto app = one_step(R"({"name": "a", "required": true},
                         {"name": "b", "required": true, "value": ""},
                         {"name": "c", "required": true, "default_value": 1},
                         {"name": "d", "required": true, "value": "v"},
                         {"name": "e", "required": true},
                         {"name": "f", "required": false})",
                      "");
  auto err = plan_error(app);
  CHECK(code_of(err) == errc::missing_variables);
  CHECK(message_of(err) == R"(application "app" is missing required variables: a, b, e)");
}

TEST_CASE("one-time parameters satisfy required variables") {
  auto app = one_step(R"({"name": "a", "required": true}, {"name": "b", "required": true})", "");
  auto plan = plan_of(app, nullptr, obj(R"({"a": 1, "b": "x"})"));
  CHECK(plan.variables.at("a") == 1);
  CHECK(plan.variables.at("b") == "x");
}

TEST_CASE("an empty or null one-time parameter does not satisfy a required variable") {
  auto app = one_step(R"({"name": "a", "required": true, "value": "set"},
                         {"name": "b", "required": true, "value": "set"})",
                      "");
  auto err = plan_error(app, nullptr, obj(R"({"a": "", "b": null})"));
  CHECK(code_of(err) == errc::missing_variables);
  CHECK(message_of(err) == R"(application "app" is missing required variables: a, b)");
}

TEST_CASE("a variable's value wins over its default and a one-time parameter wins over both") {
  auto app = one_step(R"({"name": "v1", "value": "value", "default_value": "default"},
                         {"name": "v2", "default_value": "default"},
                         {"name": "v3", "value": "value", "default_value": "default"},
                         {"name": "v4"})",
                      "");
  auto plan = plan_of(app, nullptr, obj(R"({"v3": "param", "extra": [1]})"));
  CHECK(plan.variables.at("v1") == "value");
  CHECK(plan.variables.at("v2") == "default");
  CHECK(plan.variables.at("v3") == "param");
  CHECK(plan.variables.at("v4").is_null());
  CHECK(plan.variables.at("extra") == doc("[1]"));
  CHECK(json::value(plan.params) == doc(R"({"v3": "param", "extra": [1]})"));
}

TEST_CASE("variables may refer to the configuration and to other variables") {
  auto cfg = config_of(R"({"name": "c", "configuration_data": [{"name": "host", "value": "sl1"}]})");
  auto app = one_step(R"({"name": "url", "value": "https://${config.host}/${path}"},
                         {"name": "path", "default_value": "api"},
                         {"name": "port", "value": "${config.host}"})",
                      "");
  auto plan = plan_of(app, &cfg);
  CHECK(plan.variables.at("url") == "https://sl1/api");
  CHECK(plan.variables.at("port") == "sl1");
}

TEST_CASE("variables referring to each other in a loop are a bad_reference error") {
  auto app = one_step(R"({"name": "a", "value": "${b}"}, {"name": "b", "value": "x${a}"})", "");
  auto err = plan_error(app);
  CHECK(code_of(err) == errc::bad_reference);
  CHECK(message_of(err).find("cycle: ") != std::string::npos);
}

// -- step parameters ---------------------------------------------------------------

TEST_CASE("configuration references in step parameters are resolved with their types") {
  auto cfg = config_of(R"({"name": "prod", "configuration_data": [
    {"name": "host", "value": "sl1"}, {"name": "port", "value": 443},
    {"name": "creds", "value": {"user": "u", "pw": "p"}},
    {"name": "base", "value": "https://${config.host}:${config.port}"}]})");
  auto app = one_step("", R"("url": "${config.base}/api", "port": "${config.port}",
                             "user": "${config.creds.user}", "auth": "${config.creds}")");
  auto plan = plan_of(app, &cfg);
  CHECK(plan.configuration == "prod");
  CHECK(plan.config_values.at("base") == "https://sl1:443");
  REQUIRE(plan.steps.size() == 1);
  const auto& p = plan.steps[0].params;
  CHECK(p.at("url") == "https://sl1:443/api");
  CHECK(p.at("port") == 443);
  CHECK(p.at("user") == "u");
  CHECK(p.at("auth") == doc(R"({"user": "u", "pw": "p"})"));
}

TEST_CASE("variable references in step parameters are resolved") {
  auto app = one_step(R"({"name": "region", "value": "eu"}, {"name": "ids", "value": [1, 2]})",
                      R"("msg": "region ${region}", "ids": "${ids}", "first": "${ids.0}",
                         "nested": {"list": ["${region}"]})");
  auto plan = plan_of(app, nullptr, obj(R"({"once": "p"})"));
  const auto& p = plan.steps[0].params;
  CHECK(p.at("msg") == "region eu");
  CHECK(p.at("ids") == doc("[1, 2]"));
  CHECK(p.at("first") == 1);
  CHECK(p.at("nested") == doc(R"({"list": ["eu"]})"));
}

TEST_CASE("one-time parameters that are not variables can be referenced by steps") {
  auto app = one_step("", R"("msg": "hello ${who}")");
  auto plan = plan_of(app, nullptr, obj(R"({"who": "world"})"));
  CHECK(plan.steps[0].params.at("msg") == "hello world");
}

TEST_CASE("an unknown reference in a step parameter is an error naming it and the step path") {
  auto app = app_of(R"({"name": "app", "steps": [{"name": "A", "file": "Log"},
                       {"name": "B", "file": "Log", "url": "http://${nope}/x"}]})");
  auto err = plan_error(app);
  CHECK(code_of(err) == errc::bad_reference);
  CHECK(message_of(err)
        == R"(application "app": steps[1].url: ${nope}: no application variable, configuration value or step named "nope")");
}

TEST_CASE("a configuration reference without an aligned configuration is an error") {
  auto app = one_step("", R"("url": "${config.host}")");
  auto err = plan_error(app);
  CHECK(code_of(err) == errc::bad_reference);
  CHECK(message_of(err)
        == R"(application "app": steps[0].url: ${config.host} needs a configuration, but none is aligned)");
}

TEST_CASE("a reference to a configuration value that does not exist is an error naming it") {
  auto cfg = config_of(R"({"name": "prod", "configuration_data": [{"name": "host", "value": "h"}]})");
  auto app = one_step("", R"("url": "${config.zzz}")");
  auto err = plan_error(app, &cfg);
  CHECK(code_of(err) == errc::bad_reference);
  CHECK(message_of(err)
        == R"(application "app": steps[0].url: ${config.zzz}: configuration "prod" has no value named "zzz")");
}

TEST_CASE("a broken configuration fails the run with the configuration's error") {
  auto cfg = config_of(R"({"name": "prod", "configuration_data": [
    {"name": "a", "value": "${config.b}"}, {"name": "b", "value": "${config.a}"}]})");
  auto err = plan_error(one_step("", ""), &cfg);
  CHECK(code_of(err) == errc::bad_reference);
  CHECK(message_of(err).find("cycle: a -> b -> a") != std::string::npos);
}

TEST_CASE("references to step data are kept for when the step starts") {
  auto app = app_of(R"({"name": "app", "steps": [
    {"name": "A", "file": "Log", "output_to": ["B"]},
    {"name": "B", "file": "Fetch", "id": "${A.items.0.id}", "url": "http://h/${A.path}"}]})");
  auto plan = plan_of(app);
  CHECK(plan.steps[1].params.at("id") == "${A.items.0.id}");
  CHECK(plan.steps[1].params.at("url") == "http://h/${A.path}");
}

TEST_CASE("an unknown step type is a not_found error naming the type and the step") {
  auto app = app_of(R"({"name": "app", "steps": [{"name": "A", "file": "Log"},
                       {"name": "Send", "file": "NoSuchStep"}]})");
  auto err = plan_error(app);
  CHECK(code_of(err) == errc::not_found);
  CHECK(message_of(err)
        == R"(application "app": steps[1].file: unknown step type "NoSuchStep" (step "Send"))");
}

TEST_CASE("a step's type is looked up in the registry") {
  auto plan = plan_of(app_of(R"({"name": "app", "steps": [{"name": "A", "file": "Fetch",
                                                           "url": "u"}]})"));
  REQUIRE(plan.steps[0].type != nullptr);
  CHECK(plan.steps[0].type->info().name == "Fetch");
  CHECK(plan.app != nullptr);
  CHECK(plan.app->id == "app");
  CHECK(plan.configuration.empty());
}

TEST_CASE("a step missing a required parameter fails the plan through its type's check") {
  auto app = app_of(R"({"name": "app", "steps": [{"name": "Get", "file": "Fetch"}]})");
  auto err = plan_error(app);
  CHECK(code_of(err) == errc::invalid_definition);
  CHECK(message_of(err)
        == R"(application "app": step "Get": missing required parameter "url" of step type Fetch)");
}

// -- timeout and log level ---------------------------------------------------------------

TEST_CASE("a step without a timeout parameter gets the default timeout") {
  CHECK(plan_of(one_step("", "")).steps[0].timeout_s == 300);
  plan_options opts;
  opts.default_step_timeout_s = 42;
  CHECK(plan_of(one_step("", ""), nullptr, {}, -1, opts).steps[0].timeout_s == 42);
}

TEST_CASE("a step's timeout parameter is read from a number or a numeric string") {
  CHECK(plan_of(one_step("", R"("timeout": 12.5)")).steps[0].timeout_s == 12.5);
  CHECK(plan_of(one_step("", R"("timeout": "30")")).steps[0].timeout_s == 30);
  auto app = one_step(R"({"name": "t", "value": 7})", R"("timeout": "${t}")");
  CHECK(plan_of(app).steps[0].timeout_s == 7);
}

TEST_CASE("a bad step timeout is an invalid_definition error naming the parameter") {
  for (auto bad : {R"("timeout": "soon")", R"("timeout": 0)", R"("timeout": -5)",
                   R"("timeout": true)"}) {
    CAPTURE(bad);
    auto err = plan_error(one_step("", bad));
    CHECK(code_of(err) == errc::invalid_definition);
    CHECK(message_of(err)
          == R"(application "app": steps[0].timeout: must be a positive number of seconds)");
  }
}

TEST_CASE("the log level defaults to the option's default") {
  CHECK(plan_of(one_step("", "")).log_level == 20);
  plan_options opts;
  opts.default_log_level = 30;
  CHECK(plan_of(one_step("", ""), nullptr, {}, -1, opts).log_level == 30);
}

TEST_CASE("a loglevel parameter sets the log level by name or number") {
  CHECK(plan_of(one_step("", ""), nullptr, obj(R"({"loglevel": "debug"})")).log_level == 10);
  CHECK(plan_of(one_step("", ""), nullptr, obj(R"({"loglevel": 40})")).log_level == 40);
  CHECK(plan_of(one_step("", ""), nullptr, obj(R"({"log_level": "WARNING"})")).log_level == 30);
}

TEST_CASE("an unreadable loglevel parameter leaves the default") {
  CHECK(plan_of(one_step("", ""), nullptr, obj(R"({"loglevel": "chatty"})")).log_level == 20);
}

TEST_CASE("an explicit log level wins over the loglevel parameter") {
  auto plan = plan_of(one_step("", ""), nullptr, obj(R"({"loglevel": "debug"})"), 40);
  CHECK(plan.log_level == 40);
}

// -- resolve_step_data_refs ---------------------------------------------------------------

namespace {

std::shared_ptr<const application> data_app() {
  return app_of(R"({"name": "app", "steps": [
    {"name": "A", "file": "Log", "output_to": ["B"]},
    {"name": "B", "file": "Log", "id": "${A.items.0.id}", "msg": "second is ${A.items.1.id}",
     "all": "${A}", "static": "x", "config_like": 5}]})");
}

std::vector<std::shared_ptr<const json::value>> data_of(std::string_view a_data) {
  return {std::make_shared<const json::value>(doc(a_data)), nullptr};
}

} // namespace

TEST_CASE("step data references are resolved from the feeding step's data") {
  auto plan = plan_of(data_app());
  auto data = data_of(R"({"items": [{"id": 11}, {"id": 22}]})");
  auto r = resolve_step_data_refs(plan, 1, data);
  REQUIRE_MESSAGE(r, message_of(r.error()));
  CHECK(r->at("id") == 11);
  CHECK(r->at("msg") == "second is 22");
  CHECK(r->at("all") == doc(R"({"items": [{"id": 11}, {"id": 22}]})"));
  CHECK(r->at("static") == "x");
  CHECK(r->at("config_like") == 5);
}

TEST_CASE("a step without references keeps its parameters") {
  auto plan = plan_of(data_app());
  auto r = resolve_step_data_refs(plan, 0, {nullptr, nullptr});
  REQUIRE_MESSAGE(r, message_of(r.error()));
  CHECK(r->empty());
}

TEST_CASE("a reference to a step that has not produced data is an error naming both") {
  auto plan = plan_of(data_app());
  auto r = resolve_step_data_refs(plan, 1, {nullptr, nullptr});
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::bad_reference);
  CHECK(message_of(r.error())
        == R"(parameter id: ${A.items.0.id}: step "A" has not produced data)");
}

TEST_CASE("a reference to a missing path in step data is an error naming the path") {
  auto plan = plan_of(data_app());
  auto data = data_of(R"({"items": []})");
  auto r = resolve_step_data_refs(plan, 1, data);
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::bad_reference);
  CHECK(message_of(r.error())
        == R"(parameter id: ${A.items.0.id}: the data of step "A" has no "items.0.id")");
}

// Regression: parameters with step-data references are resolved in one pass
// at step start, so an escape is never resolved twice.
TEST_CASE("an escaped reference in a step parameter reaches the step as literal text") {
  // "$${" writes a literal "${" (resolve.hpp); resolving at plan time and
  // again at step start must not turn the literal back into a reference.
  auto app = app_of(R"({"name": "app", "steps": [
    {"name": "A", "file": "Log", "output_to": ["B"]},
    {"name": "B", "file": "Log", "literal": "$${not_a_ref}", "mixed": "$${A.x} is ${A.x}"}]})");
  auto plan = plan_of(app);
  auto data = data_of(R"({"x": 1})");
  auto r = resolve_step_data_refs(plan, 1, data);
  REQUIRE_MESSAGE(r, message_of(r.error()));
  CHECK(r->at("literal") == "${not_a_ref}");
  CHECK(r->at("mixed") == "${A.x} is 1");
}

// -- dag_state -------------------------------------------------------------------------

namespace {

/// Steps named by `names` with edges "from>to".
std::shared_ptr<const application> graph(std::vector<std::string> names,
                                         std::vector<std::pair<std::string, std::string>> edges) {
  json::array steps;
  for (const auto& n : names) {
    json::array out;
    for (const auto& [from, to] : edges)
      if (from == n)
        out.push_back(json::string(to));
    steps.push_back(json::object{{"name", n}, {"file", "Log"}, {"output_to", std::move(out)}});
  }
  auto app = parse_application(json::object{{"name", "g"}, {"steps", std::move(steps)}}, "g", "g");
  REQUIRE_MESSAGE(app, message_of(app.error()));
  return std::make_shared<const application>(std::move(*app));
}

/// Starts every step in `t.ready`.
void run_all(dag_state& d, const dag_state::transition& t) {
  for (auto i : t.ready)
    d.mark_running(i);
}

} // namespace

TEST_CASE("steps without inputs are ready at the start") {
  auto app = graph({"A", "B", "C"}, {{"A", "C"}});
  dag_state d(*app);
  auto t = d.start();
  CHECK(t.ready == idx{0, 1});
  CHECK(t.skipped.empty());
  CHECK(d.status(0) == step_status::pending);
  CHECK_FALSE(d.done());
}

TEST_CASE("in a diamond the join is ready only after both branches succeeded") {
  auto app = graph({"A", "B", "C", "D"}, {{"A", "B"}, {"A", "C"}, {"B", "D"}, {"C", "D"}});
  dag_state d(*app);
  auto t = d.start();
  REQUIRE(t.ready == idx{0});
  d.mark_running(0);
  CHECK(d.running() == 1);
  t = d.finish(0, true);
  CHECK(sorted(t.ready) == idx{1, 2});
  run_all(d, t);
  CHECK(d.running() == 2);
  t = d.finish(1, true);
  CHECK(t.ready.empty());
  CHECK(t.skipped.empty());
  CHECK(d.status(3) == step_status::pending);
  t = d.finish(2, true);
  CHECK(t.ready == idx{3});
  d.mark_running(3);
  CHECK_FALSE(d.done());
  t = d.finish(3, true);
  CHECK(t.ready.empty());
  CHECK(d.done());
  CHECK(d.final_status() == run_status::success);
  for (size_t i = 0; i < 4; ++i)
    CHECK(d.status(i) == step_status::success);
}

TEST_CASE("a failure skips its dependents transitively while an independent branch runs on") {
  // A -> B -> C, and an independent X -> Y.
  auto app = graph({"A", "B", "C", "X", "Y"}, {{"A", "B"}, {"B", "C"}, {"X", "Y"}});
  dag_state d(*app);
  auto t = d.start();
  REQUIRE(t.ready == idx{0, 3});
  run_all(d, t);
  t = d.finish(0, false);
  CHECK(t.ready.empty());
  CHECK(sorted(t.skipped) == idx{1, 2});
  CHECK(d.status(0) == step_status::failed);
  CHECK(d.status(1) == step_status::skipped);
  CHECK(d.status(2) == step_status::skipped);
  CHECK_FALSE(d.done());
  t = d.finish(3, true);
  CHECK(t.ready == idx{4});
  d.mark_running(4);
  d.finish(4, true);
  CHECK(d.done());
  CHECK(d.final_status() == run_status::failed);
}

TEST_CASE("a join fed by a failed branch is skipped even when the other branch succeeds") {
  auto app = graph({"A", "B", "C", "D"}, {{"A", "B"}, {"A", "C"}, {"B", "D"}, {"C", "D"}});
  dag_state d(*app);
  run_all(d, d.start());
  run_all(d, d.finish(0, true));
  auto t = d.finish(1, false);
  CHECK(t.skipped.empty()); // D still waits for C
  t = d.finish(2, true);
  CHECK(t.ready.empty());
  CHECK(t.skipped == idx{3});
  CHECK(d.status(3) == step_status::skipped);
  CHECK(d.done());
  CHECK(d.final_status() == run_status::failed);
}

TEST_CASE("a step aggregating three inputs waits for all of them") {
  auto app = graph({"A", "B", "C", "Agg"}, {{"A", "Agg"}, {"B", "Agg"}, {"C", "Agg"}});
  dag_state d(*app);
  auto t = d.start();
  REQUIRE(t.ready == idx{0, 1, 2});
  run_all(d, t);
  CHECK(d.running() == 3);
  CHECK(d.finish(1, true).ready.empty());
  CHECK(d.finish(0, true).ready.empty());
  CHECK(d.status(3) == step_status::pending);
  CHECK(d.finish(2, true).ready == idx{3});
}

TEST_CASE("skipping a branch skips the steps reachable only through it") {
  // A -> B -> D, A -> C -> E, C -> D: skipping C skips E; D still runs via B.
  auto app = graph({"A", "B", "C", "D", "E"},
                   {{"A", "B"}, {"A", "C"}, {"B", "D"}, {"C", "D"}, {"C", "E"}});
  dag_state d(*app);
  run_all(d, d.start());
  auto t = d.finish(0, true);
  REQUIRE(sorted(t.ready) == idx{1, 2});
  d.mark_running(1); // C is not started: flow control decides against it
  t = d.skip_branch(2);
  CHECK(t.ready.empty());
  CHECK(t.skipped == idx{2, 4});
  CHECK(d.status(2) == step_status::skipped);
  CHECK(d.status(4) == step_status::skipped);
  CHECK(d.status(3) == step_status::pending);
  t = d.finish(1, true);
  CHECK(t.ready == idx{3}); // the join with one taken branch runs
  d.mark_running(3);
  d.finish(3, true);
  CHECK(d.done());
  CHECK(d.final_status() == run_status::success);
}

TEST_CASE("a join whose every branch was skipped is skipped too") {
  auto app = graph({"A", "B", "C", "D"}, {{"A", "B"}, {"A", "C"}, {"B", "D"}, {"C", "D"}});
  dag_state d(*app);
  run_all(d, d.start());
  d.finish(0, true);
  CHECK(d.skip_branch(1).skipped == idx{1});
  auto t = d.skip_branch(2);
  CHECK(t.skipped == idx{2, 3});
  CHECK(d.done());
  CHECK(d.final_status() == run_status::success);
}

TEST_CASE("skip_branch ignores steps that already started or ended") {
  auto app = graph({"A", "B"}, {{"A", "B"}});
  dag_state d(*app);
  run_all(d, d.start());
  auto t = d.skip_branch(0);
  CHECK(t.skipped.empty());
  CHECK(d.status(0) == step_status::running);
}

TEST_CASE("revoking skips every pending step and the run ends revoked") {
  auto app = graph({"A", "B", "C", "X"}, {{"A", "B"}, {"B", "C"}});
  dag_state d(*app);
  auto t = d.start();
  d.mark_running(0); // X (3) is ready but not started
  t = d.revoke();
  CHECK(t.ready.empty());
  CHECK(t.skipped == idx{1, 2, 3});
  CHECK(d.status(0) == step_status::running);
  CHECK_FALSE(d.done());
  t = d.finish(0, true);
  CHECK(t.ready.empty());
  CHECK(d.done());
  CHECK(d.final_status() == run_status::revoked);
}

TEST_CASE("final_status is success, failed or revoked") {
  auto app = graph({"A"}, {});
  {
    dag_state d(*app);
    run_all(d, d.start());
    d.finish(0, true);
    CHECK(d.final_status() == run_status::success);
  }
  {
    dag_state d(*app);
    run_all(d, d.start());
    d.finish(0, false);
    CHECK(d.final_status() == run_status::failed);
  }
  {
    dag_state d(*app);
    run_all(d, d.start());
    d.revoke();
    d.finish(0, false);
    CHECK(d.final_status() == run_status::revoked);
  }
}

TEST_CASE("statuses have PowerFlow's names") {
  CHECK(to_string(step_status::pending) == "pending");
  CHECK(to_string(step_status::running) == "running");
  CHECK(to_string(step_status::success) == "success");
  CHECK(to_string(step_status::failed) == "failed");
  CHECK(to_string(step_status::skipped) == "skipped");
  CHECK(to_string(run_status::pending) == "pending");
  CHECK(to_string(run_status::running) == "running");
  CHECK(to_string(run_status::success) == "success");
  CHECK(to_string(run_status::failed) == "failed");
  CHECK(to_string(run_status::revoked) == "revoked");
}

TEST_CASE("a branch not taken skips only the steps reachable through it") {
  // A feeds B and C; C's branch is not taken. D joins B and C and still runs
  // (reachable through B); E hangs only off C and is skipped.
  auto app = app_of(R"({"name": "app", "steps": [
    {"name": "A", "file": "Log", "output_to": ["B", "C"]},
    {"name": "B", "file": "Log", "output_to": ["D"]},
    {"name": "C", "file": "Log", "output_to": ["D", "E"]},
    {"name": "D", "file": "Log"},
    {"name": "E", "file": "Log"}]})");
  dag_state dag(*app);
  auto t = dag.start();
  REQUIRE(t.ready == std::vector<size_t>{0});
  dag.mark_running(0);
  t = dag.finish(0, true, {2}); // A -> C not taken
  CHECK(t.ready == std::vector<size_t>{1});
  CHECK(dag.status(2) == step_status::skipped);
  CHECK(dag.status(4) == step_status::skipped);
  CHECK(dag.status(3) == step_status::pending);
  dag.mark_running(1);
  t = dag.finish(1, true);
  CHECK(t.ready == std::vector<size_t>{3});
  dag.mark_running(3);
  dag.finish(3, true);
  CHECK(dag.done());
  CHECK(dag.final_status() == run_status::success);
}

TEST_CASE("when every branch into a step is not taken the step is skipped, not failed") {
  auto app = app_of(R"({"name": "app", "steps": [
    {"name": "If", "file": "Log", "output_to": ["Then", "Else"]},
    {"name": "Then", "file": "Log"},
    {"name": "Else", "file": "Log"}]})");
  dag_state dag(*app);
  dag.start();
  dag.mark_running(0);
  auto t = dag.finish(0, true, {2});
  CHECK(t.ready == std::vector<size_t>{1});
  CHECK(t.skipped == std::vector<size_t>{2});
  dag.mark_running(1);
  dag.finish(1, true);
  CHECK(dag.final_status() == run_status::success);
}
