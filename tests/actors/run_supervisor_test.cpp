// The CAF engine: run supervisors and step actors, driven through
// actors::engine with applications built from JSON text and step types
// defined here. Every wait is bounded by a 30 s safety limit; nothing asserts
// on durations.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "stepflow/actors/engine.hpp"
#include "stepflow/connectors/registry.hpp"
#include "stepflow/runtime/json.hpp"
#include "stepflow/runtime/kv_store.hpp"
#include "stepflow/runtime/model.hpp"
#include "stepflow/runtime/plan.hpp"
#include "stepflow/runtime/run_record.hpp"
#include "stepflow/runtime/step.hpp"
#include "support/temp_dir.hpp"

using namespace stepflow;

namespace {

constexpr auto safety_bound = std::chrono::seconds(30);

json::value parse(std::string_view text) {
  auto v = parse_json(text, "test");
  REQUIRE_MESSAGE(v, message_of(v.error()));
  return std::move(*v);
}

/// What the test step types observed; shared by the step types of one test.
struct probe {
  std::mutex mtx;
  std::condition_variable cv;
  /// Event sequence: every Echo start/end takes the next number.
  std::atomic<int> seq{0};
  std::map<std::string, int> start_seq, end_seq; // guarded by mtx
  std::map<std::string, int> runs;               // run() calls per step, guarded by mtx
  /// Sleep steps executing right now, and the most seen at once.
  std::atomic<int> concurrent{0};
  std::atomic<int> max_concurrent{0};
  /// Steps that are blocked (Hang, Sleep) and have started.
  int blocked_started = 0; // guarded by mtx
  bool gate_open = false;  // guarded by mtx
  /// Sleep threads that saw ctx->cancelled.
  std::atomic<int> saw_cancel{0};
  std::vector<std::thread> threads; // guarded by mtx

