#include "stepflow/runtime/kv_store.hpp"

#include <sys/stat.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

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

store_options small_lmdb(const temp_dir& dir) {
  store_options opts;
  opts.path = dir.file("db");
  opts.initial_map_size = 1 << 20;
  opts.sync = false;
  return opts;
}

std::unique_ptr<kv_store> open_store(const store_options& opts) {
  auto s = open_lmdb_store(opts);
  REQUIRE_MESSAGE(s, message_of(s.error()));
  return std::move(*s);
}

/// Runs `body` against the memory store and against a fresh LMDB store (one
/// doctest subcase each).
template <class F>
void for_each_store(F&& body) {
  SUBCASE("memory store") {
    auto s = make_memory_store();
    body(*s);
  }
  SUBCASE("LMDB store") {
    temp_dir dir;
    auto s = open_store(small_lmdb(dir));
    body(*s);
  }
}

write_op put_op(table t, std::string key, std::string value) {
  return write_op{write_op::put, t, std::move(key), std::move(value)};
}

write_op erase_op(table t, std::string key) {
  return write_op{write_op::erase, t, std::move(key), {}};
}

write_op erase_prefix_op(table t, std::string prefix) {
  return write_op{write_op::erase_prefix, t, std::move(prefix), {}};
}

void put(kv_store& s, table t, const std::string& key, const std::string& value) {
  REQUIRE_OK(s.write({put_op(t, key, value)}));
}

std::optional<std::string> get(const kv_store& s, table t, std::string_view key) {
  auto r = s.get(t, key);
  REQUIRE_MESSAGE(r, message_of(r.error()));
  return *r;
}

std::vector<std::string> scan_keys(const kv_store& s, table t, std::string_view prefix,
                                   std::string_view from = {}, bool reverse = false) {
  std::vector<std::string> keys;
  REQUIRE_OK(s.scan(t, prefix, from, reverse, [&](std::string_view k, std::string_view) {
    keys.emplace_back(k);
    return true;
  }));
  return keys;
}

size_t count_keys(const kv_store& s, table t) {
  size_t n = 0;
  REQUIRE_OK(s.scan(t, "", "", false, [&](std::string_view, std::string_view) {
    ++n;
    return true;
  }));
  return n;
}

using keys = std::vector<std::string>;

/// `threads` threads each queue `per_thread` puts into table::runs (keys
/// be32(0 .. threads * per_thread - 1)); every answer counts in `answered`,
/// failed ones also in `failed`. Returns once all are queued.
void write_from_threads(kv_store& s, int threads, int per_thread, std::atomic<int>& answered,
                        std::atomic<int>& failed) {
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i)
        s.write_async({put_op(table::runs, be32(static_cast<uint32_t>(t * per_thread + i)), "v")},
                      [&](caf::error e) {
                        if (e)
                          ++failed;
                        ++answered;
                      });
    });
  for (auto& t : pool)
    t.join();
}

/// Holds the LMDB writer before its next commit while closed, so that every
/// batch queued meanwhile lands in one group. install() goes into the store's
/// options; close() returns once the writer is held.
class writer_gate {
public:
  store_options install(store_options opts) {
    opts.before_commit = [st = state_] {
      std::unique_lock lock(st->m);
      st->inside = true;
      st->cv.notify_all();
      st->cv.wait(lock, [&] { return !st->closed; });
      st->inside = false;
    };
    return opts;
  }
  void close(kv_store& s) {
    {
      std::lock_guard lock(state_->m);
      state_->closed = true;
    }
    s.write_async({}, nullptr); // the writer takes it and stops at the gate
    std::unique_lock lock(state_->m);
    state_->cv.wait(lock, [&] { return state_->inside; });
  }
  void open() {
    {
      std::lock_guard lock(state_->m);
      state_->closed = false;
    }
    state_->cv.notify_all();
  }

private:
  struct state {
    std::mutex m;
    std::condition_variable cv;
    bool closed = false;
    bool inside = false;
  };
  std::shared_ptr<state> state_ = std::make_shared<state>();
};

} // namespace

