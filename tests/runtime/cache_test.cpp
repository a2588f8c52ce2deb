#include "stepflow/runtime/cache.hpp"

#include <future>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <boost/json.hpp>
#include <doctest/doctest.h>

#include "support/temp_dir.hpp"

using namespace stepflow;
using stepflow::test::temp_dir;

#define REQUIRE_OK(expr)                                                                 \
  do {                                                                                   \
    auto err_ = (expr);                                                                  \
    REQUIRE_MESSAGE(!err_, message_of(err_));                                            \
  } while (false)

namespace {

constexpr int64_t second = 1'000'000'000;

/// Runs `body` against the memory store and against a fresh LMDB store.
template <class F>
void for_each_store(F&& body) {
  SUBCASE("memory store") {
    auto s = make_memory_store();
    body(*s);
  }
  SUBCASE("LMDB store") {
    temp_dir dir;
    store_options opts;
    opts.path = dir.file("db");
    opts.initial_map_size = 1 << 20;
    opts.sync = false;
    auto s = open_lmdb_store(opts);
    REQUIRE_MESSAGE(s, message_of(s.error()));
    body(**s);
  }
}

std::optional<json::value> get(const cache& c, std::string_view key) {
  auto r = c.get(key);
  REQUIRE_MESSAGE(r, message_of(r.error()));
  return *r;
}

uint64_t sweep(cache& c) {
  auto r = c.sweep_expired();
  REQUIRE_MESSAGE(r, message_of(r.error()));
  return *r;
}

/// The expiry index as (expiry ns, cache key) pairs in key order.
std::vector<std::pair<int64_t, std::string>> index_of(const kv_store& s) {
  std::vector<std::pair<int64_t, std::string>> out;
  REQUIRE_OK(s.scan(table::cache_expiry, "", "", false, [&](std::string_view k, auto) {
    out.emplace_back(static_cast<int64_t>(read_be64(k)), std::string{k.substr(8)});
    return true;
  }));
  return out;
}

using index_entries = std::vector<std::pair<int64_t, std::string>>;

bool stored(const kv_store& s, std::string_view key) {
  auto r = s.get(table::cache, key);
  REQUIRE(r);
  return r->has_value();
}

/// A memory store whose write_async batches wait while `holding` until the
/// next write(), and which can run `after_get` once after a read: it stages
/// races between puts and sweeps deterministically.
class staging_store final : public kv_store {
public:
  bool holding = false;
  mutable std::function<void()> after_get;

  caf::expected<std::optional<std::string>> get(table t,
                                                std::string_view key) const override {
    auto r = inner_->get(t, key);
    if (auto f = std::exchange(after_get, nullptr))
      f();
    return r;
  }
  caf::error scan(table t, std::string_view prefix, std::string_view from, bool reverse,
                  const scan_fn& f) const override {
    return inner_->scan(t, prefix, from, reverse, f);
  }
  caf::error write(write_batch batch) override {
    auto held = std::exchange(held_, {});
    for (auto& [b, done] : held) {
      auto err = inner_->write(std::move(b));
      if (done)
        done(std::move(err));
    }
    return inner_->write(std::move(batch));
  }
  void write_async(write_batch batch, std::function<void(caf::error)> done) override {
    if (holding)
      held_.emplace_back(std::move(batch), std::move(done));
    else
      inner_->write_async(std::move(batch), std::move(done));
  }
  store_stats stats() const override { return inner_->stats(); }

private:
  std::unique_ptr<kv_store> inner_ = make_memory_store();
  std::vector<std::pair<write_batch, std::function<void(caf::error)>>> held_;
};

} // namespace

TEST_CASE("a cached value can be read back, replaced and erased") {
  for_each_store([](kv_store& s) {
    manual_clock clock;
    cache c(s, clock);
    REQUIRE_OK(c.put("token", json::value("abc")));
    CHECK(get(c, "token") == json::value("abc"));
    REQUIRE_OK(c.put("token", json::value("def")));
    CHECK(get(c, "token") == json::value("def"));
    REQUIRE_OK(c.erase("token"));
    CHECK(get(c, "token") == std::nullopt);
    CHECK(!stored(s, "token"));
  });
}

TEST_CASE("an absent key reads as nothing and erasing it is not an error") {
  for_each_store([](kv_store& s) {
    manual_clock clock;
    cache c(s, clock);
    CHECK(get(c, "nope") == std::nullopt);
    REQUIRE_OK(c.erase("nope"));
  });
}

