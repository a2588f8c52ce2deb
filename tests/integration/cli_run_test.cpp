// The real build/stepflow binary ($STEPFLOW_BINARY) against a local HTTP
// server: `stepflow run` with --json, --config, --param, the exit codes and
// one-sentence errors, `stepflow validate` and `--version`.
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include <boost/json.hpp>
#include <doctest/doctest.h>
#include <fmt/format.h>

#include "stepflow/runtime/json.hpp"
#include "support/binary_checks.hpp"
#include "support/binary_runner.hpp"
#include "support/http_test_server.hpp"
#include "support/sim_process.hpp"
#include "stepflow/runtime/http_client.hpp"
#include "support/temp_dir.hpp"

using namespace stepflow;
using stepflow::test::binary_result;
using stepflow::test::http_test_server;
using stepflow::test::temp_dir;
using stepflow::test::test_request;
using stepflow::test::test_response;

namespace {

std::string slurp(const std::string& path) {
  return stepflow::test::read_text(path);
}

/// Runs the binary with `args` (stdout and stderr captured through files in
/// `dir`). Every run checks that nothing crashed or asserted.
binary_result run_binary(const temp_dir& dir, const std::vector<std::string>& args) {
  auto r = stepflow::test::run_stepflow(dir, args);
  stepflow::test::require_clean_exit(r, args);
  return r;
}

/// `stepflow run` with a fresh --data-dir inside `dir`.
binary_result run_app(const temp_dir& dir, const std::string& app_path,
                      std::vector<std::string> extra = {}) {
  std::vector<std::string> args{"run", app_path, "--data-dir", dir.file("data")};
  args.insert(args.end(), extra.begin(), extra.end());
  return run_binary(dir, args);
}

json::value parse(std::string_view text) {
  auto v = parse_json(text, "test");
  REQUIRE_MESSAGE(v, message_of(v.error()) << "\n--- text ---\n" << text);
  return std::move(*v);
}

size_t line_count(const std::string& s) {
  size_t n = 0;
  for (char c : s)
    n += c == '\n';
  if (!s.empty() && s.back() != '\n')
    ++n;
  return n;
}

const json::object& step_json(const json::value& task, std::string_view name) {
  for (const auto& s : task.at("steps").as_array())
    if (s.at("name").as_string() == name)
      return s.as_object();
  FAIL("no step named " << name << " in " << to_json(task));
  throw std::logic_error("unreachable");
}

/// Records every request; answers by path.
struct api {
  std::mutex mtx;
  std::vector<test_request> seen;

  test_response operator()(const test_request& req) {
    {
      std::lock_guard<std::mutex> g{mtx};
      seen.push_back(req);
    }
    test_response res;
    if (req.method == "GET" && req.target == "/api/devices") {
      res.body = R"([{"id": "dev-1", "name": "router"}, {"id": "dev-2", "name": "switch"}])";
    } else if (req.method == "POST" && req.target == "/api/incidents") {
      res.status = 201;
      auto body = parse_json(req.body, "request");
      json::object o{{"id", "inc-77"}, {"received", body ? *body : json::value(req.body)}};
      res.body = to_json(o);
    } else if (req.target == "/api/ping") {
      res.body = R"({"pong": true})";
    } else {
      res.status = 404;
      res.headers.emplace_back("X-Reason", "gone");
      res.body = R"({"error": "not here"})";
    }
    return res;
  }

  std::vector<test_request> requests() {
    std::lock_guard<std::mutex> g{mtx};
    return seen;
  }
};

struct server_fixture {
  std::shared_ptr<api> a = std::make_shared<api>();
  http_test_server server{[a = a](const test_request& r) { return (*a)(r); }};
  temp_dir dir;
};

} // namespace