  void count_run(const std::string& step) {
    std::lock_guard<std::mutex> g{mtx};
    ++runs[step];
  }
  void blocked() {
    std::lock_guard<std::mutex> g{mtx};
    ++blocked_started;
    cv.notify_all();
  }
  /// Waits until `n` blocking steps have started.
  bool wait_blocked(int n) {
    std::unique_lock<std::mutex> g{mtx};
    return cv.wait_for(g, safety_bound, [&] { return blocked_started >= n; });
  }
  void open_gate() {
    std::lock_guard<std::mutex> g{mtx};
    gate_open = true;
    cv.notify_all();
  }
  bool is_open() {
    std::lock_guard<std::mutex> g{mtx};
    return gate_open;
  }
  void join_all() {
    std::vector<std::thread> ts;
    {
      std::lock_guard<std::mutex> g{mtx};
      ts.swap(threads);
    }
    for (auto& t : ts)
      t.join();
  }
};

class test_step : public step_type {
public:
  test_step(std::string name, std::shared_ptr<probe> p) : probe_(std::move(p)) {
    info_.name = std::move(name);
    info_.description = "test step";
    info_.syncpack = "test";
  }
  const step_info& info() const noexcept override { return info_; }

protected:
  step_info info_;
  std::shared_ptr<probe> probe_;
};

/// Echo: outputs {"step", "params", "inputs": [[name, data]...]} synchronously.
class echo_step final : public test_step {
public:
  explicit echo_step(std::shared_ptr<probe> p) : test_step("Echo", std::move(p)) {}
  void run(std::shared_ptr<step_context> ctx, step_done done) const override {
    probe_->count_run(ctx->step_name);
    int s = ++probe_->seq;
    json::array inputs;
    for (const auto& [name, data] : ctx->inputs)
      inputs.push_back(json::array{json::value(name), data ? *data : json::value(nullptr)});
    json::object out{{"step", ctx->step_name}, {"params", ctx->params},
                     {"inputs", std::move(inputs)}};
    ctx->log(20, "echo " + ctx->step_name);
    int e = ++probe_->seq;
    {
      std::lock_guard<std::mutex> g{probe_->mtx};
      probe_->start_seq[ctx->step_name] = s;
      probe_->end_seq[ctx->step_name] = e;
    }
    done(step_outcome::success(std::move(out)));
  }
};

/// Fail: fails with its "message" parameter and {"why": message} as data.
class fail_step final : public test_step {
public:
  explicit fail_step(std::shared_ptr<probe> p) : test_step("Fail", std::move(p)) {}
  void run(std::shared_ptr<step_context> ctx, step_done done) const override {
    probe_->count_run(ctx->step_name);
    auto msg = ctx->param_string("message", "failed on purpose");
    done(step_outcome::failure(msg, json::object{{"why", msg}}));
  }
};

/// Throw: throws from run().
class throw_step final : public test_step {
public:
  explicit throw_step(std::shared_ptr<probe> p) : test_step("Throw", std::move(p)) {}
  void run(std::shared_ptr<step_context> ctx, step_done) const override {
    probe_->count_run(ctx->step_name);
    throw std::runtime_error("kaboom from " + ctx->step_name);
  }
};

/// Hang: never calls done.
class hang_step final : public test_step {
public:
  explicit hang_step(std::shared_ptr<probe> p) : test_step("Hang", std::move(p)) {}
  void run(std::shared_ptr<step_context> ctx, step_done) const override {
    probe_->count_run(ctx->step_name);
    probe_->blocked();
  }
};

/// Sleep: completes from its own thread after "ms" milliseconds, or, with
/// "gate": true, once the test opens the probe's gate. Stops early (failing
/// with "cancelled") when ctx->cancelled is set.
class sleep_step final : public test_step {
public:
  explicit sleep_step(std::shared_ptr<probe> p) : test_step("Sleep", std::move(p)) {}
  void run(std::shared_ptr<step_context> ctx, step_done done) const override {
    probe_->count_run(ctx->step_name);
    auto ms = static_cast<int64_t>(ctx->param_number("ms", 0));
    bool gated = ctx->param_bool("gate", false);
    auto p = probe_;
    int now = ++p->concurrent;
    for (int m = p->max_concurrent.load(); now > m && !p->max_concurrent.compare_exchange_weak(m, now);)
      ;
    std::lock_guard<std::mutex> g{p->mtx};
    p->threads.emplace_back([p, ctx, done = std::move(done), ms, gated] {
      auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
      p->blocked();
      while (!ctx->cancelled.load()) {
        if (gated ? p->is_open() : std::chrono::steady_clock::now() >= until)
          break;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
      --p->concurrent;
      if (ctx->cancelled.load()) {
        ++p->saw_cancel;
        done(step_outcome::failure("cancelled"));
      } else {
        done(step_outcome::success(json::object{{"slept_ms", ms}, {"step", ctx->step_name}}));
      }
    });
  }
};

/// A registry with the test steps and the built-in ones, and an engine.
/// The destructor releases and joins every Sleep thread before the engine
/// goes (a late completion must not outlive the actor system).
struct harness {
  explicit harness(kv_store* store = nullptr) {
    for (std::shared_ptr<const step_type> t :
         {std::shared_ptr<const step_type>(std::make_shared<echo_step>(pr)),
          std::shared_ptr<const step_type>(std::make_shared<fail_step>(pr)),
          std::shared_ptr<const step_type>(std::make_shared<throw_step>(pr)),
          std::shared_ptr<const step_type>(std::make_shared<hang_step>(pr)),
          std::shared_ptr<const step_type>(std::make_shared<sleep_step>(pr))})
      REQUIRE_FALSE(reg.add(t));
    auto err = connectors::register_all(reg);
    REQUIRE_MESSAGE(!err, message_of(err));
    step_services svc;
    svc.store = store;
    eng = std::make_unique<actors::engine>(actors::engine_options{}, svc);
  }
  ~harness() {
    pr->open_gate();
    pr->join_all();
    eng.reset();
  }

  run_plan plan(std::string_view app_json, json::object params = {}) {
    auto app = parse_application(parse(app_json), "test.json", "test_app");
    REQUIRE_MESSAGE(app, message_of(app.error()));
    auto p = prepare_run(std::make_shared<const application>(std::move(*app)), nullptr, params, -1,
                         reg);
    REQUIRE_MESSAGE(p, message_of(p.error()));
    return std::move(*p);
  }

