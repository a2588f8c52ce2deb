// The process pool against a real step program (tests/fixtures/protocol_step.py).
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <functional>
#include <string>
#include <vector>

#include <cstdlib>

#include <doctest/doctest.h>

#include "stepflow/runtime/json.hpp"
#include "stepflow/runtime/process_pool.hpp"
#include "support/temp_dir.hpp"

using namespace stepflow;

namespace {

constexpr auto safety_bound = std::chrono::seconds(60);

process_spec spec_for(std::vector<std::string> extra = {}) {
  process_spec s;
  s.name = "ProtocolStep";
  s.argv = {"/usr/bin/python3", test::source_dir() + "/tests/fixtures/protocol_step.py"};
  for (auto& e : extra)
    s.argv.push_back(e);
  s.concurrency = 2;
  s.start_timeout = std::chrono::milliseconds(10'000);
  return s;
}

struct submitted {
  std::shared_ptr<std::promise<caf::expected<json::object>>> promise =
    std::make_shared<std::promise<caf::expected<json::object>>>();
  std::future<caf::expected<json::object>> future = promise->get_future();
};

submitted submit(process_pool& pool, process_pool::group_id g, const std::string& id,
                 json::object params, std::function<bool()> cancelled = {},
                 std::function<void(json::object, const process_reply&)> on_msg = {}) {
  submitted s;
  process_task t;
  t.id = id;
  t.request = to_json(json::object{{"type", "run"}, {"id", id}, {"params", std::move(params)}});
  t.is_cancelled = std::move(cancelled);
  t.on_message = std::move(on_msg);
  t.done = [p = s.promise](caf::expected<json::object> r) { p->set_value(std::move(r)); };
  pool.submit(g, std::move(t));
  return s;
}

caf::expected<json::object> wait(submitted& s) {
  REQUIRE(s.future.wait_for(safety_bound) == std::future_status::ready);
  return s.future.get();
}

int64_t pid_of(const caf::expected<json::object>& r) {
  REQUIRE(r);
  return r->at("data").at("pid").to_number<int64_t>();
}

} // namespace

TEST_CASE("a warm process serves task after task") {
  process_pool pool;
  auto spec = spec_for();
  spec.env = {{"STEP_TEST_ENV", "from-spec"}};
  auto g = pool.add_group(spec);
  auto a = submit(pool, g, "t1", {{"x", 1}});
  auto ra = wait(a);
  REQUIRE(ra);
  CHECK(ra->at("ok").as_bool());
  CHECK(ra->at("data").at("params").at("x").to_number<int>() == 1);
  CHECK(ra->at("data").at("env").as_string() == "from-spec");
  auto b = submit(pool, g, "t2", {});
  auto rb = wait(b);
  CHECK(pid_of(rb) == pid_of(ra));
  CHECK(rb->at("data").at("count").to_number<int>() == 2);
  auto st = pool.stats(g);
  CHECK(st.started == 1);
  CHECK(st.tasks == 2);
}

TEST_CASE("variables in env_unset are not inherited") {
  ::setenv("STEP_TEST_ENV", "inherited-secret", 1);
  process_pool pool;
  auto spec = spec_for();
  auto g_plain = pool.add_group(spec);
  spec.env_unset = {"STEP_TEST_ENV"};
  auto g_clean = pool.add_group(spec);
  auto a = submit(pool, g_plain, "t1", {});
  auto b = submit(pool, g_clean, "t2", {});
  auto ra = wait(a);
  auto rb = wait(b);
  ::unsetenv("STEP_TEST_ENV");
  REQUIRE(ra);
  REQUIRE(rb);
  CHECK(ra->at("data").at("env").as_string() == "inherited-secret");
  CHECK(rb->at("data").at("env").as_string() == "");
}

TEST_CASE("concurrency is bounded per group and tasks wait in order") {
  process_pool pool;
  auto g = pool.add_group(spec_for());
  std::vector<submitted> all;
  for (int i = 0; i < 8; ++i)
    all.push_back(submit(pool, g, "t" + std::to_string(i), {{"i", i}}));
  std::set<int64_t> pids;
  for (auto& s : all)
    pids.insert(pid_of(wait(s)));
  CHECK(pids.size() <= 2);
  CHECK(pool.stats(g).started <= 2);
  CHECK(pool.stats(g).tasks == 8);
}

TEST_CASE("a hung process is killed at the task timeout and replaced") {
  process_pool pool;
  auto spec = spec_for();
  spec.task_timeout = std::chrono::milliseconds(500);
  auto g = pool.add_group(spec);
  auto hung = submit(pool, g, "t1", {{"mode", "sleep"}});
  auto r = wait(hung);
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::timeout);
  CHECK(message_of(r.error()).find("timed out") != std::string::npos);
  auto next = submit(pool, g, "t2", {});
  CHECK(wait(next));
  CHECK(pool.stats(g).started == 2);
  CHECK(pool.stats(g).died == 1);
}

TEST_CASE("a cancelled task kills its process") {
  process_pool pool;
  auto g = pool.add_group(spec_for());
  auto flag = std::make_shared<std::atomic<bool>>(false);
  auto hung = submit(pool, g, "t1", {{"mode", "sleep"}}, [flag] { return flag->load(); });
  *flag = true;
  auto r = wait(hung);
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::cancelled);
}

