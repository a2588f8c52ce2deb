#include "stepflow/runtime/run_record.hpp"

#include <regex>
#include <set>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "stepflow/runtime/clock.hpp"
#include "support/temp_dir.hpp"

using namespace stepflow;
using stepflow::test::temp_dir;

namespace {

json::value doc(std::string_view text) {
  auto v = parse_json(text, "test");
  REQUIRE_MESSAGE(v, message_of(v.error()));
  return std::move(*v);
}

constexpr int64_t t0 = 1'700'000'000'000'000'000;
constexpr int64_t sec = 1'000'000'000;

run_record sample_run(std::string id, int64_t created) {
  run_record r;
  r.task_id = std::move(id);
  r.application = "sync_devices";
  r.configuration = "prod";
  r.queue = "default";
  r.params = doc(R"({"region": "eu"})").as_object();
  r.log_level = 10;
  r.status = run_status::running;
  r.created_ns = created;
  r.started_ns = created + sec;
  r.attempt = 2;
  r.parent_task = "isapp-parent";
  step_record a;
  a.name = "Fetch";
  a.file = "QueryREST";
  a.status = step_status::success;
  a.started_ns = created + sec;
  a.ended_ns = created + 3 * sec;
  a.data = std::make_shared<const json::value>(doc(R"({"items": [1, 2]})"));
  a.log_count = 2;
  step_record b;
  b.name = "Post";
  b.file = "Log";
  r.steps = {a, b};
  return r;
}

std::vector<log_line> two_lines() {
  return {log_line{t0 + sec, 20, "first"}, log_line{t0 + 2 * sec, 40, "second"}};
}

std::unique_ptr<kv_store> lmdb_in(const temp_dir& dir) {
  store_options opts;
  opts.path = dir.file("db");
  opts.initial_map_size = 1 << 20;
  opts.sync = false;
  auto s = open_lmdb_store(opts);
  REQUIRE_MESSAGE(s, message_of(s.error()));
  return std::move(*s);
}

/// Runs `body` against the memory store and against an LMDB store in a
/// temporary directory (one doctest subcase each).
template <class F>
void for_each_store(F&& body) {
  SUBCASE("memory store") {
    auto s = make_memory_store();
    body(*s);
  }
  SUBCASE("LMDB store") {
    temp_dir dir;
    auto s = lmdb_in(dir);
    body(*s);
  }
}

run_record loaded(const run_store& rs, const std::string& id) {
  auto r = rs.load(id);
  REQUIRE_MESSAGE(r, message_of(r.error()));
  REQUIRE(r->has_value());
  return std::move(**r);
}

std::vector<std::string> listed_ids(const run_store& rs, size_t limit) {
  auto l = rs.list(limit);
  REQUIRE_MESSAGE(l, message_of(l.error()));
  std::vector<std::string> out;
  for (const auto& r : *l)
    out.push_back(r.task_id);
  return out;
}

} // namespace

// -- task ids and JSON ---------------------------------------------------------------

TEST_CASE("task ids are isapp- followed by a time-ordered version 7 UUID") {
  static const std::regex uuid4(
    "isapp-[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");
  std::set<std::string> seen;
  for (int i = 0; i < 200; ++i) {
    auto id = new_task_id();
    CAPTURE(id);
    CHECK(std::regex_match(id, uuid4));
    seen.insert(id);
  }
  CHECK(seen.size() == 200);
}

TEST_CASE("the task object carries the run's fields") {
  auto r = sample_run("isapp-1", t0);
  r.ended_ns = t0 + 4 * sec;
  r.status = run_status::failed;
  r.error = "step Fetch failed";
  auto v = to_json(r);
  REQUIRE(v.is_object());
  const auto& o = v.as_object();
  CHECK(o.at("task_id") == "isapp-1");
  CHECK(o.at("application") == "sync_devices");
  CHECK(o.at("configuration") == "prod");
  CHECK(o.at("queue") == "default");
  CHECK(o.at("status") == "failed");
  CHECK(o.at("log_level") == 10);
  CHECK(o.at("params") == doc(R"({"region": "eu"})"));
  CHECK(o.at("created") == json::value(format_time(t0)));
  CHECK(o.at("started") == json::value(format_time(t0 + sec)));
  CHECK(o.at("ended") == json::value(format_time(t0 + 4 * sec)));
  CHECK(o.at("created_ns") == t0);
  CHECK(o.at("duration") == 3.0);
  CHECK(o.at("error") == "step Fetch failed");
  CHECK(o.at("parent_task") == "isapp-parent");
  CHECK(o.at("attempt") == 2);
  CHECK(o.at("href") == "/api/v1/tasks/isapp-1");
  REQUIRE(o.at("steps").as_array().size() == 2);
}