// -- key helpers -----------------------------------------------------------------

TEST_CASE("be64 and be32 encode big-endian and read back") {
  CHECK(be64(0x0102030405060708ull) == std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8));
  CHECK(be32(0x0A0B0C0Du) == std::string("\x0A\x0B\x0C\x0D", 4));
  CHECK(read_be64(be64(0xFEDCBA9876543210ull)) == 0xFEDCBA9876543210ull);
  CHECK(read_be32(be32(0xFFFFFFFFu)) == 0xFFFFFFFFu);
  CHECK(read_be64(be64(42) + "tail") == 42);
  CHECK(read_be32(std::string("\x01\x02", 2)) == 0x01020000u);
}

TEST_CASE("big-endian keys sort in numeric order") {
  CHECK(be64(255) < be64(256));
  CHECK(be64(1) < be64(1ull << 40));
  CHECK(be32(65535) < be32(65536));
}

TEST_CASE("every table has a distinct name") {
  std::vector<std::string> names;
  for (int i = 0; i < table_count; ++i)
    names.emplace_back(table_name(static_cast<table>(i)));
  std::sort(names.begin(), names.end());
  CHECK(std::adjacent_find(names.begin(), names.end()) == names.end());
  CHECK(table_name(table::cache_expiry) == "cache_expiry");
}

// -- both stores -----------------------------------------------------------------

TEST_CASE("get returns nothing for a key that was never written") {
  for_each_store([](kv_store& s) { CHECK(get(s, table::runs, "missing") == std::nullopt); });
}

TEST_CASE("a stored value can be read back and overwritten") {
  for_each_store([](kv_store& s) {
    put(s, table::runs, "run-1", "first");
    CHECK(get(s, table::runs, "run-1") == "first");
    put(s, table::runs, "run-1", "second");
    CHECK(get(s, table::runs, "run-1") == "second");
  });
}

TEST_CASE("tables are independent namespaces") {
  for_each_store([](kv_store& s) {
    put(s, table::applications, "x", "app");
    put(s, table::steps, "x", "step");
    CHECK(get(s, table::applications, "x") == "app");
    CHECK(get(s, table::steps, "x") == "step");
    CHECK(get(s, table::configurations, "x") == std::nullopt);
  });
}

TEST_CASE("values may be empty, binary or larger than the initial map") {
  for_each_store([](kv_store& s) {
    std::string binary("a\0b\xff", 4);
    std::string big(3 << 20, 'x');
    put(s, table::meta, "empty", "");
    put(s, table::meta, "binary", binary);
    put(s, table::meta, "big", big);
    CHECK(get(s, table::meta, "empty") == "");
    CHECK(get(s, table::meta, "binary") == binary);
    CHECK(get(s, table::meta, "big") == big);
  });
}

TEST_CASE("erasing a key removes it and erasing an absent key is not an error") {
  for_each_store([](kv_store& s) {
    put(s, table::runs, "a", "1");
    REQUIRE_OK(s.write({erase_op(table::runs, "a")}));
    CHECK(get(s, table::runs, "a") == std::nullopt);
    REQUIRE_OK(s.write({erase_op(table::runs, "a")}));
    REQUIRE_OK(s.write({erase_op(table::runs, "never")}));
  });
}

TEST_CASE("erase_prefix removes exactly the keys starting with the prefix") {
  for_each_store([](kv_store& s) {
    for (auto k : {"a", "b", "b/1", "b/2", "b\xff", "c"})
      put(s, table::step_logs, k, "v");
    put(s, table::runs, "b/1", "other table");
    REQUIRE_OK(s.write({erase_prefix_op(table::step_logs, "b/")}));
    CHECK(scan_keys(s, table::step_logs, "") == keys{"a", "b", "b\xff", "c"});
    REQUIRE_OK(s.write({erase_prefix_op(table::step_logs, "b")}));
    CHECK(scan_keys(s, table::step_logs, "") == keys{"a", "c"});
    REQUIRE_OK(s.write({erase_prefix_op(table::step_logs, "nothing")}));
    REQUIRE_OK(s.write({erase_prefix_op(table::step_logs, std::string(600, 'a'))}));
    CHECK(scan_keys(s, table::step_logs, "") == keys{"a", "c"});
    CHECK(get(s, table::runs, "b/1") == "other table");
  });
}

