// open_lmdb_store: the kv_store on LMDB.
//
// - One environment, one named database per `table` (named by table_name).
//   MDB_NOTLS, so read transactions are not tied to threads.
// - Reads (get, scan) run in their own read-only transaction; scan callbacks
//   see one snapshot and get string_views into the map, valid only during the
//   call.
// - One writer thread owns every write transaction. write_async queues the
//   batch; the writer drains the whole queue, applies every queued batch in
//   one transaction and commits once (group commit), then hands the group to
//   a completion thread, which runs the callbacks in queue (= commit) order
//   while the writer commits the next group. A batch that fails is dropped and the group retried
//   without it, so it fails alone. write() is write_async + wait.
// - When the map fills up (MDB_MAP_FULL) the writer aborts, doubles the map
//   and retries. mdb_env_set_mapsize needs every transaction of the process
//   to be finished, so reads and the write transaction hold `map_lock_`
//   shared and the resize holds it exclusively. The lock prefers writers (a
//   steady stream of readers cannot starve a resize) and is not recursive, so
//   a read nested in a scan callback on the same thread reuses the lock the
//   scan holds.
// - Consequences for callers: a scan callback must not wait for a write to
//   commit (write() called there fails with errc::internal instead of
//   risking a deadlock; write_async is fine), and write() called from a write
//   callback (on the writer or completion thread) fails the same way.
// - Keys are 1..511 bytes (LMDB's MDB_MAXKEYSIZE); other keys given to get,
//   put or erase fail with errc::invalid_argument.
#include "stepflow/runtime/kv_store.hpp"
#include "stepflow/runtime/thread_name.hpp"

#include <lmdb.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <future>
#include <mutex>
#include <numeric>
#include <shared_mutex>
#include <system_error>
#include <thread>
#include <utility>

#include <fmt/format.h>

namespace stepflow::detail {
// Defined in kv_store.cpp.
inline constexpr size_t max_key_size = 511;
caf::error check_key(table t, std::string_view key);
caf::error check_op(const write_op& op);
} // namespace stepflow::detail

namespace stepflow {

namespace {

using detail::max_key_size;

caf::error mdb_error(std::string_view what, int rc) {
  return make_error(errc::store_error, fmt::format("{}: {}", what, mdb_strerror(rc)));
}

MDB_val to_val(std::string_view s) noexcept {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}

std::string_view to_view(const MDB_val& v) noexcept {
  return {static_cast<const char*>(v.mv_data), v.mv_size};
}


/// A writer-preferring, non-recursive shared lock (glibc rwlock); satisfies
/// SharedMutex for std::shared_lock / std::unique_lock.
class rw_lock {
public:
  rw_lock() noexcept {
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&lock_, &attr);
    pthread_rwlockattr_destroy(&attr);
  }
  ~rw_lock() { pthread_rwlock_destroy(&lock_); }
  rw_lock(const rw_lock&) = delete;
  rw_lock& operator=(const rw_lock&) = delete;
  void lock() noexcept { pthread_rwlock_wrlock(&lock_); }
  void unlock() noexcept { pthread_rwlock_unlock(&lock_); }
  void lock_shared() noexcept { pthread_rwlock_rdlock(&lock_); }
  void unlock_shared() noexcept { pthread_rwlock_unlock(&lock_); }

private:
  pthread_rwlock_t lock_;
};

/// Stores whose map lock this thread holds shared for a read (innermost
/// last); see read_scope.
thread_local std::vector<const void*> reading;

struct pending_write {
  write_batch batch;
  std::function<void(caf::error)> done;
};

/// A committed (or failed) group on its way to the completion thread.
struct finished_group {
  std::vector<pending_write> group;
  std::vector<caf::error> results;
};

class lmdb_store final : public kv_store {
public:
  lmdb_store(MDB_env* env, const std::array<MDB_dbi, table_count>& dbis,
             std::function<void()> before_commit)
    : env_(env), dbis_(dbis), before_commit_(std::move(before_commit)) {
    map_size_ = current_map_size();
    completer_ = std::thread([this] {
      name_this_thread("sf-store-done");
      run_completer();
    });
    try {
      writer_ = std::thread([this] {
        name_this_thread("sf-store");
        run_writer();
      });
    } catch (...) {
      {
        std::lock_guard lock(done_mutex_);
        writer_done_ = true;
      }
      done_cv_.notify_one();
      completer_.join();
      throw;
    }
  }

  ~lmdb_store() override {
    {
      std::lock_guard guard(queue_mutex_);
      stopping_ = true;
    }
    queue_cv_.notify_one();
    writer_.join(); // drains and commits everything queued
    completer_.join(); // then runs the last callbacks
    mdb_env_close(env_);
  }