TEST_CASE("the task object shows unset times, errors and parents as null") {
  run_record r;
  r.task_id = "isapp-x";
  r.created_ns = t0;
  auto o = to_json(r).as_object();
  CHECK(o.at("status") == "pending");
  CHECK(o.at("started").is_null());
  CHECK(o.at("ended").is_null());
  CHECK(o.at("error").is_null());
  CHECK(o.at("parent_task").is_null());
  CHECK(o.at("duration") == 0.0);
  CHECK(o.at("attempt") == 1);
  CHECK(o.at("steps").as_array().empty());
}

TEST_CASE("each step of the task object has status, times, links and optionally data") {
  auto r = sample_run("isapp-1", t0);
  auto steps = to_json(r).at("steps").as_array();
  const auto& a = steps.at(0).as_object();
  CHECK(a.at("name") == "Fetch");
  CHECK(a.at("file") == "QueryREST");
  CHECK(a.at("status") == "success");
  CHECK(a.at("started") == json::value(format_time(t0 + sec)));
  CHECK(a.at("ended") == json::value(format_time(t0 + 3 * sec)));
  CHECK(a.at("duration") == 2.0);
  CHECK(a.at("error").is_null());
  CHECK(a.at("log_count") == 2);
  CHECK(a.at("logs_href") == "/api/v1/tasks/isapp-1/steps/0/logs");
  CHECK(a.at("data_href") == "/api/v1/tasks/isapp-1/steps/0/data");
  CHECK(a.at("data") == doc(R"({"items": [1, 2]})"));
  const auto& b = steps.at(1).as_object();
  CHECK(b.at("status") == "pending");
  CHECK(b.at("started").is_null());
  CHECK(b.at("data").is_null());
  CHECK(b.at("logs_href") == "/api/v1/tasks/isapp-1/steps/1/logs");

  auto without = to_json(r, false).at("steps").as_array();
  CHECK(without.at(0).as_object().find("data") == without.at(0).as_object().end());
}

TEST_CASE("a log line has time, level, level name and message") {
  auto v = to_json(log_line{t0, 30, "careful"});
  CHECK(v.at("time") == json::value(format_time(t0)));
  CHECK(v.at("time_ns") == t0);
  CHECK(v.at("level") == 30);
  CHECK(v.at("levelname") == "warning");
  CHECK(v.at("message") == "careful");
}

// -- run_store -----------------------------------------------------------------------

namespace {
/// The run record plus step `index`'s ops in one batch.
write_batch recorded(const run_store& rs, const run_record& r, size_t index,
                     const std::vector<log_line>& logs, uint32_t first_seq) {
  auto b = rs.record_ops(r);
  for (auto& op : rs.step_ops(r, index, logs, first_seq))
    b.push_back(std::move(op));
  return b;
}
} // namespace

TEST_CASE("a recorded run loads back with its fields and step data") {
  for_each_store([](kv_store& kv) {
    run_store rs(kv);
    auto r = sample_run("isapp-a", t0);
    REQUIRE_FALSE(kv.write(recorded(rs, r, 0, two_lines(), 0)));
    auto back = loaded(rs, "isapp-a");
    CHECK(back.task_id == "isapp-a");
    CHECK(back.application == "sync_devices");
    CHECK(back.configuration == "prod");
    CHECK(back.queue == "default");
    CHECK(json::value(back.params) == doc(R"({"region": "eu"})"));
    CHECK(back.log_level == 10);
    CHECK(back.status == run_status::running);
    CHECK(back.created_ns == t0);
    CHECK(back.started_ns == t0 + sec);
    CHECK(back.ended_ns == 0);
    CHECK(back.parent_task == "isapp-parent");
    CHECK(back.attempt == 2);
    REQUIRE(back.steps.size() == 2);
    CHECK(back.steps[0].name == "Fetch");
    CHECK(back.steps[0].file == "QueryREST");
    CHECK(back.steps[0].status == step_status::success);
    CHECK(back.steps[0].started_ns == t0 + sec);
    CHECK(back.steps[0].ended_ns == t0 + 3 * sec);
    CHECK(back.steps[0].log_count == 2);
    REQUIRE(back.steps[0].data);
    CHECK(*back.steps[0].data == doc(R"({"items": [1, 2]})"));
    CHECK(back.steps[1].status == step_status::pending);
    CHECK_FALSE(back.steps[1].data);
    CHECK(to_json(back) == to_json(r));
  });
}

