// The real binary with steps from outside it: PowerFlow Python steps of a
// SyncPack laid out like ScienceLogic's template, external-process steps
// declared by manifests (hung, crashing, memory-hungry, killed mid-run), and
// dynamic plugins (the example plugin, and plugins that must be refused).
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "stepflow/runtime/json.hpp"
#include "support/binary_runner.hpp"
#include "support/temp_dir.hpp"

using namespace stepflow;
using stepflow::test::binary_result;
using stepflow::test::env_vars;
using stepflow::test::run_stepflow;
using stepflow::test::running_binary;
using stepflow::test::temp_dir;

namespace fs = std::filesystem;

namespace {

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s)
    out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string python_pack() {
  return test::source_dir() + "/tests/python/fixtures/stepflow_test_syncpack";
}

std::string build_dir() {
  return fs::path(test::stepflow_binary()).parent_path().string();
}

json::object parse_object(const std::string& text) {
  auto v = parse_json(text, "stdout");
  REQUIRE_MESSAGE(v, "not JSON: " << text);
  REQUIRE(v->is_object());
  return std::move(v->get_object());
}

/// `stepflow run <app> --json` with a fresh data dir; the task object.
json::object run_json(const temp_dir& dir, const std::string& app,
                      std::vector<std::string> extra = {}, const env_vars& env = {},
                      int expected_exit = 0) {
  std::vector<std::string> args{"run", app, "--json", "--data-dir", dir.file("data")};
  args.insert(args.end(), extra.begin(), extra.end());
  auto r = run_stepflow(dir, args, env);
  INFO("stderr: " << r.err);
  INFO("stdout: " << r.out);
  REQUIRE(r.exit_code == expected_exit);
  return parse_object(r.out);
}

const json::object& step_named(const json::object& task, std::string_view name) {
  for (const auto& s : task.at("steps").as_array())
    if (s.as_object().at("name").as_string() == name)
      return s.as_object();
  FAIL("no step " << name);
  throw std::logic_error("unreachable");
}

/// A SyncPack in `dir` with one app and the given files under steps/.
std::string write_pack(const temp_dir& dir, const std::string& app_json,
                       const std::vector<std::pair<std::string, std::string>>& files) {
  dir.write("pack/meta.json", R"({"name": "ext_pack", "version": "1.0.0"})");
  dir.write("pack/apps/ext_app.json", app_json);
  for (const auto& [name, content] : files)
    dir.write("pack/steps/" + name, content);
  return dir.file("pack");
}

/// A manifest for tests/fixtures/protocol_step.py with extra fields.
std::string manifest(const std::string& name, const std::string& extra = "") {
  return fmt::format(R"({{"name": {}, "command": ["/usr/bin/python3", {}]{}}})", quote_json(name),
                     quote_json(test::source_dir() + "/tests/fixtures/protocol_step.py"), extra);
}

} // namespace

TEST_CASE("PowerFlow Python steps of a SyncPack run unmodified") {
  temp_dir dir;
  auto task = run_json(dir, "dummy_app", {"--syncpack", python_pack()});
  CHECK(task.at("status").as_string() == "success");
  const auto& second = step_named(task, "Dummy Step 2");
  CHECK(second.at("status").as_string() == "success");
  CHECK(second.at("data") == json::value("foo"));
}

TEST_CASE("a SyncPack project laid out like ScienceLogic's template runs from its root") {
  // pf_<name>/{setup.py, MANIFEST.in, tests/, <name>/{meta.json, apps/, steps/, util/}}
  temp_dir dir;
  auto task = run_json(dir, "dummy_app",
                       {"--syncpack", test::source_dir() + "/tests/fixtures/pf_template_pack",
                        "--log-level", "debug"});
  CHECK(task.at("status").as_string() == "success");
  const auto& second = step_named(task, "Dummy Step 2");
  CHECK(second.at("data") == json::value("foo"));
  auto logs = run_stepflow(dir, {"steps", "--json", "--syncpack",
                                 test::source_dir() + "/tests/fixtures/pf_template_pack"});
  CHECK(logs.out.find("\"syncpack\": \"template_pack\"") != std::string::npos);
}