  lmdb_store(const lmdb_store&) = delete;
  lmdb_store& operator=(const lmdb_store&) = delete;

  caf::expected<std::optional<std::string>> get(table t,
                                                std::string_view key) const override {
    if (auto err = detail::check_key(t, key))
      return err;
    read_scope r(*this);
    if (int rc = r.begin())
      return mdb_error("beginning a read transaction", rc);
    MDB_val k = to_val(key);
    MDB_val v;
    int rc = mdb_get(r.txn, dbi(t), &k, &v);
    if (rc == MDB_NOTFOUND)
      return std::optional<std::string>{};
    if (rc)
      return mdb_error(fmt::format("reading from table {}", table_name(t)), rc);
    return std::optional<std::string>{std::string{to_view(v)}};
  }

  caf::error scan(table t, std::string_view prefix, std::string_view from, bool reverse,
                  const scan_fn& f) const override {
    read_scope r(*this);
    if (int rc = r.begin())
      return mdb_error("beginning a read transaction", rc);
    MDB_cursor* cur = nullptr;
    if (int rc = mdb_cursor_open(r.txn, dbi(t), &cur))
      return mdb_error(fmt::format("opening a cursor on table {}", table_name(t)), rc);
    struct cursor_closer {
      MDB_cursor* c;
      ~cursor_closer() { mdb_cursor_close(c); }
    } closer{cur};
    MDB_val k;
    MDB_val v;
    int rc;
    if (!reverse) {
      rc = seek_first_at_or_after(cur, std::max(prefix, from), k, v);
    } else {
      auto succ = prefix_successor(prefix);
      if (succ && (from.empty() || from >= *succ))
        rc = seek_last_before(cur, *succ, false, k, v);
      else if (from.empty())
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
      else
        rc = seek_last_before(cur, from, true, k, v);
    }
    while (rc == 0) {
      auto key = to_view(k);
      if (!starts_with(key, prefix) || !f(key, to_view(v)))
        return {};
      rc = mdb_cursor_get(cur, &k, &v, reverse ? MDB_PREV : MDB_NEXT);
    }
    if (rc != MDB_NOTFOUND)
      return mdb_error(fmt::format("scanning table {}", table_name(t)), rc);
    return {};
  }

  caf::error write(write_batch batch) override {
    if (std::this_thread::get_id() == writer_.get_id()
        || std::this_thread::get_id() == completer_.get_id())
      return make_error(errc::internal,
                        "kv_store::write called from a write callback; use write_async");
    if (std::find(reading.begin(), reading.end(), this) != reading.end())
      return make_error(errc::internal,
                        "kv_store::write called inside a scan callback; use write_async");
    std::promise<caf::error> result;
    auto f = result.get_future();
    write_async(std::move(batch), [&result](caf::error err) { result.set_value(std::move(err)); });
    return f.get();
  }

  void write_async(write_batch batch, std::function<void(caf::error)> done) override {
    {
      std::lock_guard guard(queue_mutex_);
      queue_.push_back(pending_write{std::move(batch), std::move(done)});
    }
    queue_cv_.notify_one();
  }

  store_stats stats() const override {
    store_stats s;
    s.map_size = map_size_.load();
    s.commits = commits_.load();
    s.batches = batches_.load();
    s.map_resizes = map_resizes_.load();
    s.slow_commits = slow_commits_.load();
    s.commit_histogram = histogram_.counts();
    std::vector<uint32_t> recent;
    {
      std::lock_guard guard(timing_mutex_);
      recent.assign(commit_us_.begin(), commit_us_.begin() + static_cast<ptrdiff_t>(
                                                              std::min(commits_seen_, commit_us_.size())));
    }
    if (!recent.empty()) {
      auto at = [&](double q) {
        auto k = static_cast<size_t>(q * static_cast<double>(recent.size() - 1));
        std::nth_element(recent.begin(), recent.begin() + static_cast<ptrdiff_t>(k), recent.end());
        return static_cast<uint64_t>(recent[k]);
      };
      s.commit_us_p50 = at(0.50);
      s.commit_us_p99 = at(0.99);
      s.commit_us_max = *std::max_element(recent.begin(), recent.end());
    }
    return s;
  }

private:
  /// A read-only transaction under the shared map lock (reused when this
  /// thread already holds it for this store, i.e. inside a scan callback).
  struct read_scope {
    const lmdb_store& store;
    std::shared_lock<rw_lock> lock;
    MDB_txn* txn = nullptr;
    bool registered = false;

