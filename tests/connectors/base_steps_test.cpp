// The built-in steps (StaticData, Log, CacheSave, CacheRead, CacheDelete,
// DirectCacheRead) run directly through step_type::run with a hand-built
// step_context. Cache steps run against a cache over the in-memory store and
// over an LMDB store in a temporary directory; a manual clock drives TTLs.
#include <chrono>
#include <memory>
#include <string>

#include <doctest/doctest.h>

#include "stepflow/connectors/registry.hpp"
#include "stepflow/runtime/cache.hpp"
#include "stepflow/runtime/clock.hpp"
#include "stepflow/runtime/json.hpp"
#include "stepflow/runtime/kv_store.hpp"
#include "stepflow/runtime/log_level.hpp"
#include "stepflow/runtime/step.hpp"
#include "support/step_fixture.hpp"
#include "support/temp_dir.hpp"

using namespace stepflow;

namespace {

constexpr auto safety_bound = std::chrono::seconds(30);

json::value parse(std::string_view text) {
  auto v = parse_json(text, "test");
  REQUIRE_MESSAGE(v, message_of(v.error()));
  return std::move(*v);
}

const step_registry& registry() {
  static const step_registry reg = [] {
    step_registry r;
    auto err = connectors::register_all(r);
    REQUIRE_MESSAGE(!err, message_of(err));
    return r;
  }();
  return reg;
}

const step_type& step(std::string_view name) {
  const auto* t = registry().find(name);
  REQUIRE_MESSAGE(t != nullptr, "no step type " << name);
  return *t;
}

/// A store (memory or LMDB), a cache over it with a manual clock.
struct fixture {
  explicit fixture(const std::string& kind) {
    if (kind == "lmdb") {
      store_options so;
      so.path = dir.file("store");
      so.sync = false;
      so.initial_map_size = 16ull << 20;
      auto s = open_lmdb_store(so);
      REQUIRE_MESSAGE(s, message_of(s.error()));
      store = std::move(*s);
    } else {
      store = make_memory_store();
    }
    cache = std::make_unique<stepflow::cache>(*store, clock);
  }

  std::shared_ptr<step_context> context(std::string_view type, json::object params,
                                        int log_level = log_level::debug) {
    auto ctx = std::make_shared<step_context>();
    ctx->run_id = "isapp-test";
    ctx->application = "app";
    ctx->step_name = std::string(type) + " step";
    ctx->step_type = std::string(type);
    ctx->params = std::move(params);
    ctx->log_level = log_level;
    ctx->services.store = store.get();
    ctx->services.cache = cache.get();
    ctx->services.clock = &clock;
    return ctx;
  }

  test::temp_dir dir;
  manual_clock clock;
  std::unique_ptr<kv_store> store;
  std::unique_ptr<stepflow::cache> cache;
};

/// Runs `type` with `ctx`, waits for `done` and checks it fired exactly once.
step_outcome run_step(const step_type& type, std::shared_ptr<step_context> ctx) {
  return test::run_step(type, std::move(ctx), safety_bound);
}

step_outcome run_named(fixture& f, std::string_view type, std::string_view params_json,
                       int log_level = log_level::debug) {
  return run_step(step(type), f.context(type, parse(params_json).as_object(), log_level));
}

std::string store_kind() {
  std::string kind;
  SUBCASE("memory store") { kind = "memory"; }
  SUBCASE("lmdb store") { kind = "lmdb"; }
  return kind;
}

} // namespace

TEST_CASE("every built-in step is registered under its PowerFlow name") {
  for (auto name : {"StaticData", "Log", "QueryREST", "CacheSave", "CacheRead", "CacheDelete",
                    "DirectCacheRead"}) {
    CAPTURE(name);
    const auto* t = registry().find(name);
    REQUIRE(t != nullptr);
    CHECK(t->info().name == name);
    CHECK_FALSE(t->info().description.empty());
  }
  CHECK(registry().find("NoSuchStep") == nullptr);
  step_registry again;
  REQUIRE_FALSE(connectors::register_all(again));
  // Registering the same list twice is a duplicate.
  auto err = connectors::register_all(again);
  REQUIRE(err);
  CHECK(code_of(err) == errc::already_exists);
}