TEST_CASE("values of every JSON kind round-trip") {
  for_each_store([](kv_store& s) {
    manual_clock clock;
    cache c(s, clock);
    std::vector<json::value> values{
      nullptr,
      true,
      false,
      json::value(int64_t{-42}),
      json::value(std::numeric_limits<int64_t>::min()),
      json::value(std::numeric_limits<uint64_t>::max()),
      json::value(0.1),
      json::value(-1.5e300),
      json::value("quotes \" and \\ and \xc3\xa9 and \n"),
      json::value(""),
      json::array{},
      json::array{1, "two", json::array{3.5, nullptr}},
      json::object{},
      json::object{{"a", 1}, {"nested", json::object{{"list", json::array{true, false}}}}},
    };
    for (size_t i = 0; i < values.size(); ++i)
      REQUIRE_OK(c.put("v" + std::to_string(i), values[i]));
    for (size_t i = 0; i < values.size(); ++i) {
      CAPTURE(i);
      auto got = get(c, "v" + std::to_string(i));
      REQUIRE(got);
      CHECK(got->kind() == values[i].kind());
      CHECK(*got == values[i]);
    }
  });
}

TEST_CASE("an entry with a TTL disappears from reads once it expires") {
  for_each_store([](kv_store& s) {
    manual_clock clock;
    cache c(s, clock);
    REQUIRE_OK(c.put("k", json::value(1), 10));
    clock.advance_ns(10 * second - 1);
    CHECK(get(c, "k") == json::value(1));
    clock.advance_ns(1);
    CHECK(get(c, "k") == std::nullopt);
    CHECK(stored(s, "k")); // expiry is lazy until a sweep
  });
}

TEST_CASE("an entry without a positive TTL never expires") {
  for_each_store([](kv_store& s) {
    manual_clock clock;
    cache c(s, clock);
    REQUIRE_OK(c.put("zero", json::value(0), 0));
    REQUIRE_OK(c.put("negative", json::value(0), -5));
    CHECK(index_of(s).empty());
    clock.advance_ns(int64_t{100} * 365 * 24 * 3600 * second);
    CHECK(get(c, "zero") == json::value(0));
    CHECK(get(c, "negative") == json::value(0));
    CHECK(sweep(c) == 0);
  });
}

TEST_CASE("a huge TTL saturates instead of overflowing") {
  for_each_store([](kv_store& s) {
    manual_clock clock;
    cache c(s, clock);
    REQUIRE_OK(c.put("k", json::value(1), std::numeric_limits<int64_t>::max()));
    CHECK(index_of(s) ==
          index_entries{{std::numeric_limits<int64_t>::max(), "k"}});
    clock.advance_ns(int64_t{100} * 365 * 24 * 3600 * second);
    CHECK(get(c, "k") == json::value(1));
  });
}

TEST_CASE("sweep_expired deletes expired entries and their index keys") {
  for_each_store([](kv_store& s) {
    manual_clock clock;
    cache c(s, clock);
    int64_t t0 = clock.now_ns();
    REQUIRE_OK(c.put("short", json::value(1), 1));
    REQUIRE_OK(c.put("long", json::value(2), 5));
    REQUIRE_OK(c.put("forever", json::value(3)));
    CHECK(index_of(s) ==
          index_entries{{t0 + 1 * second, "short"}, {t0 + 5 * second, "long"}});
    CHECK(sweep(c) == 0);
    clock.advance_ns(2 * second);
    CHECK(sweep(c) == 1);
    CHECK(!stored(s, "short"));
    CHECK(stored(s, "long"));
    CHECK(index_of(s) == index_entries{{t0 + 5 * second, "long"}});
    clock.advance_ns(10 * second);
    CHECK(sweep(c) == 1);
    CHECK(!stored(s, "long"));
    CHECK(index_of(s).empty());
    CHECK(get(c, "forever") == json::value(3));
  });
}

TEST_CASE("sweep_expired handles more expired entries than one round holds") {
  for_each_store([](kv_store& s) {
    manual_clock clock;
    cache c(s, clock);
    for (int i = 0; i < 1000; ++i)
      REQUIRE_OK(c.put("old" + std::to_string(i), json::value(i), 1 + i % 7));
    for (int i = 0; i < 10; ++i)
      REQUIRE_OK(c.put("new" + std::to_string(i), json::value(i), 60));
    clock.advance_ns(30 * second);
    CHECK(sweep(c) == 1000);
    CHECK(index_of(s).size() == 10);
    CHECK(get(c, "new3") == json::value(3));
  });
}

TEST_CASE("overwriting an entry moves its expiry index key") {
  for_each_store([](kv_store& s) {
    manual_clock clock;
    cache c(s, clock);
    int64_t t0 = clock.now_ns();
    REQUIRE_OK(c.put("k", json::value(1), 10));
    CHECK(index_of(s) == index_entries{{t0 + 10 * second, "k"}});
    REQUIRE_OK(c.put("k", json::value(2), 20));
    CHECK(index_of(s) == index_entries{{t0 + 20 * second, "k"}});
    clock.advance_ns(15 * second);
    CHECK(get(c, "k") == json::value(2));
    CHECK(sweep(c) == 0);
    REQUIRE_OK(c.put("k", json::value(3)));
    CHECK(index_of(s).empty());
    clock.advance_ns(100 * second);
    CHECK(get(c, "k") == json::value(3));
  });
}