TEST_CASE("a diamond of five steps calls the local API and --json reports every step") {
  server_fixture f;
  auto app = fmt::format(R"({{
    "name": "incident_sync",
    "app_variables": [{{"name": "base", "value": "{}/api"}}],
    "steps": [
      {{"name": "Fetch Devices", "file": "QueryREST", "prefix_url": "${{base}}",
        "relative_url": "/devices", "user": "alice", "password": "s3cret",
        "output_to": ["Create Incident", "Log Count"]}},
      {{"name": "Settings", "file": "StaticData", "data": {{"severity": 3, "team": "noc"}},
        "output_to": ["Create Incident"]}},
      {{"name": "Create Incident", "file": "QueryREST", "prefix_url": "${{base}}",
        "relative_url": "incidents", "method": "post", "bearer_token": "tok-9",
        "headers": {{"X-Api-Key": "k-123"}},
        "payload": {{"device": "${{Fetch Devices.0.id}}", "name": "${{Fetch Devices.1.name}}",
                     "severity": "${{Settings.severity}}",
                     "note": "team ${{Settings.team}} for ${{Fetch Devices.0.id}}"}},
        "output_to": ["Summary"]}},
      {{"name": "Log Count", "file": "Log", "message": "second device ${{Fetch Devices.1.id}}",
        "output_to": ["Summary"]}},
      {{"name": "Summary", "file": "StaticData",
        "data": {{"incident": "${{Create Incident.id}}", "first": "${{Log Count.0.name}}"}}}}
    ]}})",
                         f.server.url());
  auto path = f.dir.write("incident_sync.json", app);
  auto r = run_app(f.dir, path, {"--json"});
  INFO("stdout: " << r.out);
  INFO("stderr: " << r.err);
  CHECK(r.exit_code == 0);
  auto task = parse(r.out);
  CHECK(task.at("status") == json::value("success"));
  CHECK(task.at("application") == json::value("incident_sync"));
  CHECK(std::string_view(task.at("task_id").as_string()).substr(0, 6) == "isapp-");
  REQUIRE(task.at("steps").as_array().size() == 5);
  for (const auto& s : task.at("steps").as_array()) {
    CAPTURE(to_json(s));
    CHECK(s.at("status") == json::value("success"));
    CHECK(s.at("error").is_null());
  }
  auto devices = parse(R"([{"id": "dev-1", "name": "router"}, {"id": "dev-2", "name": "switch"}])");
  CHECK(step_json(task, "Fetch Devices").at("data") == devices);
  CHECK(step_json(task, "Settings").at("data") == parse(R"({"severity": 3, "team": "noc"})"));
  auto expected_payload =
    parse(R"({"device": "dev-1", "name": "switch", "severity": 3, "note": "team noc for dev-1"})");
  CHECK(step_json(task, "Create Incident").at("data")
        == json::value(json::object{{"id", "inc-77"}, {"received", expected_payload}}));
  // Log passes its input on.
  CHECK(step_json(task, "Log Count").at("data") == devices);
  CHECK(step_json(task, "Summary").at("data") == parse(R"({"incident": "inc-77", "first": "router"})"));
  // Summary started after both of its inputs ended.
  auto started = step_json(task, "Summary").at("started_ns").to_number<int64_t>();
  CHECK(started >= step_json(task, "Create Incident").at("ended_ns").to_number<int64_t>());
  CHECK(started >= step_json(task, "Log Count").at("ended_ns").to_number<int64_t>());

  auto reqs = f.a->requests();
  REQUIRE(reqs.size() == 2);
  const test_request* get = nullptr;
  const test_request* post = nullptr;
  for (const auto& q : reqs)
    (q.method == "GET" ? get : post) = &q;
  REQUIRE(get);
  REQUIRE(post);
  CHECK(get->target == "/api/devices");
  CHECK(get->header("Authorization") == "Basic YWxpY2U6czNjcmV0"); // alice:s3cret
  CHECK(post->method == "POST");
  CHECK(post->target == "/api/incidents");
  CHECK(post->header("Authorization") == "Bearer tok-9");
  CHECK(post->header("X-Api-Key") == "k-123");
  CHECK(post->header("Content-Type").find("application/json") != std::string::npos);
  CHECK(parse(post->body) == expected_payload);
}