    explicit read_scope(const lmdb_store& s) : store(s), lock(s.map_lock_, std::defer_lock) {}

    ~read_scope() {
      if (txn)
        mdb_txn_abort(txn);
      if (registered)
        reading.pop_back();
    }

    int begin() {
      if (std::find(reading.begin(), reading.end(), &store) == reading.end()) {
        lock.lock();
        reading.push_back(&store);
        registered = true;
      }
      return store.begin_txn(lock, MDB_RDONLY, &txn);
    }
  };

  MDB_dbi dbi(table t) const noexcept { return dbis_[static_cast<size_t>(t)]; }

  uint64_t current_map_size() const noexcept {
    MDB_envinfo info;
    mdb_env_info(env_, &info);
    return info.me_mapsize;
  }

  /// mdb_txn_begin, adopting a map grown by another process
  /// (MDB_MAP_RESIZED) when `lock` is ours to release.
  int begin_txn(std::shared_lock<rw_lock>& lock, unsigned flags, MDB_txn** txn) const {
    for (;;) {
      int rc = mdb_txn_begin(env_, nullptr, flags, txn);
      if (rc != MDB_MAP_RESIZED || !lock.owns_lock())
        return rc;
      lock.unlock();
      {
        std::unique_lock exclusive(map_lock_);
        rc = mdb_env_set_mapsize(env_, 0);
        map_size_ = current_map_size();
      }
      lock.lock();
      if (rc)
        return rc;
    }
  }

  /// Positions at the first key >= `start`.
  static int seek_first_at_or_after(MDB_cursor* cur, std::string_view start, MDB_val& k,
                                    MDB_val& v) {
    if (start.empty())
      return mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    // MDB_SET_RANGE rejects keys longer than the maximum; every stored key
    // >= the truncated start is either >= start or equal to the truncation.
    k = to_val(start.substr(0, max_key_size));
    int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && to_view(k) < start)
      rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    return rc;
  }

  /// Positions at the last key <= `bound` (< `bound` unless `inclusive`).
  static int seek_last_before(MDB_cursor* cur, std::string_view bound, bool inclusive,
                              MDB_val& k, MDB_val& v) {
    if (bound.empty())
      return MDB_NOTFOUND; // no key is below the empty key
    k = to_val(bound.substr(0, max_key_size));
    int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (rc == MDB_NOTFOUND)
      return mdb_cursor_get(cur, &k, &v, MDB_LAST);
    auto beyond = [&] {
      auto key = to_view(k);
      return inclusive ? key > bound : key >= bound;
    };
    while (rc == 0 && beyond())
      rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    return rc;
  }

  // -- writer thread ----------------------------------------------------------

  void run_writer() {
    for (;;) {
      finished_group fin;
      {
        std::unique_lock lock(queue_mutex_);
        queue_cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (queue_.empty())
          break; // stopping and drained
        fin.group.swap(queue_);
      }
      if (before_commit_)
        before_commit_();
      fin.results.resize(fin.group.size());
      std::vector<size_t> idx(fin.group.size());
      std::iota(idx.begin(), idx.end(), size_t{0});
      commit_group(fin.group, std::move(idx), fin.results);
      // Callbacks run on the completion thread, so the next group can be
      // committed meanwhile.
      {
        std::lock_guard lock(done_mutex_);
        done_.push_back(std::move(fin));
      }
      done_cv_.notify_one();
    }
    {
      std::lock_guard lock(done_mutex_);
      writer_done_ = true;
    }
    done_cv_.notify_one();
  }

  void run_completer() {
    std::deque<finished_group> ready;
    for (;;) {
      {
        std::unique_lock lock(done_mutex_);
        done_cv_.wait(lock, [this] { return writer_done_ || !done_.empty(); });
        if (done_.empty())
          return; // the writer ended and everything was answered
        ready.swap(done_);
      }
      for (auto& fin : ready)
        for (size_t i = 0; i < fin.group.size(); ++i) {
          if (!fin.group[i].done)
            continue;
          try {
            fin.group[i].done(std::move(fin.results[i]));
          } catch (...) {
            // A throwing callback must not take the completion thread down.
          }
        }
      ready.clear();
    }
  }

