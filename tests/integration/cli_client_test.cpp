// The remote CLI (`stepflow --server URL ...`) against a real `stepflow serve`
// on 127.0.0.1 (port 0, --port-file, a temporary data directory, the
// SyncPacks of the source tree): apps, configs, steps, run, tasks, status,
// about, the exit codes and one-sentence errors. Every process wait is bounded.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/json.hpp>
#include <doctest/doctest.h>
#include <fmt/format.h>

#include "stepflow/runtime/json.hpp"
#include "support/binary_checks.hpp"
#include "support/binary_runner.hpp"
#include "support/server_process.hpp"
#include "support/temp_dir.hpp"

using namespace stepflow;
using namespace std::chrono_literals;
using stepflow::test::binary_result;
using stepflow::test::server_process;
using stepflow::test::temp_dir;

namespace {

constexpr const char* admin_password = "client-test-pw-7731";

/// Runs the binary with `args` and environment changes `env` (an empty
/// value removes the variable; 60 s at most), stdout and stderr captured
/// through files in `dir`. Every run checks that nothing crashed or asserted
/// and that the admin password never shows.
binary_result run_binary(const temp_dir& dir, const std::vector<std::string>& args,
                         const std::map<std::string, std::string>& env = {}) {
  test::env_vars set;
  std::vector<std::string> unset;
  for (const auto& [k, v] : env) {
    if (v.empty())
      unset.push_back(k);
    else
      set.emplace_back(k, v);
  }
  test::running_binary b{dir, args, set, unset};
  auto r = b.wait(60);
  test::require_clean_exit(r, args);
  INFO("stdout: " << r.out);
  INFO("stderr: " << r.err);
  CHECK(r.out.find(admin_password) == std::string::npos);
  CHECK(r.err.find(admin_password) == std::string::npos);
  return r;
}

json::value parse(std::string_view text) {
  auto v = parse_json(text, "test");
  REQUIRE_MESSAGE(v, message_of(v.error()) << "\n--- text ---\n" << text);
  return std::move(*v);
}

/// One sentence: a single line on stderr, "stepflow: ...".
void check_one_sentence(const binary_result& r) {
  CHECK(r.err.rfind("stepflow: ", 0) == 0);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
    s.pop_back();
  return s;
}

/// A server and a client logged in through $STEPFLOW_PASSWORD.
struct fixture {
  temp_dir dir;
  server_process server;

  explicit fixture(std::vector<std::string> extra = {})
      : server(dir, test::admin_server(admin_password, std::move(extra))) {}

  binary_result cli(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
    args.insert(args.begin(), {"--server", server.url()});
    env.emplace("STEPFLOW_PASSWORD", admin_password);
    env.emplace("STEPFLOW_SERVER", "");
    return run_binary(dir, args, env);
  }
};

/// Polls `tasks get ID --json` (10 s at most) until the task has `status`.
bool wait_for_status(fixture& f, const std::string& id, std::string_view status) {
  auto deadline = std::chrono::steady_clock::now() + 10s;
  for (;;) {
    auto g = f.cli({"tasks", "get", id, "--json"});
    REQUIRE(g.exit_code == 0);
    if (parse(g.out).at("status").as_string() == status)
      return true;
    if (std::chrono::steady_clock::now() > deadline)
      return false;
    std::this_thread::sleep_for(20ms);
  }
}

} // namespace