namespace {

/// Zips `entries` (archive name -> file on disk, or text after "=") into `zip`
/// with Python's zipfile, as a wheel would be built.
void make_zip(const std::string& zip, const std::vector<std::pair<std::string, std::string>>& entries) {
  std::string script = "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1], 'w')\n";
  for (const auto& [name, src] : entries)
    script += src.rfind("=", 0) == 0
                ? fmt::format("z.writestr({}, {})\n", quote_json(name), quote_json(src.substr(1)))
                : fmt::format("z.write({}, {})\n", quote_json(src), quote_json(name));
  script += "z.close()\n";
  std::string cmd = fmt::format("/usr/bin/python3 -c {} {}", shell_quote(script), shell_quote(zip));
  REQUIRE(std::system(cmd.c_str()) == 0);
}

} // namespace

TEST_CASE("a SyncPack wheel (.whl) is extracted into the data dir and its Python steps run") {
  temp_dir dir;
  auto src = test::source_dir() + "/tests/fixtures/pf_template_pack/template_pack/";
  auto whl = dir.file("template_pack-0.0.1-py3-none-any.whl");
  make_zip(whl, {{"template_pack/__init__.py", "="},
                 {"template_pack/meta.json", src + "meta.json"},
                 {"template_pack/apps/dummy_app.json", src + "apps/dummy_app.json"},
                 {"template_pack/steps/DummyStep.py", src + "steps/DummyStep.py"},
                 {"template_pack/steps/DummyStep2.py", src + "steps/DummyStep2.py"},
                 {"template_pack-0.0.1.dist-info/METADATA", "=Name: template_pack\n"}});
  auto task = run_json(dir, "dummy_app", {"--syncpack", whl});
  CHECK(task.at("status").as_string() == "success");
  CHECK(step_named(task, "Dummy Step 2").at("data") == json::value("foo"));
  CHECK(fs::exists(dir.file("data/syncpacks/template_pack-0.0.1-py3-none-any/template_pack/meta.json")));

  SUBCASE("an entry pointing outside the archive's folder is refused") {
    auto evil = dir.file("evil-1.0-py3-none-any.whl");
    make_zip(evil, {{"evil/meta.json", "={\"name\": \"evil\"}"}, {"../../escaped.txt", "=x"}});
    auto r = run_stepflow(dir, {"run", "dummy_app", "--data-dir", dir.file("data"), "--syncpack", evil});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("points outside the archive's folder") != std::string::npos);
    CHECK_FALSE(fs::exists(dir.file("escaped.txt")));
    CHECK_FALSE(fs::exists(dir.file("data/escaped.txt")));
  }
  SUBCASE("a file that is not a zip is refused with one sentence") {
    auto bad = dir.write("bad-1.0-py3-none-any.whl", "not a zip");
    auto r = run_stepflow(dir, {"run", "dummy_app", "--data-dir", dir.file("data"), "--syncpack", bad});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("not a readable zip archive") != std::string::npos);
  }
}

TEST_CASE("a Python step's StepFailedException fails the run with its message") {
  temp_dir dir;
  auto pack = write_pack(dir, R"({"steps": [{"name": "Fail", "file": "FailStep"}]})", {});
  // FailStep comes from the fixture pack; the app from this one.
  auto task = run_json(dir, "ext_app", {"--syncpack", pack, "--syncpack", python_pack()}, {}, 1);
  const auto& s = step_named(task, "Fail");
  CHECK(s.at("status").as_string() == "failed");
  CHECK(std::string(s.at("error").as_string()).find("device 7 not found in SL1")
        != std::string::npos);
}

TEST_CASE("a Python step uses the LMDB cache through the host") {
  temp_dir dir;
  auto pack = write_pack(dir, R"({"steps": [{"name": "C", "file": "CacheStep"}]})", {});
  auto task = run_json(dir, "ext_app", {"--syncpack", pack, "--syncpack", python_pack()});
  const auto& data = step_named(task, "C").at("data").as_object();
  CHECK(data.at("after_sys_id").as_string() == "abc");
  CHECK(data.at("raw_is_bytes").as_bool());
  CHECK(data.at("deleted").as_bool());
  CHECK(data.at("gone").is_null());
  CHECK_FALSE(data.at("deleted_again").as_bool());
}

TEST_CASE("`stepflow steps` lists SyncPack Python steps and manifest steps") {
  temp_dir dir;
  auto pack = write_pack(dir, R"({"steps": [{"name": "U", "file": "Upper"}]})",
                         {{"Upper.step.json", manifest("Upper", R"(, "description": "upper")")}});
  auto r = run_stepflow(dir, {"steps", "--json", "--syncpack", pack, "--syncpack", python_pack()});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("\"DummyStep\"") != std::string::npos);
  CHECK(r.out.find("\"Upper\"") != std::string::npos);
}