  /// Commits the batches group[idx...] in one transaction, setting results
  /// of the batches that fail; splits the group when LMDB says it is too big
  /// for one transaction.
  void commit_group(std::vector<pending_write>& group, std::vector<size_t> idx,
                    std::vector<caf::error>& results) {
    auto fail_all = [&](const caf::error& err) {
      for (auto i : idx)
        results[i] = err;
    };
    constexpr size_t none = static_cast<size_t>(-1);
    while (!idx.empty()) {
      size_t failed = none;
      int failed_rc = 0;
      caf::error failed_err;
      int commit_rc = 0;
      {
        std::shared_lock lock(map_lock_);
        MDB_txn* txn = nullptr;
        if (int rc = begin_txn(lock, 0, &txn)) {
          fail_all(mdb_error("beginning a write transaction", rc));
          return;
        }
        for (size_t p = 0; p < idx.size() && failed == none; ++p) {
          if (auto err = apply(txn, group[idx[p]].batch, failed_rc)) {
            failed = p;
            failed_err = std::move(err);
          }
        }
        if (failed == none) {
          auto t0 = std::chrono::steady_clock::now();
          commit_rc = mdb_txn_commit(txn); // frees txn even on failure
          auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::steady_clock::now() - t0).count();
          if (us > 10'000)
            ++slow_commits_;
          histogram_.record(std::chrono::microseconds(us));
          std::lock_guard guard(timing_mutex_);
          commit_us_[commits_seen_++ % commit_us_.size()] =
            static_cast<uint32_t>(std::min<int64_t>(us, UINT32_MAX));
        } else
          mdb_txn_abort(txn);
      }
      if (failed == none) {
        if (commit_rc == 0) {
          ++commits_;
          batches_ += idx.size();
          return;
        }
        if (commit_rc == MDB_MAP_FULL) {
          if (auto err = grow()) {
            fail_all(err);
            return;
          }
          continue;
        }
        fail_all(mdb_error("committing a write transaction", commit_rc));
        return;
      }
      if (failed_rc == MDB_MAP_FULL) {
        auto err = grow();
        if (!err)
          continue; // retry the whole group in the bigger map
        failed_err = std::move(err);
      } else if (failed_rc == MDB_TXN_FULL && failed > 0) {
        // Too many dirty pages for one transaction: commit the batches before
        // the failing one, then the rest.
        std::vector<size_t> tail(idx.begin() + static_cast<ptrdiff_t>(failed), idx.end());
        idx.resize(failed);
        commit_group(group, std::move(idx), results);
        commit_group(group, std::move(tail), results);
        return;
      }
      results[idx[failed]] = std::move(failed_err);
      idx.erase(idx.begin() + static_cast<ptrdiff_t>(failed));
    }
  }

  /// Applies `batch` inside `txn`. On failure returns the error and sets
  /// `rc` to the LMDB code (0 for an invalid operation).
  caf::error apply(MDB_txn* txn, const write_batch& batch, int& rc) const {
    rc = 0;
    for (const auto& op : batch) {
      if (auto err = detail::check_op(op))
        return err;
      auto name = table_name(op.tbl);
      MDB_dbi d = dbi(op.tbl);
      switch (op.kind) {
        case write_op::put: {
          MDB_val k = to_val(op.key);
          MDB_val v = to_val(op.value);
          rc = mdb_put(txn, d, &k, &v, 0);
          if (rc)
            return mdb_error(fmt::format("writing to table {}", name), rc);
          break;
        }
        case write_op::erase: {
          MDB_val k = to_val(op.key);
          rc = mdb_del(txn, d, &k, nullptr);
          if (rc == MDB_NOTFOUND)
            rc = 0;
          if (rc)
            return mdb_error(fmt::format("erasing from table {}", name), rc);
          break;
        }
        case write_op::erase_prefix:
          rc = erase_prefix(txn, d, op.key);
          if (rc)
            return mdb_error(fmt::format("erasing a prefix from table {}", name), rc);
          break;
      }
    }
    return {};
  }

  static int erase_prefix(MDB_txn* txn, MDB_dbi d, std::string_view prefix) {
    if (prefix.empty())
      return mdb_drop(txn, d, 0); // empties the database, keeps the handle
    if (prefix.size() > max_key_size)
      return 0; // no stored key is that long
    MDB_cursor* cur = nullptr;
    if (int rc = mdb_cursor_open(txn, d, &cur))
      return rc;
    int rc = 0;
    for (;;) {
      // Re-seek after every delete rather than relying on where
      // mdb_cursor_del leaves the cursor.
      MDB_val k = to_val(prefix);
      MDB_val v;
      rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
      if (rc == MDB_NOTFOUND) {
        rc = 0;
        break;
      }
      if (rc || !starts_with(to_view(k), prefix))
        break;
      if ((rc = mdb_cursor_del(cur, 0)))
        break;
    }
    mdb_cursor_close(cur);
    return rc;
  }