TEST_CASE("StaticData outputs its data parameter") {
  fixture f{"memory"};
  SUBCASE("object") {
    auto out = run_named(f, "StaticData", R"({"data": {"a": 1, "b": [true, null, "x"]}})");
    REQUIRE(out.ok);
    CHECK(out.data == parse(R"({"a": 1, "b": [true, null, "x"]})"));
  }
  SUBCASE("scalar") {
    auto out = run_named(f, "StaticData", R"({"data": "hello"})");
    REQUIRE(out.ok);
    CHECK(out.data == json::value("hello"));
  }
  SUBCASE("absent data gives null") {
    auto out = run_named(f, "StaticData", R"({})");
    REQUIRE(out.ok);
    CHECK(out.data.is_null());
  }
  SUBCASE("check accepts any parameters") {
    CHECK_FALSE(step("StaticData").check(json::object{}));
  }
}

TEST_CASE("CacheSave then CacheRead round-trips a JSON object") {
  fixture f{store_kind()};
  auto value = parse(R"({"devices": [{"id": 1, "name": "r1"}, {"id": 2, "name": "r2"}],
                         "count": 2, "ok": true, "none": null})");
  json::object save_params{{"key", "devices"}, {"value", value}};
  auto saved = run_step(step("CacheSave"), f.context("CacheSave", save_params));
  REQUIRE_MESSAGE(saved.ok, saved.error);
  CHECK(saved.data == value); // CacheSave passes the value on

  auto read = run_named(f, "CacheRead", R"({"key": "devices"})");
  REQUIRE_MESSAGE(read.ok, read.error);
  CHECK(read.data == value);

  // Overwriting replaces the value.
  auto again = run_named(f, "CacheSave", R"({"key": "devices", "value": [1, 2, 3]})");
  REQUIRE_MESSAGE(again.ok, again.error);
  auto read2 = run_named(f, "CacheRead", R"({"key": "devices"})");
  REQUIRE(read2.ok);
  CHECK(read2.data == parse("[1, 2, 3]"));
}

TEST_CASE("CacheSave without a value saves the previous step's data") {
  fixture f{store_kind()};
  auto ctx = f.context("CacheSave", json::object{{"key", "joined"}});
  SUBCASE("one input: its data") {
    ctx->inputs.emplace_back("Fetch", std::make_shared<const json::value>(parse(R"({"x": 1})")));
    auto out = run_step(step("CacheSave"), ctx);
    REQUIRE_MESSAGE(out.ok, out.error);
    auto read = run_named(f, "CacheRead", R"({"key": "joined"})");
    REQUIRE(read.ok);
    CHECK(read.data == parse(R"({"x": 1})"));
  }
  SUBCASE("several inputs: an object by step name") {
    ctx->inputs.emplace_back("A", std::make_shared<const json::value>(parse("1")));
    ctx->inputs.emplace_back("B", std::make_shared<const json::value>(parse(R"("two")")));
    auto out = run_step(step("CacheSave"), ctx);
    REQUIRE_MESSAGE(out.ok, out.error);
    auto read = run_named(f, "CacheRead", R"({"key": "joined"})");
    REQUIRE(read.ok);
    CHECK(read.data == parse(R"({"A": 1, "B": "two"})"));
  }
}

TEST_CASE("CacheSave with an empty key fails") {
  fixture f{"memory"};
  auto out = run_named(f, "CacheSave", R"({"key": "", "value": 1})");
  CHECK_FALSE(out.ok);
  CHECK(out.error.find("key") != std::string::npos);
}

TEST_CASE("CacheSave requires a key") {
  auto err = step("CacheSave").check(json::object{{"value", 1}});
  REQUIRE(err);
  CHECK(message_of(err).find("key") != std::string::npos);
}

TEST_CASE("CacheRead of a missing key fails with a sentence naming the key") {
  fixture f{store_kind()};
  auto out = run_named(f, "CacheRead", R"({"key": "never-saved-key"})");
  CHECK_FALSE(out.ok);
  CHECK(out.error.find("never-saved-key") != std::string::npos);
  CHECK(out.error.find('\n') == std::string::npos);
}