TEST_CASE("apps list shows the bundled demo and apps put get delete round trip") {
  fixture f;
  auto list = f.cli({"apps", "list"});
  REQUIRE(list.exit_code == 0);
  CHECK(list.out.rfind("NAME", 0) == 0);
  CHECK(list.out.find("stepflow_demo") != std::string::npos);
  CHECK(list.out.find("stepflow_demo_config") != std::string::npos);

  auto list_json = f.cli({"apps", "list", "--json"});
  REQUIRE(list_json.exit_code == 0);
  bool found = false;
  auto apps = parse(list_json.out);
  for (const auto& a : apps.as_array())
    found |= a.at("name").as_string() == "stepflow_demo";
  CHECK(found);

  // put: the id comes from the file name when the body has no "name".
  auto path = f.dir.write("client_roundtrip.json", R"({
    "friendly_name": "Round trip", "description": "put by the remote CLI test",
    "app_variables": [{"name": "who", "required": false, "default_value": "world"}],
    "steps": [{"name": "Hello", "file": "Log", "message": "hello ${who}"}]})");
  auto put = f.cli({"apps", "put", path});
  REQUIRE(put.exit_code == 0);
  CHECK(trim(put.out) == R"(created application "client_roundtrip" (1 step))");
  auto again = f.cli({"apps", "put", path});
  REQUIRE(again.exit_code == 0);
  CHECK(again.out.rfind("replaced application", 0) == 0);

  auto get = f.cli({"apps", "get", "client_roundtrip", "--json"});
  REQUIRE(get.exit_code == 0);
  auto app = parse(get.out);
  CHECK(app.at("name").as_string() == "client_roundtrip");
  CHECK(app.at("friendly_name").as_string() == "Round trip");
  CHECK(app.at("steps").as_array().size() == 1);
  CHECK(app.at("steps").as_array()[0].at("message").as_string() == "hello ${who}");

  auto table = f.cli({"apps", "get", "client_roundtrip"});
  REQUIRE(table.exit_code == 0);
  CHECK(table.out.find("Round trip") != std::string::npos);
  CHECK(table.out.find("Hello") != std::string::npos);
  CHECK(table.out.find("who") != std::string::npos);

  // The JSON printed by get is accepted by put (edit round trip).
  auto dumped = f.dir.write("client_roundtrip_dump.json", get.out);
  CHECK(f.cli({"apps", "put", dumped}).exit_code == 0);

  auto del = f.cli({"apps", "delete", "client_roundtrip"});
  REQUIRE(del.exit_code == 0);
  CHECK(trim(del.out) == R"(deleted application "client_roundtrip")");
  auto gone = f.cli({"apps", "get", "client_roundtrip"});
  CHECK(gone.exit_code == 2);
  CHECK(gone.out.empty());
  CHECK(trim(gone.err) == R"(stepflow: no application named "client_roundtrip")");
  check_one_sentence(gone);
  auto del2 = f.cli({"apps", "delete", "client_roundtrip"});
  CHECK(del2.exit_code == 2);
  check_one_sentence(del2);

  // An invalid application: the server's sentence, exit 2.
  auto bad = f.dir.write("bad_app.json", R"({"steps": [{"name": "X", "file": "NoSuchStep"}]})");
  auto put_bad = f.cli({"apps", "put", bad});
  CHECK(put_bad.exit_code == 2);
  CHECK(put_bad.err.find("unknown step type \"NoSuchStep\"") != std::string::npos);
  check_one_sentence(put_bad);
  // A file that is not there: exit 2, one sentence, no request needed.
  auto missing = f.cli({"apps", "put", f.dir.file("nope.json")});
  CHECK(missing.exit_code == 2);
  check_one_sentence(missing);
}