TEST_CASE("erase_prefix with an empty prefix empties only its table") {
  for_each_store([](kv_store& s) {
    for (int i = 0; i < 50; ++i)
      put(s, table::step_state, "k" + std::to_string(i), "v");
    put(s, table::runs, "keep", "v");
    REQUIRE_OK(s.write({erase_prefix_op(table::step_state, "")}));
    CHECK(count_keys(s, table::step_state) == 0);
    CHECK(get(s, table::runs, "keep") == "v");
    put(s, table::step_state, "again", "v");
    CHECK(count_keys(s, table::step_state) == 1);
  });
}

TEST_CASE("the operations of a batch apply in order") {
  for_each_store([](kv_store& s) {
    put(s, table::meta, "p/old", "v");
    REQUIRE_OK(s.write({put_op(table::meta, "k", "v"), erase_op(table::meta, "k"),
                        erase_prefix_op(table::meta, "p/"), put_op(table::meta, "p/new", "v")}));
    CHECK(get(s, table::meta, "k") == std::nullopt);
    CHECK(scan_keys(s, table::meta, "p/") == keys{"p/new"});
  });
}

TEST_CASE("a batch with an invalid operation changes nothing") {
  for_each_store([](kv_store& s) {
    put(s, table::meta, "kept", "old");
    auto err = s.write({put_op(table::meta, "x", "1"), put_op(table::meta, "kept", "new"),
                        erase_op(table::meta, "")});
    CHECK(code_of(err) == errc::invalid_argument);
    write_op bad_kind = put_op(table::meta, "y", "1");
    bad_kind.kind = static_cast<write_op::kind_t>(9);
    err = s.write({put_op(table::meta, "x", "1"), bad_kind});
    CHECK(code_of(err) == errc::invalid_argument);
    CHECK(get(s, table::meta, "x") == std::nullopt);
    CHECK(get(s, table::meta, "kept") == "old");
  });
}

TEST_CASE("keys must be between 1 and 511 bytes long") {
  for_each_store([](kv_store& s) {
    std::string longest(511, 'k');
    std::string too_long(512, 'k');
    put(s, table::cache, longest, "v");
    CHECK(get(s, table::cache, longest) == "v");
    REQUIRE_OK(s.write({erase_op(table::cache, longest)}));
    CHECK(code_of(s.write({put_op(table::cache, too_long, "v")})) == errc::invalid_argument);
    CHECK(code_of(s.write({put_op(table::cache, "", "v")})) == errc::invalid_argument);
    CHECK(code_of(s.write({erase_op(table::cache, too_long)})) == errc::invalid_argument);
    CHECK(code_of(s.get(table::cache, too_long).error()) == errc::invalid_argument);
    CHECK(code_of(s.get(table::cache, "").error()) == errc::invalid_argument);
  });
}

TEST_CASE("binary keys are ordered bytewise") {
  for_each_store([](kv_store& s) {
    for (uint64_t n : {300ull, 2ull, 1ull << 40, 0ull, 255ull})
      put(s, table::runs_by_time, be64(n) + "run", "");
    std::vector<uint64_t> seen;
    REQUIRE_OK(s.scan(table::runs_by_time, "", "", false, [&](std::string_view k, auto) {
      seen.push_back(read_be64(k));
      return true;
    }));
    CHECK(seen == std::vector<uint64_t>{0, 2, 255, 300, 1ull << 40});
  });
}