TEST_CASE("the stored task object reads back as the same task object, without data") {
  auto check_same = [](const run_record& r) {
    auto text = stored_run_json(r);
    auto back = parse_stored_run(text);
    REQUIRE_MESSAGE(back, message_of(back.error()));
    CHECK(to_json(*back, false) == to_json(r, false));
    CHECK(text.find("href") == std::string::npos); // display fields are made when read
  };
  auto r = sample_run("isapp-s", t0);
  check_same(r);
  r.ended_ns = r.started_ns + 1234567; // a fractional duration
  r.status = run_status::failed;
  r.error = "quote \" backslash \\ newline \n tab \t bell \x07 \xc3\xa9t\xc3\xa9";
  r.replay_of = "isapp-older";
  r.steps[1].error = "step \"failed\"\r\n";
  r.steps[1].started_ns = r.started_ns;
  r.steps[1].ended_ns = r.started_ns + 3;
  check_same(r);
  run_record empty;
  empty.task_id = "isapp-e";
  check_same(empty);
}

TEST_CASE("a task object stored in the display form of earlier versions still reads back") {
  auto r = sample_run("isapp-old", t0);
  r.ended_ns = r.started_ns + 5 * sec;
  r.status = run_status::success;
  auto back = parse_stored_run(to_json(to_json(r, false)));
  REQUIRE_MESSAGE(back, message_of(back.error()));
  CHECK(to_json(*back, false) == to_json(r, false));
  CHECK_FALSE(parse_stored_run("{not json"));
}

TEST_CASE("record_ops alone stores the record without step data") {
  for_each_store([](kv_store& kv) {
    run_store rs(kv);
    auto r = sample_run("isapp-b", t0);
    REQUIRE_FALSE(kv.write(rs.record_ops(r)));
    auto back = loaded(rs, "isapp-b");
    REQUIRE(back.steps.size() == 2);
    CHECK_FALSE(back.steps[0].data);
    CHECK(back.steps[0].status == step_status::success);
  });
}

TEST_CASE("a later update replaces the record") {
  for_each_store([](kv_store& kv) {
    run_store rs(kv);
    auto r = sample_run("isapp-c", t0);
    REQUIRE_FALSE(kv.write(rs.record_ops(r)));
    r.status = run_status::success;
    r.ended_ns = t0 + 9 * sec;
    r.steps[1].status = step_status::failed;
    r.steps[1].error = "boom";
    REQUIRE_FALSE(kv.write(recorded(rs, r, 1, {}, 0)));
    auto back = loaded(rs, "isapp-c");
    CHECK(back.status == run_status::success);
    CHECK(back.ended_ns == t0 + 9 * sec);
    CHECK(back.steps[1].status == step_status::failed);
    CHECK(back.steps[1].error == "boom");
    CHECK(listed_ids(rs, 10) == std::vector<std::string>{"isapp-c"});
  });
}

TEST_CASE("loading an unknown run answers an empty optional") {
  for_each_store([](kv_store& kv) {
    run_store rs(kv);
    auto r = rs.load("isapp-none");
    REQUIRE(r);
    CHECK_FALSE(r->has_value());
  });
}

TEST_CASE("step logs are kept per step in sequence order across batches") {
  for_each_store([](kv_store& kv) {
    run_store rs(kv);
    auto r = sample_run("isapp-d", t0);
    REQUIRE_FALSE(kv.write(rs.step_ops(r, 0, two_lines(), 0)));
    REQUIRE_FALSE(kv.write(rs.step_ops(r, 0, {log_line{t0 + 5 * sec, 10, "third"}}, 2)));
    REQUIRE_FALSE(kv.write(rs.step_ops(r, 1, {log_line{t0, 20, "other step"}}, 0)));
    auto logs = rs.logs("isapp-d", 0);
    REQUIRE_MESSAGE(logs, message_of(logs.error()));
    REQUIRE(logs->size() == 3);
    CHECK((*logs)[0].message == "first");
    CHECK((*logs)[0].level == 20);
    CHECK((*logs)[0].time_ns == t0 + sec);
    CHECK((*logs)[1].message == "second");
    CHECK((*logs)[1].level == 40);
    CHECK((*logs)[2].message == "third");
    auto other = rs.logs("isapp-d", 1);
    REQUIRE(other);
    REQUIRE(other->size() == 1);
    CHECK(other->front().message == "other step");
    auto none = rs.logs("isapp-unknown", 0);
    REQUIRE(none);
    CHECK(none->empty());
  });
}