TEST_CASE("configs put encrypts a value and configs get shows it masked") {
  fixture f;
  auto path = f.dir.write("client_secrets.json", R"({
    "friendly_name": "Client secrets",
    "configuration_data": [
      {"name": "user", "value": "bob", "encrypted": false},
      {"name": "token", "value": "hunter2-secret", "encrypted": true}]})");
  auto put = f.cli({"configs", "put", path});
  REQUIRE(put.exit_code == 0);
  CHECK(trim(put.out) == R"(created configuration "client_secrets" (2 values, 1 encrypted))");
  CHECK(put.out.find("hunter2-secret") == std::string::npos);

  auto get = f.cli({"configs", "get", "client_secrets"});
  REQUIRE(get.exit_code == 0);
  CHECK(get.out.find("hunter2-secret") == std::string::npos);
  CHECK(get.out.find("********") != std::string::npos);
  CHECK(get.out.find("bob") != std::string::npos);

  auto get_json = f.cli({"configs", "get", "client_secrets", "--json"});
  REQUIRE(get_json.exit_code == 0);
  auto cfg = parse(get_json.out);
  CHECK(cfg.at("name").as_string() == "client_secrets");
  for (const auto& d : cfg.at("configuration_data").as_array()) {
    if (d.at("name").as_string() == "token") {
      CHECK(d.at("value").as_string() == "********");
      CHECK(d.at("encrypted").as_bool());
    } else {
      CHECK(d.at("value").as_string() == "bob");
    }
  }

  auto list = f.cli({"configs", "list"});
  REQUIRE(list.exit_code == 0);
  CHECK(list.out.find("client_secrets") != std::string::npos);
  CHECK(list.out.find("stepflow_demo_config") != std::string::npos);
  CHECK(list.out.find("hunter2-secret") == std::string::npos);

  // The secret is not stored in plain text (encryption at rest).
  bool plain = false;
  for (const auto& e : std::filesystem::recursive_directory_iterator(f.dir.file("data")))
    if (e.is_regular_file())
      plain |= test::read_text(e.path().string()).find("hunter2-secret") != std::string::npos;
  CHECK_FALSE(plain);

  // Putting back what configs get printed would replace the secret with the
  // mask: the client refuses.
  auto dumped = f.dir.write("client_secrets_dump.json", get_json.out);
  auto put_mask = f.cli({"configs", "put", dumped});
  CHECK(put_mask.exit_code == 2);
  CHECK(put_mask.err.find("mask") != std::string::npos);
  check_one_sentence(put_mask);

  auto del = f.cli({"configs", "delete", "client_secrets"});
  REQUIRE(del.exit_code == 0);
  CHECK(trim(del.out) == R"(deleted configuration "client_secrets")");
  auto gone = f.cli({"configs", "get", "client_secrets"});
  CHECK(gone.exit_code == 2);
  CHECK(trim(gone.err) == R"(stepflow: no configuration named "client_secrets")");
}

TEST_CASE("steps list and steps get") {
  fixture f;
  auto list = f.cli({"steps", "list"});
  REQUIRE(list.exit_code == 0);
  for (auto t : {"StaticData", "Log", "CacheSave", "CacheRead", "QueryREST"})
    CHECK_MESSAGE(list.out.find(t) != std::string::npos, t);
  auto get = f.cli({"steps", "get", "Log"});
  REQUIRE(get.exit_code == 0);
  CHECK(get.out.find("message") != std::string::npos);
  auto get_json = f.cli({"steps", "get", "Log", "--json"});
  REQUIRE(get_json.exit_code == 0);
  CHECK(parse(get_json.out).at("name").as_string() == "Log");
  auto none = f.cli({"steps", "get", "NoSuchStep"});
  CHECK(none.exit_code == 2);
  CHECK(trim(none.err) == R"(stepflow: no step type named "NoSuchStep")");
}