TEST_CASE("a forward scan visits keys from the start key while they have the prefix") {
  for_each_store([](kv_store& s) {
    CHECK(scan_keys(s, table::steps, "").empty());
    for (auto k : {"a", "b", "b/1", "b/2", "b/3", "b\xff", "b\xff\xff", "c"})
      put(s, table::steps, k, std::string("value of ") + k);
    CHECK(scan_keys(s, table::steps, "") ==
          keys{"a", "b", "b/1", "b/2", "b/3", "b\xff", "b\xff\xff", "c"});
    CHECK(scan_keys(s, table::steps, "b/") == keys{"b/1", "b/2", "b/3"});
    CHECK(scan_keys(s, table::steps, "b/", "b/2") == keys{"b/2", "b/3"});
    CHECK(scan_keys(s, table::steps, "b/", "b/25") == keys{"b/3"});
    CHECK(scan_keys(s, table::steps, "b/", "a") == keys{"b/1", "b/2", "b/3"});
    CHECK(scan_keys(s, table::steps, "b/", "c").empty());
    CHECK(scan_keys(s, table::steps, "b") ==
          keys{"b", "b/1", "b/2", "b/3", "b\xff", "b\xff\xff"});
    CHECK(scan_keys(s, table::steps, "x").empty());
    // A start key longer than any storable key.
    CHECK(scan_keys(s, table::steps, "b/", "b/2" + std::string(600, 'z')) == keys{"b/3"});
    std::string value;
    REQUIRE_OK(s.scan(table::steps, "b/2", "", false, [&](auto, std::string_view v) {
      value = v;
      return true;
    }));
    CHECK(value == "value of b/2");
  });
}

TEST_CASE("a reverse scan visits keys down from the start key while they have the prefix") {
  for_each_store([](kv_store& s) {
    CHECK(scan_keys(s, table::steps, "", "", true).empty());
    for (auto k : {"a", "b", "b/1", "b/2", "b/3", "b\xff", "b\xff\xff", "c"})
      put(s, table::steps, k, "v");
    CHECK(scan_keys(s, table::steps, "", "", true) ==
          keys{"c", "b\xff\xff", "b\xff", "b/3", "b/2", "b/1", "b", "a"});
    CHECK(scan_keys(s, table::steps, "b/", "", true) == keys{"b/3", "b/2", "b/1"});
    CHECK(scan_keys(s, table::steps, "b/", "b/2", true) == keys{"b/2", "b/1"});
    CHECK(scan_keys(s, table::steps, "b/", "b/25", true) == keys{"b/2", "b/1"});
    CHECK(scan_keys(s, table::steps, "b/", "c", true) == keys{"b/3", "b/2", "b/1"});
    CHECK(scan_keys(s, table::steps, "b/", "a", true).empty());
    CHECK(scan_keys(s, table::steps, "b", "", true) ==
          keys{"b\xff\xff", "b\xff", "b/3", "b/2", "b/1", "b"});
    CHECK(scan_keys(s, table::steps, "", "b/2", true) == keys{"b/2", "b/1", "b", "a"});
    CHECK(scan_keys(s, table::steps, "c", "", true) == keys{"c"});
    CHECK(scan_keys(s, table::steps, "x", "", true).empty());
    CHECK(scan_keys(s, table::steps, "b/", "b/2" + std::string(600, 'z'), true) ==
          keys{"b/2", "b/1"});
  });
}

TEST_CASE("scans with an all-0xFF prefix reach the end of the table") {
  for_each_store([](kv_store& s) {
    for (auto k : {"a", "\xff", "\xff\xff", "\xff\xff\xff"})
      put(s, table::meta, k, "v");
    CHECK(scan_keys(s, table::meta, "\xff\xff") == keys{"\xff\xff", "\xff\xff\xff"});
    CHECK(scan_keys(s, table::meta, "\xff", "", true) ==
          keys{"\xff\xff\xff", "\xff\xff", "\xff"});
    CHECK(scan_keys(s, table::meta, "\xff", "\xff\xff", true) == keys{"\xff\xff", "\xff"});
  });
}

TEST_CASE("a scan stops when the visitor returns false") {
  for_each_store([](kv_store& s) {
    for (int i = 0; i < 10; ++i)
      put(s, table::runs, "r" + std::to_string(i), "v");
    for (bool reverse : {false, true}) {
      int visits = 0;
      REQUIRE_OK(s.scan(table::runs, "r", "", reverse, [&](auto, auto) { return ++visits < 3; }));
      CHECK(visits == 3);
    }
  });
}