TEST_CASE("a QueryREST that gets 404 exits 1 with {http_code, headers, body} in --json") {
  server_fixture f;
  auto path = f.dir.write("missing.json", fmt::format(R"({{
    "name": "missing_thing",
    "steps": [
      {{"name": "Get Missing", "file": "QueryREST", "prefix_url": "{}",
        "relative_url": "/api/missing", "output_to": ["After"]}},
      {{"name": "After", "file": "StaticData", "data": 1}}
    ]}})",
                                                        f.server.url()));
  auto r = run_app(f.dir, path, {"--json"});
  INFO("stdout: " << r.out);
  CHECK(r.exit_code == 1);
  auto task = parse(r.out);
  CHECK(task.at("status") == json::value("failed"));
  const auto& s = step_json(task, "Get Missing");
  CHECK(s.at("status") == json::value("failed"));
  REQUIRE(s.at("error").is_string());
  CHECK(std::string(s.at("error").as_string()).find("404") != std::string::npos);
  const auto& data = s.at("data");
  REQUIRE(data.is_object());
  CHECK(data.at("http_code") == json::value(404));
  CHECK(data.at("body") == parse(R"({"error": "not here"})"));
  REQUIRE(data.at("headers").is_object());
  bool saw_reason = false;
  for (const auto& kv : data.at("headers").as_object())
    saw_reason = saw_reason || (kv.value() == json::value("gone"));
  CHECK(saw_reason);
  CHECK(step_json(task, "After").at("status") == json::value("skipped"));
  CHECK(f.a->requests().size() == 1);
}

TEST_CASE("without --json the run prints a table and a summary") {
  server_fixture f;
  auto path = f.dir.write("ping.json", fmt::format(R"({{
    "name": "pinger",
    "steps": [{{"name": "Ping", "file": "QueryREST", "prefix_url": "{}", "relative_url": "api/ping"}}]
  }})",
                                                     f.server.url()));
  auto r = run_app(f.dir, path);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("Ping") != std::string::npos);
  CHECK(r.out.find("1 succeeded, 0 failed, 0 skipped") != std::string::npos);
  CHECK(r.err.empty());
}

TEST_CASE("--config file with a transitive ${config.x} chain feeds prefix_url") {
  server_fixture f;
  auto cfg = f.dir.write("api_cfg.json", fmt::format(R"({{
    "name": "api_cfg",
    "configuration_data": [
      {{"name": "api_url", "value": "${{config.base}}/api"}},
      {{"name": "base", "value": "http://${{config.host}}:${{config.port}}"}},
      {{"name": "host", "value": "127.0.0.1"}},
      {{"name": "port", "value": {}}}
    ]}})",
                                                     f.server.port()));
  auto path = f.dir.write("configured.json", R"({
    "name": "configured",
    "configuration": "api_cfg",
    "steps": [{"name": "Ping", "file": "QueryREST", "prefix_url": "${config.api_url}",
               "relative_url": "ping"}]
  })");
  auto r = run_app(f.dir, path, {"--config", cfg, "--json"});
  INFO("stdout: " << r.out);
  CHECK(r.exit_code == 0);
  auto task = parse(r.out);
  CHECK(task.at("status") == json::value("success"));
  CHECK(task.at("configuration") == json::value("api_cfg"));
  CHECK(step_json(task, "Ping").at("data") == parse(R"({"pong": true})"));
  auto reqs = f.a->requests();
  REQUIRE(reqs.size() == 1);
  CHECK(reqs[0].target == "/api/ping");

  SUBCASE("an aligned configuration that is not found is a set-up error") {
    auto r2 = run_app(f.dir, path);
    CHECK(r2.exit_code == 2);
    CHECK(r2.err.find("api_cfg") != std::string::npos);
    CHECK(line_count(r2.err) == 1);
  }
}

TEST_CASE("a missing required variable exits 2 and names every missing variable") {
  temp_dir dir;
  auto path = dir.write("needs_vars.json", R"({
    "name": "needs_vars",
    "app_variables": [
      {"name": "region", "required": true},
      {"name": "optional_one", "required": false},
      {"name": "api_token", "required": true, "value": ""},
      {"name": "given", "required": true, "value": "x"}
    ],
    "steps": [{"name": "S", "file": "StaticData", "data": "${given}"}]
  })");
  auto r = run_app(dir, path);
  CHECK(r.exit_code == 2);
  CHECK(r.out.empty());
  CHECK(line_count(r.err) == 1);
  CHECK(r.err.find("region") != std::string::npos);
  CHECK(r.err.find("api_token") != std::string::npos);
  CHECK(r.err.find("optional_one") == std::string::npos);
  CHECK(r.err.find("given") == std::string::npos);

  SUBCASE("supplying them with --param runs the app") {
    auto ok = run_app(dir, path, {"--param", "region=eu", "--param", "api_token=t", "--json"});
    CHECK(ok.exit_code == 0);
  }
}