  /// Starts the app; returns the task id. on_done fulfils `done`.
  std::string start(std::string_view app_json, json::object params = {}) {
    auto rec = run_record{};
    rec.task_id = new_task_id();
    rec.params = params;
    auto id = rec.task_id;
    {
      std::lock_guard<std::mutex> g{obs_mtx};
      step_ends.clear();
      step_ends_at_done = 0;
      done_calls = 0;
      done = std::make_shared<std::promise<run_record>>();
    }
    actors::run_observer obs;
    obs.on_step_end = [this](const run_record& r, size_t i) {
      std::lock_guard<std::mutex> g{obs_mtx};
      step_ends.push_back(r.steps[i].name);
    };
    obs.on_done = [this, promise = done](const run_record& r) {
      std::lock_guard<std::mutex> g{obs_mtx};
      ++done_calls;
      step_ends_at_done = step_ends.size();
      if (done_calls == 1)
        promise->set_value(r);
    };
    eng->start(plan(app_json, std::move(params)), std::move(rec), std::move(obs));
    return id;
  }

  run_record wait() {
    std::future<run_record> fut;
    {
      std::lock_guard<std::mutex> g{obs_mtx};
      fut = done->get_future();
    }
    REQUIRE(fut.wait_for(safety_bound) == std::future_status::ready);
    return fut.get();
  }

  run_record run(std::string_view app_json, json::object params = {}) {
    start(app_json, std::move(params));
    return wait();
  }

  std::shared_ptr<probe> pr = std::make_shared<probe>();
  step_registry reg;
  std::unique_ptr<actors::engine> eng;
  std::mutex obs_mtx;
  std::vector<std::string> step_ends;
  size_t step_ends_at_done = 0;
  int done_calls = 0;
  std::shared_ptr<std::promise<run_record>> done;
};

const step_record& step_of(const run_record& r, std::string_view name) {
  for (const auto& s : r.steps)
    if (s.name == name)
      return s;
  FAIL("no step named " << name);
  throw std::logic_error("unreachable");
}

json::value data_of(const run_record& r, std::string_view name) {
  const auto& s = step_of(r, name);
  return s.data ? *s.data : json::value(nullptr);
}

std::string status_of(const run_record& r, std::string_view name) {
  return std::string(to_string(step_of(r, name).status));
}

} // namespace

TEST_CASE("diamond DAG: every step succeeds and D sees B's and C's data in order") {
  harness h;
  auto r = h.run(R"({
    "name": "diamond",
    "steps": [
      {"name": "A", "file": "Echo", "tag": "a", "output_to": ["B", "C"]},
      {"name": "B", "file": "Echo", "tag": "b", "output_to": ["D"]},
      {"name": "C", "file": "Echo", "tag": "c"},
      {"name": "D", "file": "Echo", "data_from": ["C"]}
    ]})");
  CHECK(r.status == run_status::success);
  CHECK(r.application == "diamond");
  REQUIRE(r.steps.size() == 4);
  for (const auto& s : r.steps) {
    CAPTURE(s.name);
    CHECK(s.status == step_status::success);
    CHECK(s.error.empty());
    CHECK(s.started_ns > 0);
    CHECK(s.ended_ns >= s.started_ns);
  }
  CHECK(data_of(r, "A") == parse(R"({"step": "A", "params": {"tag": "a"}, "inputs": []})"));
  auto a_data = data_of(r, "A");
  CHECK(data_of(r, "B") == json::value(json::object{
                             {"step", "B"}, {"params", json::object{{"tag", "b"}}},
                             {"inputs", json::array{json::array{json::value("A"), a_data}}}}));
  auto d = data_of(r, "D");
  REQUIRE(d.is_object());
  const auto& inputs = d.at("inputs").as_array();
  REQUIRE(inputs.size() == 2);
  CHECK(inputs[0].as_array()[0] == json::value("B"));
  CHECK(inputs[0].as_array()[1] == data_of(r, "B"));
  CHECK(inputs[1].as_array()[0] == json::value("C"));
  CHECK(inputs[1].as_array()[1] == data_of(r, "C"));
  // D started only after B and C ended.
  const auto& rd = step_of(r, "D");
  CHECK(rd.started_ns >= step_of(r, "B").ended_ns);
  CHECK(rd.started_ns >= step_of(r, "C").ended_ns);
  {
    std::lock_guard<std::mutex> g{h.pr->mtx};
    CHECK(h.pr->start_seq["D"] > h.pr->end_seq["B"]);
    CHECK(h.pr->start_seq["D"] > h.pr->end_seq["C"]);
    CHECK(h.pr->start_seq["B"] > h.pr->end_seq["A"]);
    CHECK(h.pr->start_seq["C"] > h.pr->end_seq["A"]);
    for (auto n : {"A", "B", "C", "D"})
      CHECK(h.pr->runs[n] == 1);
  }
  std::lock_guard<std::mutex> g{h.obs_mtx};
  CHECK(h.done_calls == 1);
  CHECK(h.step_ends.size() == 4);
  CHECK(h.step_ends_at_done == 4);
  CHECK(h.step_ends.back() == "D");
}