TEST_CASE("erasing an entry removes its expiry index key") {
  for_each_store([](kv_store& s) {
    manual_clock clock;
    cache c(s, clock);
    REQUIRE_OK(c.put("k", json::value(1), 10));
    REQUIRE_OK(c.erase("k"));
    CHECK(index_of(s).empty());
    CHECK(!stored(s, "k"));
  });
}

TEST_CASE("sweep_expired drops a stale index key without touching the newer value") {
  for_each_store([](kv_store& s) {
    manual_clock clock;
    cache c(s, clock);
    int64_t t0 = clock.now_ns();
    REQUIRE_OK(c.put("k", json::value("fresh"), 100));
    // An index key left behind by racing puts: it names an older expiry.
    REQUIRE_OK(s.write({write_op{write_op::put, table::cache_expiry,
                                 be64(static_cast<uint64_t>(t0 + second)) + "k", ""}}));
    clock.advance_ns(2 * second);
    CHECK(sweep(c) == 0);
    CHECK(get(c, "k") == json::value("fresh"));
    CHECK(index_of(s) == index_entries{{t0 + 100 * second, "k"}});
  });
}

TEST_CASE("put_async runs its callback once the value is stored") {
  for_each_store([](kv_store& s) {
    manual_clock clock;
    cache c(s, clock);
    std::promise<caf::error> done;
    c.put_async("k", json::object{{"x", 1}}, 5, [&](caf::error e) { done.set_value(std::move(e)); });
    REQUIRE_OK(done.get_future().get());
    CHECK(get(c, "k") == json::value(json::object{{"x", 1}}));
    CHECK(index_of(s).size() == 1);
  });
}

TEST_CASE("put_async reports an invalid key through its callback") {
  for_each_store([](kv_store& s) {
    manual_clock clock;
    cache c(s, clock);
    caf::error result;
    c.put_async("", json::value(1), 0, [&](caf::error e) { result = std::move(e); });
    CHECK(code_of(result) == errc::invalid_argument);
  });
}

TEST_CASE("cache keys must be between 1 and 503 bytes long") {
  for_each_store([](kv_store& s) {
    manual_clock clock;
    cache c(s, clock);
    std::string longest(503, 'k');
    std::string too_long(504, 'k');
    REQUIRE_OK(c.put(longest, json::value(1), 10));
    CHECK(get(c, longest) == json::value(1));
    REQUIRE_OK(c.erase(longest));
    CHECK(code_of(c.put(too_long, json::value(1))) == errc::invalid_argument);
    CHECK(code_of(c.put("", json::value(1))) == errc::invalid_argument);
    CHECK(code_of(c.get(too_long).error()) == errc::invalid_argument);
    CHECK(code_of(c.erase(too_long)) == errc::invalid_argument);
  });
}

TEST_CASE("a corrupt stored entry reads as a store error") {
  for_each_store([](kv_store& s) {
    manual_clock clock;
    cache c(s, clock);
    REQUIRE_OK(s.write({write_op{write_op::put, table::cache, "short", "abc"},
                        write_op{write_op::put, table::cache, "bad json", be64(0) + "{oops"}}));
    CHECK(code_of(c.get("short").error()) == errc::store_error);
    CHECK(code_of(c.get("bad json").error()) == errc::store_error);
  });
}

TEST_CASE("sweep_expired spares an expired entry while a put of it is queued") {
  staging_store s;
  manual_clock clock;
  cache c(s, clock);
  REQUIRE_OK(c.put("k", json::value("old"), 1));
  clock.advance_ns(2 * second);
  int64_t now = clock.now_ns();
  s.holding = true;
  caf::error put_result = make_error(errc::internal, "callback did not run");
  c.put_async("k", json::value("fresh"), 100, [&](caf::error e) { put_result = std::move(e); });
  CHECK(sweep(c) == 0); // its barrier write lets the queued put commit
  CHECK(!put_result);
  CHECK(get(c, "k") == json::value("fresh"));
  CHECK(index_of(s) == index_entries{{now + 100 * second, "k"}});
}

TEST_CASE("sweep_expired spares an expired entry that a put replaced during the sweep") {
  staging_store s;
  manual_clock clock;
  cache c(s, clock);
  REQUIRE_OK(c.put("k", json::value("old"), 1));
  clock.advance_ns(2 * second);
  int64_t now = clock.now_ns();
  caf::error put_result = make_error(errc::internal, "did not run");
  // Runs right after the sweep read the old value.
  s.after_get = [&] { put_result = c.put("k", json::value("fresh"), 100); };
  CHECK(sweep(c) == 0);
  CHECK(!put_result);
  CHECK(get(c, "k") == json::value("fresh"));
  CHECK(index_of(s) == index_entries{{now + 100 * second, "k"}});
  // A later sweep works normally again.
  clock.advance_ns(200 * second);
  CHECK(sweep(c) == 1);
  CHECK(get(c, "k") == std::nullopt);
}