TEST_CASE("run --wait prints every step and exits 0 and without --wait prints the task id") {
  fixture f;
  auto r = f.cli({"run", "stepflow_demo", "--wait", "20"});
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.rfind("task isapp-", 0) == 0);
  for (auto step : {"Fetch Devices", "Cache Device 16", "Cache Device 17", "Read Back", "Summary"})
    CHECK_MESSAGE(r.out.find(fmt::format("  success  {}", step)) != std::string::npos, step);
  CHECK(r.out.find("device 16 (core-router-1) of ACME") != std::string::npos);
  CHECK(r.out.find("success in ") != std::string::npos);
  CHECK(r.out.find("5 succeeded, 0 failed, 0 skipped") != std::string::npos);

  // --json: the task object with every step and its data.
  auto j = f.cli({"--json", "run", "stepflow_demo", "--param", "device_id=17", "--wait", "20"});
  REQUIRE(j.exit_code == 0);
  auto task = parse(j.out);
  CHECK(task.at("status").as_string() == "success");
  CHECK(task.at("params").at("device_id").as_int64() == 17);
  REQUIRE(task.at("steps").as_array().size() == 5);
  for (const auto& s : task.at("steps").as_array())
    if (s.at("name").as_string() == "Read Back")
      CHECK(s.at("data").at("sl1_id").as_int64() == 17);

  // Without --wait: only the task id, then tasks get finds it.
  auto bare = f.cli({"run", "stepflow_demo", "--priority", "5", "--log-level", "debug"});
  REQUIRE(bare.exit_code == 0);
  auto id = trim(bare.out);
  CHECK(id.rfind("isapp-", 0) == 0);
  CHECK(id.find('\n') == std::string::npos);
  REQUIRE(wait_for_status(f, id, "success"));
  auto got = parse(f.cli({"tasks", "get", id, "--json"}).out);
  CHECK(got.at("priority").as_int64() == 5);
  CHECK(got.at("log_level").as_int64() == 10);

  // A failing run: exit 1, the failed step and its error in the table.
  auto fail_app = f.dir.write("client_fails.json", R"({"steps": [
    {"name": "Missing Key", "file": "CacheRead", "key": "client-test-no-such-key"}]})");
  REQUIRE(f.cli({"apps", "put", fail_app}).exit_code == 0);
  auto failed = f.cli({"run", "client_fails", "--wait", "20"});
  CHECK(failed.exit_code == 1);
  CHECK(failed.out.find("  failed   Missing Key") != std::string::npos);
  CHECK(failed.out.find("run isapp-") != std::string::npos);
  CHECK(failed.out.find(" failed in ") != std::string::npos);

  // Request errors: the server's sentence, exit 2.
  auto unknown = f.cli({"run", "no_such_app", "--wait", "5"});
  CHECK(unknown.exit_code == 2);
  CHECK(trim(unknown.err) == R"(stepflow: no application named "no_such_app")");
  auto prio = f.cli({"run", "stepflow_demo", "--priority", "12"});
  CHECK(prio.exit_code == 2);
  CHECK(trim(prio.err) == "stepflow: priority: must be an integer from 0 (lowest) to 9 (highest)");
  auto param = f.cli({"run", "stepflow_demo", "--param", "novalue"});
  CHECK(param.exit_code == 2);
  check_one_sentence(param);
}

TEST_CASE("run with a missing required variable exits 2 with the sentence") {
  fixture f;
  auto path = f.dir.write("client_needs.json", R"({
    "app_variables": [{"name": "region", "required": true}],
    "steps": [{"name": "Say", "file": "Log", "message": "region ${region}"}]})");
  REQUIRE(f.cli({"apps", "put", path}).exit_code == 0);
  for (const auto& extra : std::vector<std::vector<std::string>>{{}, {"--wait", "5"}}) {
    std::vector<std::string> args{"run", "client_needs"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = f.cli(args);
    CHECK(r.exit_code == 2);
    CHECK(r.out.empty());
    CHECK(trim(r.err)
          == R"(stepflow: application "client_needs" is missing required variables: region)");
    check_one_sentence(r);
  }
  auto ok = f.cli({"run", "client_needs", "--param", "region=EU", "--wait", "20"});
  CHECK(ok.exit_code == 0);
  CHECK(ok.out.find("region EU") != std::string::npos);
}