TEST_CASE("an aggregating step receives its three inputs in application order") {
  harness h;
  auto r = h.run(R"({
    "name": "aggregate",
    "steps": [
      {"name": "Third", "file": "StaticData", "data": [3], "output_to": ["Join"]},
      {"name": "First", "file": "StaticData", "data": {"one": 1}},
      {"name": "Join", "file": "Echo", "data_from": ["First", "Second"]},
      {"name": "Second", "file": "StaticData", "data": "two", "output_to": ["Join"]}
    ]})");
  CHECK(r.status == run_status::success);
  auto d = data_of(r, "Join");
  CHECK(d.at("inputs") == parse(R"([["Third", [3]], ["First", {"one": 1}], ["Second", "two"]])"));
}

TEST_CASE("a failing step fails the run, skips its dependents, and an independent branch succeeds") {
  harness h;
  auto r = h.run(R"({
    "name": "failing",
    "steps": [
      {"name": "Start", "file": "Echo", "output_to": ["Broken", "Other"]},
      {"name": "Broken", "file": "Fail", "message": "the widget broke", "output_to": ["After"]},
      {"name": "After", "file": "Echo", "output_to": ["Last"]},
      {"name": "Other", "file": "Echo", "output_to": ["Last"]},
      {"name": "Last", "file": "Echo"},
      {"name": "Alone", "file": "Echo", "output_to": ["Alone 2"]},
      {"name": "Alone 2", "file": "Echo"}
    ]})");
  CHECK(r.status == run_status::failed);
  CHECK(status_of(r, "Start") == "success");
  CHECK(status_of(r, "Broken") == "failed");
  CHECK(step_of(r, "Broken").error == "the widget broke");
  CHECK(data_of(r, "Broken") == parse(R"({"why": "the widget broke"})"));
  CHECK(status_of(r, "After") == "skipped");
  CHECK(status_of(r, "Other") == "success");
  // One input failed (through a skip), one succeeded: still skipped.
  CHECK(status_of(r, "Last") == "skipped");
  CHECK(status_of(r, "Alone") == "success");
  CHECK(status_of(r, "Alone 2") == "success");
  CHECK(step_of(r, "After").data == nullptr);
  std::lock_guard<std::mutex> g{h.pr->mtx};
  CHECK(h.pr->runs.count("After") == 0);
  CHECK(h.pr->runs.count("Last") == 0);
}

TEST_CASE("a step that throws fails with the exception's text and the engine keeps working") {
  harness h;
  auto r = h.run(R"({
    "name": "throwing",
    "steps": [
      {"name": "Bomb", "file": "Throw", "output_to": ["Next"]},
      {"name": "Next", "file": "Echo"},
      {"name": "Fine", "file": "Echo"}
    ]})");
  CHECK(r.status == run_status::failed);
  CHECK(status_of(r, "Bomb") == "failed");
  CHECK(step_of(r, "Bomb").error.find("kaboom from Bomb") != std::string::npos);
  CHECK(status_of(r, "Next") == "skipped");
  CHECK(status_of(r, "Fine") == "success");

  // The same engine runs another application afterwards.
  auto r2 = h.run(R"({"name": "after", "steps": [{"name": "Only", "file": "Echo"}]})");
  CHECK(r2.status == run_status::success);
}