  /// Doubles the map; no transaction may be open in this process meanwhile.
  caf::error grow() {
    std::unique_lock exclusive(map_lock_);
    uint64_t next = current_map_size() * 2;
    if (int rc = mdb_env_set_mapsize(env_, next))
      return mdb_error(fmt::format("growing the LMDB map to {} bytes", next), rc);
    map_size_ = current_map_size();
    ++map_resizes_;
    return {};
  }

  MDB_env* env_;
  std::array<MDB_dbi, table_count> dbis_;
  std::function<void()> before_commit_;
  mutable rw_lock map_lock_;

  std::mutex queue_mutex_;
  std::condition_variable queue_cv_;
  std::vector<pending_write> queue_;
  bool stopping_ = false;
  std::mutex done_mutex_;
  std::condition_variable done_cv_;
  std::deque<finished_group> done_; ///< committed groups whose callbacks are due
  bool writer_done_ = false;
  std::thread completer_; ///< runs the callbacks, in commit order
  std::thread writer_;

  mutable std::atomic<uint64_t> map_size_{0};
  std::atomic<uint64_t> commits_{0};
  std::atomic<uint64_t> slow_commits_{0};
  duration_histogram histogram_; ///< every commit since start
  mutable std::mutex timing_mutex_;
  std::array<uint32_t, store_stats::commit_window> commit_us_{}; ///< ring of commit times
  size_t commits_seen_ = 0;
  std::atomic<uint64_t> batches_{0};
  std::atomic<uint64_t> map_resizes_{0};
};

} // namespace

caf::expected<std::unique_ptr<kv_store>> open_lmdb_store(const store_options& opts) {
  if (opts.path.empty())
    return make_error(errc::invalid_argument, "the store path is empty");
  std::error_code ec;
  std::filesystem::create_directories(opts.path, ec);
  if (ec)
    return make_error(errc::store_error, fmt::format("creating store directory {}: {}",
                                                     opts.path, ec.message()));
  MDB_env* env = nullptr;
  if (int rc = mdb_env_create(&env))
    return mdb_error("creating the LMDB environment", rc);
  struct env_guard {
    MDB_env* env;
    ~env_guard() {
      if (env)
        mdb_env_close(env);
    }
  } guard{env};
  // The map size should be a multiple of the page size; LMDB raises it to
  // fit existing data when the file is bigger.
  uint64_t page = static_cast<uint64_t>(std::max(4096L, sysconf(_SC_PAGESIZE)));
  uint64_t map_size = std::max(opts.initial_map_size, 16 * page);
  map_size = (map_size + page - 1) / page * page;
  if (int rc = mdb_env_set_mapsize(env, map_size))
    return mdb_error("setting the LMDB map size", rc);
  if (int rc = mdb_env_set_maxdbs(env, table_count))
    return mdb_error("setting the LMDB database count", rc);
  // Readers are short-lived, but with MDB_NOTLS each concurrent read takes
  // a slot; the default (126) is low for a busy actor system.
  if (int rc = mdb_env_set_maxreaders(env, 510))
    return mdb_error("setting the LMDB reader count", rc);
  unsigned flags = MDB_NOTLS | (opts.sync ? 0u : static_cast<unsigned>(MDB_NOSYNC));
  if (int rc = mdb_env_open(env, opts.path.c_str(), flags, 0600))
    return mdb_error(fmt::format("opening the LMDB store in {}", opts.path), rc);
  int dead = 0;
  mdb_reader_check(env, &dead); // clears slots of crashed processes
  std::array<MDB_dbi, table_count> dbis{};
  {
    MDB_txn* txn = nullptr;
    if (int rc = mdb_txn_begin(env, nullptr, 0, &txn))
      return mdb_error("beginning the set-up transaction", rc);
    for (int i = 0; i < table_count; ++i) {
      std::string name{table_name(static_cast<table>(i))};
      if (int rc = mdb_dbi_open(txn, name.c_str(), MDB_CREATE, &dbis[static_cast<size_t>(i)])) {
        mdb_txn_abort(txn);
        return mdb_error(fmt::format("opening table {}", name), rc);
      }
    }
    if (int rc = mdb_txn_commit(txn))
      return mdb_error("committing the set-up transaction", rc);
  }
  try {
    auto store = std::make_unique<lmdb_store>(env, dbis, opts.before_commit);
    guard.env = nullptr; // owned by the store now
    return std::unique_ptr<kv_store>{std::move(store)};
  } catch (const std::exception& e) {
    return make_error(errc::store_error,
                      fmt::format("starting the store's writer thread: {}", e.what()));
  }
}

} // namespace stepflow