TEST_CASE("manifest steps: a warm process, a timeout, a crash, a memory ceiling") {
  temp_dir dir;
  auto app = R"({"steps": [
      {"name": "A", "file": "Echo", "mode": "echo", "output_to": ["B"]},
      {"name": "B", "file": "Echo", "mode": "echo", "data_from": ["A"], "output_to": ["C"]},
      {"name": "C", "file": "Big", "mode": "alloc", "mb": 150, "data_from": ["B"], "output_to": ["D"]},
      {"name": "D", "file": "Big", "mode": "echo", "data_from": ["C"]}]})";
  auto pack = write_pack(dir, app,
                         {{"Echo.step.json", manifest("Echo", R"(, "concurrency": 1)")},
                          {"Big.step.json", manifest("Big", R"(, "memory_limit_mb": 100)")}});
  auto task = run_json(dir, "ext_app", {"--syncpack", pack});
  auto pid = [&](const char* s) {
    return step_named(task, s).at("data").at("pid").to_number<int64_t>();
  };
  CHECK(pid("A") == pid("B"));          // warm: the same process served both
  CHECK(step_named(task, "B").at("data").at("count").to_number<int>() == 2);
  CHECK(pid("C") != pid("D"));          // recycled after going over 100 MiB

  SUBCASE("a hung process is killed at the manifest timeout") {
    temp_dir d2;
    auto p2 = write_pack(d2, R"({"steps": [{"name": "H", "file": "Hang", "mode": "sleep"}]})",
                         {{"Hang.step.json", manifest("Hang", R"(, "timeout": 1)")}});
    auto t = run_json(d2, "ext_app", {"--syncpack", p2}, {}, 1);
    CHECK(std::string(step_named(t, "H").at("error").as_string()).find("timed out")
          != std::string::npos);
  }
  SUBCASE("a crash fails the step with the exit status and stderr") {
    temp_dir d2;
    auto p2 = write_pack(d2, R"({"steps": [{"name": "X", "file": "Crash", "mode": "crash"}]})",
                         {{"Crash.step.json", manifest("Crash")}});
    auto t = run_json(d2, "ext_app", {"--syncpack", p2}, {}, 1);
    auto err = std::string(step_named(t, "X").at("error").as_string());
    CHECK(err.find("exited with status 3") != std::string::npos);
    CHECK(err.find("fatal: simulated failure") != std::string::npos);
  }
}

namespace {

/// A SyncPack in `dir` whose one step (Killable) writes its pid to
/// dir/step.pid and then hangs without reading stdin.
std::string killable_pack(const temp_dir& dir) {
  dir.write("pack/steps/pid_then_hang.py", fmt::format(R"(import json, os, sys, time
print(json.dumps({{"type": "ready", "protocol": 1}}), flush=True)
for line in sys.stdin:
    open({}, "w").write(str(os.getpid()))
    time.sleep(120)
)", quote_json(dir.file("step.pid"))));
  return write_pack(dir, R"({"steps": [{"name": "K", "file": "Killable"}]})",
                    {{"Killable.step.json",
                      R"({"command": ["/usr/bin/python3", "pid_then_hang.py"]})"}});
}

/// The pid the Killable step wrote, waiting at most 30 s for it.
int wait_for_step_pid(const temp_dir& dir) {
  for (int i = 0; i < 3000; ++i) {
    auto text = test::read_text(dir.file("step.pid"));
    if (!text.empty())
      return std::stoi(text);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return 0;
}

} // namespace

TEST_CASE("killing a step process mid-run fails that step and nothing else hangs") {
  temp_dir dir;
  auto pack = killable_pack(dir);
  running_binary run{dir, {"run", "ext_app", "--json", "--data-dir", dir.file("data"),
                           "--syncpack", pack}, {}};
  int pid = wait_for_step_pid(dir);
  REQUIRE_MESSAGE(pid > 0, "the step process never started");
  REQUIRE(::kill(pid, SIGKILL) == 0);
  auto r = run.wait(60);
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 1);
  auto task = parse_object(r.out);
  auto err = std::string(step_named(task, "K").at("error").as_string());
  CHECK(err.find("killed by signal 9") != std::string::npos);
}

TEST_CASE("a step process does not outlive stepflow killed with SIGKILL") {
  temp_dir dir;
  auto pack = killable_pack(dir);
  running_binary run{dir, {"run", "ext_app", "--data-dir", dir.file("data"), "--syncpack", pack}, {}};
  int pid = wait_for_step_pid(dir);
  REQUIRE_MESSAGE(pid > 0, "the step process never started");
  REQUIRE(::kill(run.pid(), SIGKILL) == 0);
  auto r = run.wait(30);
  CHECK(r.signal == SIGKILL);
  bool gone = false;
  for (int i = 0; i < 1000 && !gone; ++i) { // bounded: 10 s
    gone = ::kill(pid, 0) != 0;
    if (!gone)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK_MESSAGE(gone, "step process " << pid << " outlived stepflow");
  if (!gone)
    ::kill(pid, SIGKILL);
}

TEST_CASE("a plugin loaded from a directory provides its steps") {
  temp_dir dir;
  auto app = dir.write("hello.json", R"({"steps": [
      {"name": "Hi", "file": "HelloPlugin", "who": "world", "shout": true}]})");
  env_vars env{{"STEPFLOW_PLUGIN_DIR", build_dir() + "/plugins"}};
  auto task = run_json(dir, app, {}, env);
  CHECK(step_named(task, "Hi").at("data").at("greeting").as_string() == "HELLO, WORLD!");
  // Without the plugin directory the step type does not exist.
  auto r = run_stepflow(dir, {"run", app, "--data-dir", dir.file("data")});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("HelloPlugin") != std::string::npos);
}