TEST_CASE("a hanging step with a 0.2 s timeout fails as timed out") {
  harness h;
  auto r = h.run(R"({
    "name": "hanging",
    "steps": [
      {"name": "Stuck", "file": "Hang", "timeout": 0.2, "output_to": ["Never"]},
      {"name": "Never", "file": "Echo"}
    ]})");
  CHECK(r.status == run_status::failed);
  CHECK(status_of(r, "Stuck") == "failed");
  CHECK(step_of(r, "Stuck").error.find("timed out") != std::string::npos);
  CHECK(status_of(r, "Never") == "skipped");
}

TEST_CASE("a Sleep step past its timeout is cancelled") {
  harness h;
  auto r = h.run(R"({
    "name": "slow",
    "steps": [{"name": "Slow", "file": "Sleep", "gate": true, "timeout": "0.2"}]})");
  CHECK(r.status == run_status::failed);
  CHECK(step_of(r, "Slow").error.find("timed out") != std::string::npos);
  h.pr->join_all(); // the Sleep thread sees ctx->cancelled and ends
  CHECK(h.pr->saw_cancel.load() == 1);
}

TEST_CASE("revoke with terminate ends a run with a hanging step as revoked") {
  harness h;
  auto id = h.start(R"({
    "name": "revoked",
    "steps": [
      {"name": "Stuck", "file": "Hang", "output_to": ["Later"]},
      {"name": "Later", "file": "Echo"},
      {"name": "Waiting", "file": "Sleep", "gate": true}
    ]})");
  REQUIRE(h.pr->wait_blocked(2));
  CHECK(h.eng->revoke(id, true));
  auto r = h.wait();
  CHECK(r.status == run_status::revoked);
  CHECK(status_of(r, "Stuck") == "failed");
  CHECK(step_of(r, "Stuck").error.find("revoked") != std::string::npos);
  CHECK(status_of(r, "Waiting") == "failed");
  CHECK(status_of(r, "Later") == "skipped");
  h.pr->join_all(); // the Sleep thread saw the cancellation and called done late
  CHECK(h.pr->saw_cancel.load() == 1);
  CHECK_FALSE(h.eng->revoke("isapp-no-such-task", true));
}

TEST_CASE("revoke without terminate lets running steps finish and never starts pending ones") {
  harness h;
  auto id = h.start(R"({
    "name": "soft-revoke",
    "steps": [
      {"name": "Running", "file": "Sleep", "gate": true, "output_to": ["Pending"]},
      {"name": "Pending", "file": "Echo"}
    ]})");
  REQUIRE(h.pr->wait_blocked(1));
  CHECK(h.eng->revoke(id, false));
  h.pr->open_gate();
  auto r = h.wait();
  CHECK(r.status == run_status::revoked);
  CHECK(status_of(r, "Running") == "success");
  CHECK(status_of(r, "Pending") == "skipped");
  std::lock_guard<std::mutex> g{h.pr->mtx};
  CHECK(h.pr->runs.count("Pending") == 0);
}

TEST_CASE("independent steps run concurrently") {
  harness h;
  auto r = h.run(R"({
    "name": "parallel",
    "steps": [
      {"name": "Left", "file": "Sleep", "ms": 300, "output_to": ["Join"]},
      {"name": "Right", "file": "Sleep", "ms": 300, "output_to": ["Join"]},
      {"name": "Join", "file": "Echo"}
    ]})");
  CHECK(r.status == run_status::success);
  CHECK(h.pr->max_concurrent.load() == 2);
  CHECK(data_of(r, "Left") == parse(R"({"slept_ms": 300, "step": "Left"})"));
  CHECK(data_of(r, "Join").at("inputs").as_array().size() == 2);
}