TEST_CASE("tasks list get logs replay and revoke") {
  // Queue "held" has no workers: its runs stay pending until revoked.
  fixture f({"--queue-workers", "held=0"});
  auto first = f.cli({"--json", "run", "stepflow_demo", "--wait", "20"});
  REQUIRE(first.exit_code == 0);
  auto id = std::string(parse(first.out).at("task_id").as_string());

  auto list = f.cli({"tasks", "list", "--app", "stepflow_demo", "--status", "success"});
  REQUIRE(list.exit_code == 0);
  CHECK(list.out.rfind("TASK", 0) == 0);
  CHECK(list.out.find(id) != std::string::npos);
  auto list_json = f.cli({"tasks", "list", "--limit", "1", "--json"});
  REQUIRE(list_json.exit_code == 0);
  CHECK(parse(list_json.out).as_array().size() == 1);
  auto none = f.cli({"tasks", "list", "--status", "failed", "--json"});
  REQUIRE(none.exit_code == 0);
  CHECK(parse(none.out).as_array().empty());
  auto bad_status = f.cli({"tasks", "list", "--status", "bogus"});
  CHECK(bad_status.exit_code == 2);
  CHECK(bad_status.err.find("status: must be") != std::string::npos);

  auto get = f.cli({"tasks", "get", id});
  REQUIRE(get.exit_code == 0);
  CHECK(get.out.find("  success  Summary") != std::string::npos);
  auto missing = f.cli({"tasks", "get", "isapp-00000000-0000-4000-8000-000000000000"});
  CHECK(missing.exit_code == 2);
  check_one_sentence(missing);

  auto logs = f.cli({"tasks", "logs", id, "Summary"});
  REQUIRE(logs.exit_code == 0);
  CHECK(logs.out.find("device 16 (core-router-1) of ACME") != std::string::npos);
  auto logs_idx = f.cli({"tasks", "logs", id, "0", "--json"});
  REQUIRE(logs_idx.exit_code == 0);
  CHECK(parse(logs_idx.out).as_array().size() >= 1);

  // replay: a new task id, and with --wait the finished table.
  auto replay = f.cli({"tasks", "replay", id});
  REQUIRE(replay.exit_code == 0);
  auto replay_id = trim(replay.out);
  CHECK(replay_id.rfind("isapp-", 0) == 0);
  CHECK(replay_id != id);
  auto replay_wait = f.cli({"tasks", "replay", id, "--wait", "20"});
  REQUIRE(replay_wait.exit_code == 0);
  CHECK(replay_wait.out.find("5 succeeded, 0 failed, 0 skipped") != std::string::npos);

  // A held run: --wait 1 gives up with exit 1, still pending.
  auto held = f.cli({"run", "stepflow_demo", "--queue", "held", "--wait", "1"});
  CHECK(held.exit_code == 1);
  CHECK(held.err.find("is still pending after 1 s") != std::string::npos);
  auto held_id = f.cli({"run", "stepflow_demo", "--queue", "held"});
  REQUIRE(held_id.exit_code == 0);
  auto hid = trim(held_id.out);
  auto held_list = f.cli({"tasks", "list", "--queue", "held", "--status", "pending", "--json"});
  REQUIRE(held_list.exit_code == 0);
  CHECK(parse(held_list.out).as_array().size() == 2);

  auto revoke = f.cli({"tasks", "revoke", hid, "--terminate"});
  REQUIRE(revoke.exit_code == 0);
  CHECK(revoke.out.find("revoked task " + hid) != std::string::npos);
  // The revoked record is committed just after the answer: bounded poll.
  CHECK(wait_for_status(f, hid, "revoked"));
  auto again = f.cli({"tasks", "revoke", hid});
  CHECK(again.exit_code == 2);
  CHECK(trim(again.err) == fmt::format("stepflow: task \"{}\" already ended", hid));
  // An application id revokes every task of it (the other held run).
  auto all = f.cli({"tasks", "revoke", "stepflow_demo"});
  REQUIRE(all.exit_code == 0);
  CHECK(all.out.find("application \"stepflow_demo\"") != std::string::npos);
  bool none_pending = false;
  for (auto deadline = std::chrono::steady_clock::now() + 10s;
       !none_pending && std::chrono::steady_clock::now() < deadline;) {
    auto pending = f.cli({"tasks", "list", "--queue", "held", "--status", "pending", "--json"});
    REQUIRE(pending.exit_code == 0);
    none_pending = parse(pending.out).as_array().empty();
    if (!none_pending)
      std::this_thread::sleep_for(20ms);
  }
  CHECK(none_pending);
}