TEST_CASE("logs of one run never include another run's lines") {
  for_each_store([](kv_store& kv) {
    run_store rs(kv);
    // "isapp-e" is a prefix of "isapp-e2".
    REQUIRE_FALSE(kv.write(recorded(rs, sample_run("isapp-e", t0), 0, two_lines(), 0)));
    REQUIRE_FALSE(kv.write(recorded(rs, sample_run("isapp-e2", t0), 0, two_lines(), 0)));
    auto logs = rs.logs("isapp-e", 0);
    REQUIRE(logs);
    CHECK(logs->size() == 2);
  });
}

TEST_CASE("runs are listed newest first, at most the limit") {
  for_each_store([](kv_store& kv) {
    run_store rs(kv);
    REQUIRE_FALSE(kv.write(rs.record_ops(sample_run("isapp-mid", t0 + 2 * sec))));
    REQUIRE_FALSE(kv.write(rs.record_ops(sample_run("isapp-old", t0 + 1 * sec))));
    REQUIRE_FALSE(kv.write(rs.record_ops(sample_run("isapp-new", t0 + 3 * sec))));
    CHECK(listed_ids(rs, 10)
          == std::vector<std::string>{"isapp-new", "isapp-mid", "isapp-old"});
    CHECK(listed_ids(rs, 2) == std::vector<std::string>{"isapp-new", "isapp-mid"});
    CHECK(listed_ids(rs, 1) == std::vector<std::string>{"isapp-new"});
    CHECK(listed_ids(rs, 0).empty());
    auto full = rs.list(1);
    REQUIRE(full);
    CHECK(full->front().application == "sync_devices");
  });
}

TEST_CASE("listing an empty store gives no runs") {
  for_each_store([](kv_store& kv) {
    run_store rs(kv);
    CHECK(listed_ids(rs, 10).empty());
  });
}

TEST_CASE("purge_before deletes older runs with their data and logs and keeps newer ones") {
  for_each_store([](kv_store& kv) {
    run_store rs(kv);
    for (auto [id, created] : {std::pair{"isapp-1", t0}, std::pair{"isapp-2", t0 + sec},
                               std::pair{"isapp-3", t0 + 2 * sec}})
      REQUIRE_FALSE(kv.write(recorded(rs, sample_run(id, created), 0, two_lines(), 0)));
    auto n = rs.purge_before(t0 + 2 * sec);
    REQUIRE_MESSAGE(n, message_of(n.error()));
    CHECK(*n == 2);
    CHECK(listed_ids(rs, 10) == std::vector<std::string>{"isapp-3"});
    for (auto id : {"isapp-1", "isapp-2"}) {
      auto r = rs.load(id);
      REQUIRE(r);
      CHECK_FALSE(r->has_value());
      auto logs = rs.logs(id, 0);
      REQUIRE(logs);
      CHECK(logs->empty());
    }
    size_t data_rows = 0;
    REQUIRE_FALSE(kv.scan(table::step_state, {}, {}, false, [&](std::string_view, std::string_view) {
      ++data_rows;
      return true;
    }));
    CHECK(data_rows == 1);
    auto kept = loaded(rs, "isapp-3");
    REQUIRE(kept.steps[0].data);
    auto logs = rs.logs("isapp-3", 0);
    REQUIRE(logs);
    CHECK(logs->size() == 2);
    auto again = rs.purge_before(t0 + 2 * sec);
    REQUIRE(again);
    CHECK(*again == 0);
  });
}

TEST_CASE("an LMDB run store keeps runs across reopening") {
  temp_dir dir;
  {
    auto kv = lmdb_in(dir);
    run_store rs(*kv);
    REQUIRE_FALSE(kv->write(recorded(rs, sample_run("isapp-p", t0), 0, two_lines(), 0)));
  }
  auto kv = lmdb_in(dir);
  run_store rs(*kv);
  auto back = loaded(rs, "isapp-p");
  REQUIRE(back.steps[0].data);
  CHECK(*back.steps[0].data == doc(R"({"items": [1, 2]})"));
  auto logs = rs.logs("isapp-p", 0);
  REQUIRE(logs);
  CHECK(logs->size() == 2);
}