TEST_CASE("with a store, the run record, step data and logs are persisted") {
  test::temp_dir dir;
  std::unique_ptr<kv_store> store;
  SUBCASE("memory store") { store = make_memory_store(); }
  SUBCASE("lmdb store") {
    store_options so;
    so.path = dir.file("store");
    so.sync = false;
    so.initial_map_size = 16ull << 20;
    auto s = open_lmdb_store(so);
    REQUIRE_MESSAGE(s, message_of(s.error()));
    store = std::move(*s);
  }
  REQUIRE(store);
  {
    harness h{store.get()};
    auto id = h.start(R"({
      "name": "stored",
      "steps": [
        {"name": "A", "file": "StaticData", "data": {"n": 1}, "output_to": ["B"]},
        {"name": "B", "file": "Echo", "output_to": ["C"]},
        {"name": "C", "file": "Fail", "message": "nope"}
      ]})");
    auto r = h.wait();
    CHECK(r.task_id == id);
    CHECK(r.status == run_status::failed);
    // on_done runs after the final record was committed.
    run_store rs{*store};
    auto loaded = rs.load(id);
    REQUIRE_MESSAGE(loaded, message_of(loaded.error()));
    REQUIRE(loaded->has_value());
    const auto& lr = **loaded;
    CHECK(lr.task_id == id);
    CHECK(lr.application == "stored");
    CHECK(lr.status == run_status::failed);
    REQUIRE(lr.steps.size() == 3);
    CHECK(lr.steps[0].status == step_status::success);
    REQUIRE(lr.steps[0].data);
    CHECK(*lr.steps[0].data == parse(R"({"n": 1})"));
    REQUIRE(lr.steps[1].data);
    CHECK(*lr.steps[1].data == data_of(r, "B"));
    CHECK(lr.steps[2].status == step_status::failed);
    CHECK(lr.steps[2].error == "nope");
    REQUIRE(lr.steps[2].data);
    CHECK(*lr.steps[2].data == parse(R"({"why": "nope"})"));
    // Logs: the step's own line and the runtime's "stop B|<seconds>" line.
    auto logs = rs.logs(id, 1);
    REQUIRE_MESSAGE(logs, message_of(logs.error()));
    bool saw_echo = false, saw_stop = false;
    for (const auto& l : *logs) {
      saw_echo = saw_echo || l.message == "echo B";
      saw_stop = saw_stop || l.message.rfind("stop B|", 0) == 0;
    }
    CHECK(saw_echo);
    CHECK(saw_stop);
    CHECK(lr.steps[1].log_count == logs->size());
    auto err_logs = rs.logs(id, 2);
    REQUIRE(err_logs);
    bool saw_error = false;
    for (const auto& l : *err_logs)
      saw_error = saw_error || (l.level == 40 && l.message == "nope");
    CHECK(saw_error);
  }
}

TEST_CASE("${step.path} references resolve against earlier steps' data when the step starts") {
  harness h;
  SUBCASE("values keep their type; text interpolates") {
    auto r = h.run(R"({
      "name": "refs",
      "steps": [
        {"name": "A", "file": "StaticData", "data": {"value": 41, "list": [{"id": "x7"}]},
         "output_to": ["B"]},
        {"name": "B", "file": "Echo", "num": "${A.value}", "text": "got ${A.value}!",
         "id": "${A.list.0.id}", "whole": "${A}"}
      ]})");
    CHECK(r.status == run_status::success);
    auto params = data_of(r, "B").at("params");
    CHECK(params.at("num") == json::value(41));
    CHECK(params.at("text") == json::value("got 41!"));
    CHECK(params.at("id") == json::value("x7"));
    CHECK(params.at("whole") == parse(R"({"value": 41, "list": [{"id": "x7"}]})"));
  }
  SUBCASE("variables and step data mix") {
    auto r = h.run(R"({
      "name": "refs2",
      "app_variables": [{"name": "suffix", "value": "-v"}],
      "steps": [
        {"name": "A", "file": "StaticData", "data": {"value": "a"}, "output_to": ["B"]},
        {"name": "B", "file": "Echo", "text": "${A.value}${suffix}"}
      ]})");
    CHECK(r.status == run_status::success);
    CHECK(data_of(r, "B").at("params").at("text") == json::value("a-v"));
  }
  SUBCASE("a path missing from the data fails the step naming the reference") {
    auto r = h.run(R"({
      "name": "refs3",
      "steps": [
        {"name": "A", "file": "StaticData", "data": {"value": 1}, "output_to": ["B"]},
        {"name": "B", "file": "Echo", "x": "${A.nope}", "output_to": ["C"]},
        {"name": "C", "file": "Echo"}
      ]})");
    CHECK(r.status == run_status::failed);
    CHECK(status_of(r, "B") == "failed");
    CHECK(step_of(r, "B").error.find("A.nope") != std::string::npos);
    CHECK(status_of(r, "C") == "skipped");
    std::lock_guard<std::mutex> g{h.pr->mtx};
    CHECK(h.pr->runs.count("B") == 0);
  }
  SUBCASE("parameters checked at start once resolved") {
    auto r = h.run(R"({
      "name": "refs4",
      "steps": [
        {"name": "A", "file": "StaticData", "data": {"level": "loud"}, "output_to": ["B"]},
        {"name": "B", "file": "Log", "message": "m", "level": "${A.level}"}
      ]})");
    CHECK(r.status == run_status::failed);
    CHECK(status_of(r, "B") == "failed");
    CHECK(step_of(r, "B").error.find("loud") != std::string::npos);
  }
}