TEST_CASE("--param overrides an application variable") {
  temp_dir dir;
  auto path = dir.write("greet.json", R"({
    "name": "greet",
    "app_variables": [{"name": "greeting", "value": "hello"},
                      {"name": "count", "value": 1}],
    "steps": [{"name": "Say", "file": "StaticData",
               "data": {"text": "${greeting} world", "count": "${count}"}}]
  })");
  auto plain = run_app(dir, path, {"--json"});
  REQUIRE(plain.exit_code == 0);
  CHECK(step_json(parse(plain.out), "Say").at("data")
        == parse(R"({"text": "hello world", "count": 1})"));

  auto over = run_app(dir, path, {"--json", "--param", "greeting=bye", "--param", "count=3"});
  REQUIRE(over.exit_code == 0);
  auto task = parse(over.out);
  CHECK(step_json(task, "Say").at("data") == parse(R"({"text": "bye world", "count": 3})"));
  CHECK(task.at("params") == parse(R"({"greeting": "bye", "count": 3})"));

  SUBCASE("a malformed --param is a usage error") {
    auto bad = run_app(dir, path, {"--param", "novalue"});
    CHECK(bad.exit_code == 2);
    CHECK(line_count(bad.err) == 1);
    CHECK(bad.err.find("novalue") != std::string::npos);
  }
}

TEST_CASE("an application with a cycle exits 2") {
  temp_dir dir;
  auto path = dir.write("cycle.json", R"({
    "name": "cycle",
    "steps": [
      {"name": "A", "file": "StaticData", "output_to": ["B"]},
      {"name": "B", "file": "StaticData", "output_to": ["C"]},
      {"name": "C", "file": "StaticData", "output_to": ["A"]}
    ]})");
  auto r = run_app(dir, path);
  CHECK(r.exit_code == 2);
  CHECK(line_count(r.err) == 1);
  CHECK(r.err.find("cycle") != std::string::npos);
  CHECK(r.err.find("cycle.json") != std::string::npos);
}

TEST_CASE("a file that is not valid JSON exits 2 with one line naming line and column") {
  temp_dir dir;
  auto path = dir.write("broken.json", "{\n  \"name\": \"broken\",\n  \"steps\": [\n    {\"name\": }\n  ]\n}\n");
  auto r = run_app(dir, path);
  CHECK(r.exit_code == 2);
  CHECK(line_count(r.err) == 1);
  CHECK(r.err.find("line") != std::string::npos);
  CHECK(r.err.find("column") != std::string::npos);
  CHECK(r.err.find("broken.json") != std::string::npos);
  CHECK(r.out.empty());
}

TEST_CASE("a missing application file exits 2") {
  temp_dir dir;
  auto r = run_app(dir, dir.file("no_such_app.json"));
  CHECK(r.exit_code == 2);
  CHECK(line_count(r.err) == 1);
  CHECK(r.err.find("no_such_app") != std::string::npos);

  SUBCASE("an unknown application id too") {
    auto r2 = run_app(dir, "no_such_application_id");
    CHECK(r2.exit_code == 2);
    CHECK(line_count(r2.err) == 1);
    CHECK(r2.err.find("no_such_application_id") != std::string::npos);
  }
}

TEST_CASE("an unknown step type exits 2 and names it") {
  temp_dir dir;
  auto path = dir.write("unknown.json", R"({
    "name": "unknown",
    "steps": [{"name": "Mystery", "file": "NoSuchStepType"}]})");
  auto r = run_app(dir, path);
  CHECK(r.exit_code == 2);
  CHECK(line_count(r.err) == 1);
  CHECK(r.err.find("NoSuchStepType") != std::string::npos);
}