TEST_CASE("reads nested in a scan callback see the data") {
  for_each_store([](kv_store& s) {
    put(s, table::runs_by_time, be64(1) + "run-1", "");
    put(s, table::runs, "run-1", "record");
    std::optional<std::string> record;
    size_t inner_keys = 0;
    REQUIRE_OK(s.scan(table::runs_by_time, "", "", false, [&](std::string_view k, auto) {
      record = get(s, table::runs, k.substr(8));
      inner_keys = scan_keys(s, table::runs, "").size();
      return true;
    }));
    CHECK(record == "record");
    CHECK(inner_keys == 1);
  });
}

TEST_CASE("write inside a scan callback fails but write_async is queued") {
  for_each_store([](kv_store& s) {
    put(s, table::meta, "a", "v");
    caf::error inside;
    caf::error async_result = make_error(errc::internal, "callback did not run");
    REQUIRE_OK(s.scan(table::meta, "", "", false, [&](auto, auto) {
      inside = s.write({put_op(table::meta, "sync", "v")});
      s.write_async({put_op(table::meta, "async", "v")},
                    [&](caf::error e) { async_result = std::move(e); });
      return false;
    }));
    REQUIRE_OK(s.write({})); // every earlier batch has committed
    CHECK(code_of(inside) == errc::internal);
    CHECK(!async_result);
    CHECK(get(s, table::meta, "sync") == std::nullopt);
    CHECK(get(s, table::meta, "async") == "v");
  });
}

TEST_CASE("write_async from four threads runs every callback") {
  for_each_store([](kv_store& s) {
    std::atomic<int> fired{0};
    std::atomic<int> failed{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&, t] {
        for (int i = 0; i < 250; ++i)
          s.write_async({put_op(table::step_logs, be32(static_cast<uint32_t>(t * 250 + i)), "v")},
                        [&](caf::error e) {
                          if (e)
                            ++failed;
                          ++fired;
                        });
      });
    for (auto& t : threads)
      t.join();
    REQUIRE_OK(s.write({}));
    CHECK(fired == 1000);
    CHECK(failed == 0);
    CHECK(count_keys(s, table::step_logs) == 1000);
    auto st = s.stats();
    CHECK(st.batches >= 1001);
    CHECK(st.commits <= st.batches);
  });
}

TEST_CASE("the memory store reports one commit per batch and no map") {
  auto s = make_memory_store();
  put(*s, table::meta, "a", "1");
  put(*s, table::meta, "b", "2");
  auto st = s->stats();
  CHECK(st.commits == 2);
  CHECK(st.batches == 2);
  CHECK(st.map_size == 0);
  CHECK(st.map_resizes == 0);
}

// -- LMDB store ------------------------------------------------------------------