TEST_CASE("status and about and STEPFLOW_SERVER selecting the client") {
  fixture f;
  // status needs no login.
  auto st = f.cli({"status"}, {{"STEPFLOW_PASSWORD", ""}});
  REQUIRE(st.exit_code == 0);
  CHECK(st.out.find("ok") != std::string::npos);
  CHECK(st.out.find("default") != std::string::npos);
  auto st_json = f.cli({"status", "--json"});
  REQUIRE(st_json.exit_code == 0);
  CHECK(parse(st_json.out).at("status").as_string() == "ok");
  auto about = f.cli({"about", "--json"});
  REQUIRE(about.exit_code == 0);
  CHECK(parse(about.out).at("name").as_string() == "stepflow");

  auto via_env = run_binary(f.dir, {"apps", "list"},
                            {{"STEPFLOW_SERVER", f.server.url()}, {"STEPFLOW_PASSWORD", admin_password}});
  REQUIRE(via_env.exit_code == 0);
  CHECK(via_env.out.find("stepflow_demo") != std::string::npos);
  // A URL without a scheme, with a trailing slash.
  auto bare = run_binary(f.dir, {"about"},
                         {{"STEPFLOW_SERVER", f.server.url().substr(7) + "/"},
                          {"STEPFLOW_PASSWORD", admin_password}});
  REQUIRE(bare.exit_code == 0);
  CHECK(bare.out.rfind("stepflow ", 0) == 0);
  // Local commands stay local: `steps` lists this binary's step types.
  auto local = run_binary(f.dir, {"steps", "--json"}, {{"STEPFLOW_SERVER", "http://127.0.0.1:1"}});
  CHECK(local.exit_code == 0);
  // Usage errors: exit 2, one sentence.
  auto usage = f.cli({"apps", "frobnicate"});
  CHECK(usage.exit_code == 2);
  check_one_sentence(usage);
  auto nothing = f.cli({});
  CHECK(nothing.exit_code == 2);
  check_one_sentence(nothing);
}

TEST_CASE("a wrong or missing password exits 2 with a sentence about authentication") {
  fixture f;
  auto wrong = f.cli({"--password", "not-the-password", "apps", "list"});
  CHECK(wrong.exit_code == 2);
  CHECK(wrong.out.empty());
  CHECK(wrong.err.find("authentication") != std::string::npos);
  CHECK(wrong.err.find("not-the-password") == std::string::npos);
  check_one_sentence(wrong);
  auto wrong_user = f.cli({"--user", "mallory", "apps", "list"});
  CHECK(wrong_user.exit_code == 2);
  CHECK(wrong_user.err.find("authentication") != std::string::npos);
  auto none = f.cli({"apps", "list"}, {{"STEPFLOW_PASSWORD", ""}});
  CHECK(none.exit_code == 2);
  CHECK(none.err.find("authentication") != std::string::npos);
  CHECK(none.err.find("STEPFLOW_PASSWORD") != std::string::npos);
  check_one_sentence(none);
  // --password wins over $STEPFLOW_PASSWORD.
  auto flag = f.cli({"--password", admin_password, "apps", "list"}, {{"STEPFLOW_PASSWORD", "wrong"}});
  CHECK(flag.exit_code == 0);
}

TEST_CASE("an unreachable server exits 2 with one sentence naming the URL") {
  temp_dir dir;
  // A port nothing listens on: bind one, then close it.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  auto port = ntohs(addr.sin_port);
  ::close(fd);
  auto url = fmt::format("http://127.0.0.1:{}", port);
  auto r = run_binary(dir, {"--server", url, "apps", "list"}, {{"STEPFLOW_PASSWORD", "x"}});
  CHECK(r.exit_code == 2);
  CHECK(r.out.empty());
  CHECK(r.err.find(url) != std::string::npos);
  check_one_sentence(r);
  // Credentials in the URL are never shown.
  auto secret = run_binary(dir, {"--server", fmt::format("http://isadmin:pw-in-url@127.0.0.1:{}", port),
                                 "status"});
  CHECK(secret.exit_code == 2);
  CHECK(secret.err.find("pw-in-url") == std::string::npos);
  CHECK(secret.err.find(fmt::format("127.0.0.1:{}", port)) != std::string::npos);
}