TEST_CASE("a bad --log-level is a usage error") {
  temp_dir dir;
  auto path = dir.write("ok.json", R"({"name": "ok", "steps": [{"name": "S", "file": "StaticData"}]})");
  auto r = run_app(dir, path, {"--log-level", "chatty"});
  CHECK(r.exit_code == 2);
  CHECK(line_count(r.err) == 1);
  CHECK(r.err.find("chatty") != std::string::npos);
}

TEST_CASE("stepflow validate accepts good files and rejects bad ones") {
  temp_dir dir;
  auto good_app = dir.write("good.json", R"({"name": "good", "steps": [
    {"name": "A", "file": "StaticData", "data": 1, "output_to": ["B"]},
    {"name": "B", "file": "Log", "message": "hi"}]})");
  auto good_cfg = dir.write("cfg.json", R"({"name": "cfg", "configuration_data": [
    {"name": "a", "value": "${config.b}"}, {"name": "b", "value": 2}]})");
  auto bad_json = dir.write("bad.json", "{ \"steps\": [ ");
  auto bad_step = dir.write("bad_step.json", R"({"name": "x", "steps": [{"name": "A", "file": "Nope"}]})");
  auto bad_edge = dir.write("bad_edge.json", R"({"name": "y", "steps": [
    {"name": "A", "file": "StaticData", "output_to": ["Ghost"]}]})");

  auto ok = run_binary(dir, {"validate", good_app, good_cfg});
  CHECK(ok.exit_code == 0);
  CHECK(ok.err.empty());
  CHECK(ok.out.find("good.json") != std::string::npos);
  CHECK(ok.out.find("cfg.json") != std::string::npos);

  for (const auto& bad : {bad_json, bad_step, bad_edge}) {
    CAPTURE(bad);
    auto r = run_binary(dir, {"validate", bad});
    CHECK(r.exit_code == 2);
    CHECK(line_count(r.err) == 1);
    CHECK(r.err.find(bad) != std::string::npos);
  }
  auto edge = run_binary(dir, {"validate", bad_edge});
  CHECK(edge.err.find("Ghost") != std::string::npos);

  // A mix reports every bad file and still prints the good one.
  auto mixed = run_binary(dir, {"validate", good_app, bad_json, bad_step});
  CHECK(mixed.exit_code == 2);
  CHECK(mixed.out.find("good.json") != std::string::npos);
  CHECK(line_count(mixed.err) == 2);
}

TEST_CASE("stepflow --version and usage errors") {
  temp_dir dir;
  auto v = run_binary(dir, {"--version"});
  CHECK(v.exit_code == 0);
  CHECK(v.out.rfind("stepflow ", 0) == 0);
  auto bogus = run_binary(dir, {"frobnicate"});
  CHECK(bogus.exit_code == 2);
  auto no_app = run_binary(dir, {"run"});
  CHECK(no_app.exit_code == 2);
  auto steps = run_binary(dir, {"steps", "--json"});
  CHECK(steps.exit_code == 0);
  auto list = parse(steps.out);
  REQUIRE(list.is_array());
  bool has_query_rest = false;
  for (const auto& s : list.as_array())
    has_query_rest = has_query_rest || s.at("name") == json::value("QueryREST");
  CHECK(has_query_rest);
}

TEST_CASE("Transform merges two steps and Condition skips only the branches not taken") {
  temp_dir dir;
  auto src = slurp(stepflow::test::source_dir() + "/tests/integration/flow_demo_app.json");
  auto path = dir.write("flow.json", src);
  auto r = run_app(dir, path, {"--json"});
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  auto task = parse(r.out);
  CHECK(task.at("status") == "success");
  auto status = [&](std::string_view n) { return step_json(task, n).at("status"); };
  // The manual's Example 2 shape: the Transform output is parsed as JSON.
  const auto& merged = step_json(task, "Merge").at("data").as_object();
  CHECK(merged.at("incident_number") == "INC0010104");
  CHECK(merged.at("found_cr") == false);
  CHECK(merged.at("changeRequests").as_array().empty());
  // found_cr is false: "Create CR" runs, "Update CR" and what only it leads
  // to are skipped; "Escalate" (and + numeric + template) runs; "Done" joins
  // a taken and a skipped branch and runs.
  CHECK(status("Check") == "success");
  CHECK(status("Create CR") == "success");
  CHECK(status("Update CR") == "skipped");
  CHECK(status("After Update") == "skipped");
  CHECK(status("Escalate") == "success");
  CHECK(status("Done") == "success");
}