TEST_CASE("opening an LMDB store creates its directory and private files") {
  temp_dir dir;
  auto opts = small_lmdb(dir);
  opts.path = dir.file("nested/deeper/db");
  auto s = open_store(opts);
  for (auto name : {"/data.mdb", "/lock.mdb"}) {
    struct stat st {};
    REQUIRE(::stat((opts.path + name).c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
  }
  CHECK(s->stats().map_size >= opts.initial_map_size);
}

TEST_CASE("opening an LMDB store with an empty path fails") {
  auto s = open_lmdb_store(store_options{});
  REQUIRE(!s);
  CHECK(code_of(s.error()) == errc::invalid_argument);
}

TEST_CASE("opening an LMDB store where a file is in the way fails with a store error") {
  temp_dir dir;
  store_options opts;
  opts.path = dir.write("not-a-dir", "x");
  auto s = open_lmdb_store(opts);
  REQUIRE(!s);
  CHECK(code_of(s.error()) == errc::store_error);
}

TEST_CASE("batches queued during a commit are committed together") {
  temp_dir dir;
  writer_gate gate;
  auto s = open_store(gate.install(small_lmdb(dir)));
  auto before = s->stats();
  std::atomic<int> fired{0};
  std::atomic<int> failed{0};
  {
    gate.close(*s);
    write_from_threads(*s, 4, 250, fired, failed);
    CHECK(fired == 0); // the writer is still held
    gate.open();
  }
  REQUIRE_OK(s->write({}));
  CHECK(fired == 1000);
  CHECK(failed == 0);
  CHECK(count_keys(*s, table::runs) == 1000);
  auto st = s->stats();
  auto batches = st.batches - before.batches;
  auto commits = st.commits - before.commits;
  CHECK(batches == 1002); // gate, 1000 puts, barrier
  CHECK(commits < batches);
  CHECK(commits <= 3);
}

TEST_CASE("a slow write callback does not hold up later commits, and callbacks keep commit order") {
  temp_dir dir;
  auto s = open_store(small_lmdb(dir));
  std::promise<void> release;
  auto released = release.get_future().share();
  std::vector<int> order;
  std::mutex order_mtx;
  std::promise<void> entered;
  s->write_async({put_op(table::meta, "first", "1")}, [&, released](caf::error) {
    entered.set_value();
    released.wait();
    std::lock_guard g{order_mtx};
    order.push_back(1);
  });
  entered.get_future().wait(); // the first group is committed and its callback is held
  std::promise<void> second_done;
  s->write_async({put_op(table::meta, "second", "2")}, [&](caf::error) {
    {
      std::lock_guard g{order_mtx};
      order.push_back(2);
    }
    second_done.set_value();
  });
  // The second batch is committed (readable) while the first callback waits.
  bool visible = false;
  for (int i = 0; i < 500 && !visible; ++i) {
    visible = get(*s, table::meta, "second") == "2";
    if (!visible)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(visible);
  release.set_value();
  second_done.get_future().wait();
  CHECK(order == std::vector<int>{1, 2});
}

TEST_CASE("a failing batch in a group fails alone") {
  temp_dir dir;
  writer_gate gate;
  auto s = open_store(gate.install(small_lmdb(dir)));
  std::vector<caf::error> results(3, make_error(errc::internal, "callback did not run"));
  {
    gate.close(*s);
    s->write_async({put_op(table::meta, "a", "1")}, [&](caf::error e) { results[0] = e; });
    s->write_async({put_op(table::meta, "b", "2"), put_op(table::meta, std::string(512, 'k'), "")},
                   [&](caf::error e) { results[1] = e; });
    s->write_async({put_op(table::meta, "c", "3")}, [&](caf::error e) { results[2] = e; });
    gate.open();
  }
  REQUIRE_OK(s->write({}));
  CHECK(!results[0]);
  CHECK(code_of(results[1]) == errc::invalid_argument);
  CHECK(!results[2]);
  CHECK(get(*s, table::meta, "a") == "1");
  CHECK(get(*s, table::meta, "b") == std::nullopt);
  CHECK(get(*s, table::meta, "c") == "3");
}

TEST_CASE("write called from a write callback fails instead of deadlocking") {
  temp_dir dir;
  auto s = open_store(small_lmdb(dir));
  std::promise<caf::error> inner;
  s->write_async({}, [&](caf::error) { inner.set_value(s->write({put_op(table::meta, "k", "v")})); });
  CHECK(code_of(inner.get_future().get()) == errc::internal);
  CHECK(get(*s, table::meta, "k") == std::nullopt);
}

TEST_CASE("durable mode answers every write, alone or in a stream, and keeps it across a reopen") {
  // sync on: each group is answered after the next commit or an explicit
  // sync made its meta page durable (see lmdb_store.cpp).
  temp_dir dir;
  auto opts = small_lmdb(dir);
  opts.sync = true;
  {
    auto s = open_store(opts);
    put(*s, table::meta, "alone", "1"); // nothing follows it: the explicit sync answers it
    CHECK(get(*s, table::meta, "alone") == "1");
    std::atomic<int> answered{0}, failed{0};
    write_from_threads(*s, 2, 300, answered, failed);
    for (int i = 0; i < 500 && answered < 600; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    CHECK(answered == 600); // the last group too, with nothing after it
    CHECK(failed == 0);
    REQUIRE_OK(s->write({})); // an empty group changes nothing and is answered
  }
  auto s = open_store(opts);
  CHECK(count_keys(*s, table::runs) == 600);
  CHECK(get(*s, table::meta, "alone") == "1");
}

TEST_CASE("the map grows when full and the data survives a reopen") {
  temp_dir dir;
  auto opts = small_lmdb(dir);
  auto key = [](uint32_t n) { return "entry/" + be32(n); };
  auto value = [](uint32_t n) { return "value-" + std::to_string(n); };
  constexpr uint32_t total = 200'000;
  {
    auto s = open_store(opts);
    for (uint32_t b = 0; b < total / 1000; ++b) {
      write_batch batch;
      for (uint32_t i = 0; i < 1000; ++i)
        batch.push_back(put_op(table::step_logs, key(b * 1000 + i), value(b * 1000 + i)));
      REQUIRE_OK(s->write(std::move(batch)));
    }
    auto st = s->stats();
    CHECK(st.map_resizes > 0);
    CHECK(st.map_size > opts.initial_map_size);
    uint32_t wrong = 0;
    for (uint32_t n = 0; n < total; ++n)
      if (get(*s, table::step_logs, key(n)) != value(n))
        ++wrong;
    CHECK(wrong == 0);
  }
  auto s = open_store(opts);
  CHECK(count_keys(*s, table::step_logs) == total);
  uint32_t wrong = 0;
  for (uint32_t n = 0; n < total; n += 997)
    if (get(*s, table::step_logs, key(n)) != value(n))
      ++wrong;
  CHECK(wrong == 0);
  put(*s, table::step_logs, "after reopen", std::string(1 << 20, 'x'));
  CHECK(get(*s, table::step_logs, "after reopen")->size() == (1u << 20));
}

TEST_CASE("readers keep seeing consistent data while the map grows") {
  temp_dir dir;
  auto s = open_store(small_lmdb(dir));
  write_batch seed;
  for (int i = 0; i < 100; ++i)
    seed.push_back(put_op(table::meta, "r/" + be32(static_cast<uint32_t>(i)), "v"));
  REQUIRE_OK(s->write(std::move(seed)));
  std::atomic<bool> done{false};
  std::atomic<int> errors{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t)
    readers.emplace_back([&] {
      while (!done) {
        size_t n = 0;
        auto err = s->scan(table::meta, "r/", "", false, [&](auto, std::string_view v) {
          n += v == "v";
          return true;
        });
        auto one = s->get(table::meta, "r/" + be32(50));
        if (err || n != 100 || !one || *one != "v")
          ++errors;
      }
    });
  for (uint32_t b = 0; b < 100; ++b) {
    write_batch batch;
    for (uint32_t i = 0; i < 1000; ++i)
      batch.push_back(put_op(table::step_logs, be32(b * 1000 + i), "some value"));
    auto err = s->write(std::move(batch));
    if (err) {
      done = true;
      for (auto& r : readers)
        r.join();
      FAIL(message_of(err));
    }
  }
  done = true;
  for (auto& r : readers)
    r.join();
  CHECK(errors == 0);
  CHECK(s->stats().map_resizes > 0);
}

TEST_CASE("closing the store commits every queued batch") {
  temp_dir dir;
  auto opts = small_lmdb(dir);
  std::atomic<int> committed{0};
  {
    auto s = open_store(opts);
    for (uint32_t i = 0; i < 100; ++i)
      s->write_async({put_op(table::runs, be32(i), "v")}, [&](caf::error e) {
        if (!e)
          ++committed;
      });
  }
  CHECK(committed == 100);
  auto s = open_store(opts);
  CHECK(count_keys(*s, table::runs) == 100);
}

TEST_CASE("a durable store syncs and reopens") {
  temp_dir dir;
  auto opts = small_lmdb(dir);
  opts.sync = true;
  {
    auto s = open_store(opts);
    put(*s, table::applications, "app", "{}");
  }
  auto s = open_store(opts);
  CHECK(get(*s, table::applications, "app") == "{}");
}