TEST_CASE("plugins that do not fit are refused with one sentence naming the file") {
  temp_dir dir;
  auto app = dir.write("a.json", R"({"steps": [{"name": "S", "file": "StaticData", "data": 1}]})");
  auto check_refused = [&](const std::string& kind, const std::string& expected) {
    env_vars env{{"STEPFLOW_PLUGIN_DIR", build_dir() + "/tests/broken_plugins/" + kind}};
    auto r = run_stepflow(dir, {"run", app, "--data-dir", dir.file("data")}, env);
    INFO("stderr: " << r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.signal == 0);
    CHECK(r.err.find("libbroken_" + kind + ".so") != std::string::npos);
    CHECK(r.err.find(expected) != std::string::npos);
  };
  check_refused("abi", "was built for plugin ABI 999; this stepflow loads ABI 1");
  check_refused("toolchain", "was built with gcc1/cxx11abi0/boost1/caf1");
  check_refused("no_entry", "exports no stepflow_plugin_entry()");
  // The same plugin twice (two copies of one library): refused by name.
  fs::create_directories(dir.file("twice"));
  fs::copy_file(build_dir() + "/plugins/libstepflow_example_plugin.so", dir.file("twice/a.so"));
  fs::copy_file(build_dir() + "/plugins/libstepflow_example_plugin.so", dir.file("twice/b.so"));
  auto twice = run_stepflow(dir, {"run", app, "--data-dir", dir.file("data")},
                            {{"STEPFLOW_PLUGIN_DIR", dir.file("twice")}});
  CHECK(twice.exit_code == 2);
  CHECK(twice.err.find("b.so: is plugin \"example_plugin\" 1.0.0, which is already loaded from")
        != std::string::npos);
  auto r = run_stepflow(dir, {"run", app, "--data-dir", dir.file("data")},
                        {{"STEPFLOW_PLUGIN_DIR", dir.file("no-such-dir")}});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("does not exist") != std::string::npos);
}

TEST_CASE("bad connector options are refused naming the field") {
  temp_dir dir;
  auto app = dir.write("a.json", R"({"steps": [{"name": "S", "file": "StaticData", "data": 1}]})");
  auto opts = dir.write("connectors.json", R"({"external": {"concurrency": "four"}})");
  auto r = run_stepflow(dir, {"run", app, "--data-dir", dir.file("data")},
                        {{"STEPFLOW_CONNECTORS", opts}});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("external.concurrency must be a number") != std::string::npos);
  opts = dir.write("connectors2.json", R"({"nosuch": {}})");
  r = run_stepflow(dir, {"run", app, "--data-dir", dir.file("data")},
                   {{"STEPFLOW_CONNECTORS", opts}});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("no connector named \"nosuch\"") != std::string::npos);
}