TEST_CASE("a Condition naming a step it does not feed fails the run with a sentence") {
  temp_dir dir;
  auto path = dir.write("bad_cond.json", R"({"steps": [
    {"name": "A", "file": "Condition", "conditions": [{"step": "Z", "condition": {"type": "equal", "value": true}}], "output_to": ["B"]},
    {"name": "B", "file": "Log", "message": "b"},
    {"name": "Z", "file": "Log", "message": "z"}]})");
  auto r = run_app(dir, path, {"--json"});
  CHECK(r.exit_code == 1);
  auto task = parse(r.out);
  CHECK(step_json(task, "A").at("status") == "failed");
  CHECK(step_json(task, "A").at("error").as_string().find("not a step this Condition feeds")
        != std::string::npos);
}

namespace {
/// A SyncPack with a child application and parents that trigger it.
std::string trigger_pack(const temp_dir& dir) {
  dir.write("pack/meta.json", R"({"name": "trigger_pack", "version": "1.0.0"})");
  dir.write("pack/apps/child.json", R"({"app_variables": [{"name": "n", "required": true}],
    "steps": [{"name": "Make", "file": "StaticData", "data": {"n": "${n}", "from": "child"}}]})");
  dir.write("pack/apps/failing_child.json", R"({"steps": [
    {"name": "Missing", "file": "CacheRead", "key": "no-such-key-anywhere"}]})");
  dir.write("pack/apps/parent.json", R"({"steps": [
    {"name": "Run Child", "file": "TriggerApplication", "application": "child",
     "params": {"n": 7}, "output_to": ["Use"]},
    {"name": "Later", "file": "TriggerApplication", "application": "child",
     "params": {"n": 8}, "blocking": false},
    {"name": "Use", "file": "Log", "message": "child said ${Run Child.n}"}]})");
  dir.write("pack/apps/parent_of_failure.json", R"({"steps": [
    {"name": "Run Child", "file": "TriggerApplication", "application": "failing_child"}]})");
  dir.write("pack/apps/recursive.json", R"({"steps": [
    {"name": "Again", "file": "TriggerApplication", "application": "recursive"}]})");
  return dir.file("pack");
}
} // namespace

TEST_CASE("a blocking trigger outputs the child's data and a non-blocking one its task id") {
  temp_dir dir;
  auto pack = trigger_pack(dir);
  auto r = run_binary(dir, {"run", "parent", "--syncpack", pack, "--data-dir", dir.file("data"),
                            "--json"});
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  auto task = parse(r.out);
  const auto& child_data = step_json(task, "Run Child").at("data").as_object();
  CHECK(child_data.at("n") == 7);
  CHECK(child_data.at("from") == "child");
  const auto& later = step_json(task, "Later").at("data").as_object();
  CHECK(later.at("task_id").as_string().starts_with("isapp-"));
  CHECK(step_json(task, "Use").at("status") == "success");
}

TEST_CASE("a failing child fails the blocking trigger step") {
  temp_dir dir;
  auto pack = trigger_pack(dir);
  auto r = run_binary(dir, {"run", "parent_of_failure", "--syncpack", pack, "--data-dir",
                            dir.file("data"), "--json"});
  CHECK(r.exit_code == 1);
  auto task = parse(r.out);
  const auto& s = step_json(task, "Run Child");
  CHECK(s.at("status") == "failed");
  CHECK(s.at("error").as_string().find("ended failed") != std::string::npos);
}

TEST_CASE("an application that triggers itself stops at the depth limit") {
  temp_dir dir;
  auto pack = trigger_pack(dir);
  auto r = run_binary(dir, {"run", "recursive", "--syncpack", pack, "--data-dir",
                            dir.file("data"), "--json"});
  CHECK(r.exit_code == 1);
  CHECK(r.out.find("nest at most 8 deep") != std::string::npos);
}