// "$${" writes a literal "${" (resolve.hpp), also in parameters that
// reference step data and so are resolved when the step starts: the escape
// must be applied once, never resolved a second time.
TEST_CASE("an escaped $${...} in a step parameter stays literal") {
  harness h;
  auto r = h.run(R"({
    "name": "escapes",
    "app_variables": [{"name": "v", "value": "$${not.a.step}"}],
    "steps": [
      {"name": "A", "file": "StaticData", "data": {"value": 41}, "output_to": ["B"]},
      {"name": "B", "file": "Echo", "x": "${A.value}", "literal": "$${A.value}",
       "via_var": "${v}", "text": "cost $${A.value} = ${A.value}"}
    ]})");
  CHECK(r.status == run_status::success);
  CHECK_MESSAGE(status_of(r, "B") == "success", step_of(r, "B").error);
  auto b = data_of(r, "B");
  REQUIRE(b.is_object());
  auto params = b.at("params");
  CHECK(params.at("x") == json::value(41));
  CHECK(params.at("literal") == json::value("${A.value}"));
  CHECK(params.at("via_var") == json::value("${not.a.step}"));
  CHECK(params.at("text") == json::value("cost ${A.value} = 41"));
}

TEST_CASE("several runs on one engine are independent") {
  harness h;
  auto r1 = h.run(R"({"name": "one", "steps": [{"name": "S", "file": "Fail"}]})");
  CHECK(r1.status == run_status::failed);
  auto r2 = h.run(R"({"name": "two", "steps": [{"name": "S", "file": "Echo"}]})");
  CHECK(r2.status == run_status::success);
  CHECK(r1.task_id != r2.task_id);
}

TEST_CASE("a long chain of inline steps runs as a loop, and an inline failure skips the rest") {
  harness h;
  constexpr int n = 3000; // deep enough to overflow the stack if inline ends recursed
  json::array steps;
  for (int i = 0; i < n; ++i) {
    json::object s{{"name", fmt::format("S{}", i)}, {"file", "StaticData"}, {"data", i}};
    if (i + 1 < n)
      s["output_to"] = json::array{json::string(fmt::format("S{}", i + 1))};
    steps.push_back(std::move(s));
  }
  auto app = to_json(json::object{{"name", "long_chain"}, {"steps", steps}});
  auto r = h.run(app);
  CHECK(r.status == run_status::success);
  CHECK(data_of(r, fmt::format("S{}", n - 1)) == json::value(n - 1));
  {
    std::lock_guard<std::mutex> g{h.obs_mtx};
    CHECK(h.step_ends.size() == static_cast<size_t>(n));
  }
  // An inline step that fails (a Log step with a bad ${...} reference) skips
  // what follows it.
  auto failed = h.run(R"({"name": "inline_fail", "steps": [
      {"name": "A", "file": "StaticData", "data": {"x": 1}, "output_to": ["B"]},
      {"name": "B", "file": "Log", "message": "${A.missing.deeper}", "output_to": ["C"]},
      {"name": "C", "file": "StaticData", "data": 3}]})");
  CHECK(failed.status == run_status::failed);
  CHECK(status_of(failed, "B") == "failed");
  CHECK(status_of(failed, "C") == "skipped");
}