TEST_CASE("CacheRead with a default outputs it for a missing key") {
  fixture f{store_kind()};
  auto out = run_named(f, "CacheRead", R"({"key": "absent", "default": {"fallback": [1]}})");
  REQUIRE_MESSAGE(out.ok, out.error);
  CHECK(out.data == parse(R"({"fallback": [1]})"));
  // A present key wins over the default.
  REQUIRE(run_named(f, "CacheSave", R"({"key": "absent", "value": "real"})").ok);
  auto out2 = run_named(f, "CacheRead", R"({"key": "absent", "default": "fake"})");
  REQUIRE(out2.ok);
  CHECK(out2.data == json::value("real"));
}

TEST_CASE("CacheSave ttl expires on the cache's clock") {
  fixture f{store_kind()};
  REQUIRE(run_named(f, "CacheSave", R"({"key": "short", "value": 42, "ttl": 60})").ok);
  REQUIRE(run_named(f, "CacheSave", R"({"key": "forever", "value": 7})").ok);
  f.clock.advance_ns(59'000'000'000);
  auto before = run_named(f, "CacheRead", R"({"key": "short"})");
  REQUIRE_MESSAGE(before.ok, before.error);
  CHECK(before.data == json::value(42));
  f.clock.advance_ns(2'000'000'000); // 61 s after saving
  auto after = run_named(f, "CacheRead", R"({"key": "short"})");
  CHECK_FALSE(after.ok);
  CHECK(after.error.find("short") != std::string::npos);
  // An explicit null default is a default: the step outputs null.
  auto with_default = run_named(f, "CacheRead", R"({"key": "short", "default": null})");
  CHECK(with_default.ok);
  CHECK(with_default.data.is_null());
  auto forever = run_named(f, "CacheRead", R"({"key": "forever"})");
  REQUIRE(forever.ok);
  CHECK(forever.data == json::value(7));
  // DirectCacheRead shows the expired key as null.
  auto direct = run_named(f, "DirectCacheRead", R"({"keys": ["short", "forever"]})");
  REQUIRE(direct.ok);
  CHECK(direct.data == parse(R"({"short": null, "forever": 7})"));
}

TEST_CASE("CacheDelete removes an entry and passes its input on") {
  fixture f{store_kind()};
  REQUIRE(run_named(f, "CacheSave", R"({"key": "gone", "value": {"v": 1}})").ok);
  auto ctx = f.context("CacheDelete", json::object{{"key", "gone"}});
  ctx->inputs.emplace_back("Prev", std::make_shared<const json::value>(parse(R"(["in"])")));
  auto del = run_step(step("CacheDelete"), ctx);
  REQUIRE_MESSAGE(del.ok, del.error);
  CHECK(del.data == parse(R"(["in"])"));
  auto read = run_named(f, "CacheRead", R"({"key": "gone"})");
  CHECK_FALSE(read.ok);
  // Deleting a missing key is not an error.
  auto again = run_named(f, "CacheDelete", R"({"key": "gone"})");
  CHECK_MESSAGE(again.ok, again.error);
  CHECK(again.data.is_null());
}

TEST_CASE("DirectCacheRead returns {key: value} with nulls for missing keys") {
  fixture f{store_kind()};
  REQUIRE(run_named(f, "CacheSave", R"({"key": "a", "value": {"x": 1}})").ok);
  REQUIRE(run_named(f, "CacheSave", R"({"key": "c", "value": [3]})").ok);
  SUBCASE("keys list") {
    auto out = run_named(f, "DirectCacheRead", R"({"keys": ["a", "b", "c"]})");
    REQUIRE_MESSAGE(out.ok, out.error);
    CHECK(out.data == parse(R"({"a": {"x": 1}, "b": null, "c": [3]})"));
  }
  SUBCASE("single key") {
    auto out = run_named(f, "DirectCacheRead", R"({"key": "a"})");
    REQUIRE(out.ok);
    CHECK(out.data == parse(R"({"a": {"x": 1}})"));
  }
  SUBCASE("key and keys together") {
    auto out = run_named(f, "DirectCacheRead", R"({"key": "missing", "keys": ["c"]})");
    REQUIRE(out.ok);
    CHECK(out.data == parse(R"({"missing": null, "c": [3]})"));
  }
}

TEST_CASE("DirectCacheRead check needs key or keys, and keys must be a list") {
  const auto& t = step("DirectCacheRead");
  CHECK(t.check(parse(R"({})").as_object()));
  CHECK(t.check(parse(R"({"key": null, "keys": null})").as_object()));
  auto err = t.check(parse(R"({"keys": "a"})").as_object());
  REQUIRE(err);
  CHECK(message_of(err).find("keys") != std::string::npos);
  CHECK_FALSE(t.check(parse(R"({"key": "a"})").as_object()));
  CHECK_FALSE(t.check(parse(R"({"keys": ["a", "b"]})").as_object()));
}

TEST_CASE("cache steps fail cleanly without a cache service") {
  for (auto name : {"CacheSave", "CacheRead", "CacheDelete", "DirectCacheRead"}) {
    CAPTURE(name);
    auto ctx = std::make_shared<step_context>();
    ctx->params = json::object{{"key", "k"}, {"value", 1}};
    auto out = run_step(step(name), ctx);
    CHECK_FALSE(out.ok);
    CHECK(out.error.find("cache") != std::string::npos);
  }
}

TEST_CASE("Log writes its message at its level and passes its input on") {
  fixture f{"memory"};
  SUBCASE("warning level") {
    auto ctx = f.context("Log", json::object{{"message", "disk almost full"}, {"level", "warning"}},
                         log_level::info);
    ctx->inputs.emplace_back("Prev", std::make_shared<const json::value>(parse(R"({"p": 1})")));
    auto out = run_step(step("Log"), ctx);
    REQUIRE(out.ok);
    CHECK(out.data == parse(R"({"p": 1})"));
    auto logs = ctx->take_logs();
    REQUIRE(logs.size() == 1);
    CHECK(logs[0].level == log_level::warning);
    CHECK(logs[0].message == "disk almost full");
    CHECK(logs[0].time_ns == f.clock.now_ns());
  }
  SUBCASE("default level is info") {
    auto ctx = f.context("Log", json::object{{"message", "hello"}}, log_level::debug);
    REQUIRE(run_step(step("Log"), ctx).ok);
    auto logs = ctx->take_logs();
    REQUIRE(logs.size() == 1);
    CHECK(logs[0].level == log_level::info);
  }
  SUBCASE("numeric level") {
    auto ctx = f.context("Log", json::object{{"message", "boom"}, {"level", 40}}, log_level::info);
    REQUIRE(run_step(step("Log"), ctx).ok);
    auto logs = ctx->take_logs();
    REQUIRE(logs.size() == 1);
    CHECK(logs[0].level == log_level::error);
  }
  SUBCASE("lines below the context's level are dropped") {
    auto ctx = f.context("Log", json::object{{"message", "chatty"}, {"level", "debug"}},
                         log_level::info);
    auto out = run_step(step("Log"), ctx);
    REQUIRE(out.ok);
    CHECK(ctx->take_logs().empty());
    auto ctx2 = f.context("Log", json::object{{"message", "info line"}, {"level", "info"}},
                          log_level::warning);
    REQUIRE(run_step(step("Log"), ctx2).ok);
    CHECK(ctx2->take_logs().empty());
  }
  SUBCASE("no input passes null on") {
    auto ctx = f.context("Log", json::object{{"message", "x"}});
    auto out = run_step(step("Log"), ctx);
    REQUIRE(out.ok);
    CHECK(out.data.is_null());
  }
}

TEST_CASE("Log check rejects a bad level and a missing message") {
  const auto& t = step("Log");
  auto err = t.check(parse(R"({"message": "m", "level": "loud"})").as_object());
  REQUIRE(err);
  CHECK(code_of(err) == errc::invalid_definition);
  CHECK(message_of(err).find("loud") != std::string::npos);
  auto missing = t.check(parse(R"({"level": "info"})").as_object());
  REQUIRE(missing);
  CHECK(message_of(missing).find("message") != std::string::npos);
  for (auto ok : {R"({"message": "m"})", R"({"message": "m", "level": "WARNING"})",
                  R"({"message": "m", "level": 30})", R"({"message": "m", "level": "10"})"}) {
    CAPTURE(ok);
    CHECK_FALSE(t.check(parse(ok).as_object()));
  }
}