namespace {
/// GET `url` with the runtime's HTTP client; the body ("" on failure).
std::string read_url(const std::string& url) {
  stepflow::http_client client;
  stepflow::http_request req;
  req.url = url;
  auto r = stepflow::test::fetch(client, req);
  return r ? r->body : std::string{};
}
} // namespace

TEST_CASE("an SL1 event syncs to a ServiceNow incident and back through the simulators") {
  temp_dir dir;
  stepflow::test::sim_process snow("snow");
  stepflow::test::sim_process sl1("sl1");
  auto path = dir.write("event_sync.json", fmt::format(R"({{
    "name": "event_sync",
    "app_variables": [{{"name": "event_id", "required": true}}, {{"name": "event_message", "required": true}}],
    "steps": [
      {{"name": "Build Incident", "file": "Transform",
        "template": "{{{{ {{'short_description': app_variables.event_message, 'correlation_id': 'SL1+EVENT+' ~ app_variables.event_id}}|tojson }}}}",
        "output_to": ["Create Incident"]}},
      {{"name": "Create Incident", "file": "QueryREST", "prefix_url": "{0}", "relative_url": "/api/now/table/incident",
        "method": "POST", "payload": "${{Build Incident}}", "output_to": ["Read Incident"]}},
      {{"name": "Read Incident", "file": "QueryREST", "prefix_url": "{0}",
        "relative_url": "/api/now/table/incident/${{Create Incident.result.sys_id}}", "output_to": ["Write Ticket"]}},
      {{"name": "Write Ticket", "file": "QueryREST", "prefix_url": "{1}", "relative_url": "/api/event/${{event_id}}",
        "method": "PUT", "payload": {{"ext_ticket_ref": "${{Read Incident.result.number}}"}}}}
    ]}})", snow.url(), sl1.url()));
  auto r = run_app(dir, path, {"--param", "event_id=12503", "--param", "event_message=Disk full", "--json"});
  REQUIRE_MESSAGE(r.exit_code == 0, std::string(r.out + r.err));
  auto task = parse(r.out);
  CHECK(step_json(task, "Write Ticket").at("data").at("ext_ticket_ref") == "INC0010001");
  // The SL1 simulator saw exactly one ticket for event 12503.
  auto s = parse(read_url(sl1.url() + "/_stats?ids=1"));
  CHECK(s.at("distinct_events") == 1);
  CHECK(s.at("event_ids").as_array().at(0) == 12503);
}

TEST_CASE("the bundled sl1_servicenow_demo SyncPack runs against the simulators") {
  temp_dir dir;
  stepflow::test::sim_process snow("snow");
  stepflow::test::sim_process sl1("sl1", {"--events", "5"});
  // The bundled configuration names the simulators' default ports; this run
  // points a configuration of the same shape at the random ones.
  auto cfg = dir.write("demo_config.json", fmt::format(R"({{
    "name": "sl1_servicenow_demo_config",
    "configuration_data": [
      {{"name": "sl1_url", "value": "{}", "encrypted": false}},
      {{"name": "sl1_user", "value": "em7admin", "encrypted": false}},
      {{"name": "sl1_password", "value": "s3cret-sl1", "encrypted": true}},
      {{"name": "snow_url", "value": "{}", "encrypted": false}},
      {{"name": "snow_user", "value": "admin", "encrypted": false}},
      {{"name": "snow_password", "value": "s3cret-snow", "encrypted": true}}]}})", sl1.url(), snow.url()));
  auto r = run_app(dir, "sl1_event_to_incident",
                   {"--config", cfg, "--param", "event_id=3", "--json"});
  REQUIRE_MESSAGE(r.exit_code == 0, std::string(r.out + r.err));
  auto task = parse(r.out);
  CHECK(step_json(task, "Create Incident").at("data").at("number") == "INC0010001");
  auto event = parse(read_url(sl1.url() + "/api/event/3"));
  CHECK(event.at("ext_ticket_ref") == "INC0010001");
  // Passwords reach the far sides, never the output.
  CHECK(r.out.find("s3cret") == std::string::npos);
  CHECK(r.err.find("s3cret") == std::string::npos);
}