TEST_CASE("a crash fails the task with the exit status and the last stderr lines") {
  process_pool pool;
  auto g = pool.add_group(spec_for());
  auto s = submit(pool, g, "t1", {{"mode", "crash"}});
  auto r = wait(s);
  REQUIRE_FALSE(r);
  auto msg = message_of(r.error());
  CHECK(msg.find("exited with status 3") != std::string::npos);
  CHECK(msg.find("fatal: simulated failure") != std::string::npos);
  auto next = submit(pool, g, "t2", {});
  CHECK(wait(next)); // a fresh process
}

TEST_CASE("a process above its memory ceiling is recycled between tasks") {
  process_pool pool;
  auto spec = spec_for();
  spec.memory_limit_bytes = std::uint64_t{100} << 20;
  auto g = pool.add_group(spec);
  auto small = submit(pool, g, "t1", {});
  auto p1 = pid_of(wait(small));
  auto big = submit(pool, g, "t2", {{"mode", "alloc"}, {"mb", 200}});
  auto r2 = wait(big);
  REQUIRE(r2); // the task itself succeeds
  CHECK(pid_of(r2) == p1);
  auto after = submit(pool, g, "t3", {});
  CHECK(pid_of(wait(after)) != p1);
  CHECK(pool.stats(g).recycled == 1);
}

TEST_CASE("max_tasks recycles after that many tasks") {
  process_pool pool;
  auto spec = spec_for();
  spec.max_tasks = 2;
  spec.concurrency = 1;
  auto g = pool.add_group(spec);
  auto a = submit(pool, g, "t1", {});
  auto pa = pid_of(wait(a));
  auto b = submit(pool, g, "t2", {});
  CHECK(pid_of(wait(b)) == pa);
  auto c = submit(pool, g, "t3", {});
  CHECK(pid_of(wait(c)) != pa);
}

TEST_CASE("protocol errors fail the task") {
  process_pool pool;
  SUBCASE("a line that is not JSON") {
    auto g = pool.add_group(spec_for());
    auto s = submit(pool, g, "t1", {{"mode", "garbage"}});
    auto r = wait(s);
    REQUIRE_FALSE(r);
    CHECK(message_of(r.error()).find("not a JSON object") != std::string::npos);
  }
  SUBCASE("another protocol version") {
    auto g = pool.add_group(spec_for({"--protocol2"}));
    auto s = submit(pool, g, "t1", {});
    auto r = wait(s);
    REQUIRE_FALSE(r);
    CHECK(message_of(r.error()).find("speaks protocol 2, stepflow speaks 1") != std::string::npos);
  }
  SUBCASE("never ready") {
    auto spec = spec_for({"--no-ready"});
    spec.start_timeout = std::chrono::milliseconds(300);
    auto g = pool.add_group(spec);
    auto s = submit(pool, g, "t1", {});
    auto r = wait(s);
    REQUIRE_FALSE(r);
    CHECK(message_of(r.error()).find("did not say \"ready\"") != std::string::npos);
  }
  SUBCASE("a program that does not exist") {
    auto spec = spec_for();
    spec.argv = {"/nonexistent/step-program"};
    auto g = pool.add_group(spec);
    auto s = submit(pool, g, "t1", {});
    auto r = wait(s);
    REQUIRE_FALSE(r);
    CHECK(message_of(r.error()).find("ProtocolStep") != std::string::npos);
  }
}

TEST_CASE("messages during a task reach on_message and replies reach the process") {
  process_pool pool;
  auto g = pool.add_group(spec_for());
  std::vector<std::string> logs;
  std::mutex mtx;
  auto on_msg = [&](json::object msg, const process_reply& reply) {
    auto type = std::string(msg.at("type").as_string());
    if (type == "log") {
      std::lock_guard<std::mutex> guard{mtx};
      logs.emplace_back(msg.at("message").as_string());
    } else if (type == "cache") {
      reply(to_json(json::object{{"type", "cache_result"},
                                   {"id", msg.at("id")},
                                   {"request", msg.at("request")},
                                   {"ok", true},
                                   {"value", "cached!"}}));
    }
  };
  auto l = submit(pool, g, "t1", {{"mode", "log"}}, {}, on_msg);
  CHECK(wait(l));
  {
    std::lock_guard<std::mutex> guard{mtx};
    REQUIRE(logs.size() == 1);
    CHECK(logs[0] == "hello from t1");
  }
  auto c = submit(pool, g, "t2", {{"mode", "cache"}}, {}, on_msg);
  auto r = wait(c);
  REQUIRE(r);
  CHECK(r->at("data").at("value").as_string() == "cached!");
  CHECK(r->at("data").at("request").to_number<int>() == 7);
}

TEST_CASE("stopping the pool fails queued tasks and ends every process") {
  std::vector<submitted> all;
  {
    process_pool_options o;
    o.exit_grace = std::chrono::milliseconds(500);
    process_pool pool{o};
    auto spec = spec_for();
    spec.concurrency = 1;
    auto g = pool.add_group(spec);
    all.push_back(submit(pool, g, "t1", {{"mode", "sleep"}}));
    all.push_back(submit(pool, g, "t2", {}));
  }
  for (auto& s : all) {
    auto r = wait(s);
    CHECK_FALSE(r);
  }
}

TEST_CASE("a retired group ends its idle processes; later tasks start new ones") {
  process_pool pool;
  auto g = pool.add_group(spec_for());
  auto a = submit(pool, g, "t1", {});
  auto pa = pid_of(wait(a));
  pool.retire(g);
  for (int i = 0; i < 500 && pool.stats(g).processes > 0; ++i) // bounded: 5 s
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(pool.stats(g).processes == 0);
  auto b = submit(pool, g, "t2", {});
  CHECK(pid_of(wait(b)) != pa);
}
