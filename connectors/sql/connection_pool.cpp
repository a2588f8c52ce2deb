#include "sql/connection_pool.hpp"
#include "stepflow/runtime/thread_name.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace stepflow::connectors::sql {

connection_pool::connection_pool(pool_options opts,
                                 std::vector<std::unique_ptr<sql_backend>> backends)
  : opts_(opts), backends_(std::move(backends)) {
  opts_.pool_size = std::max<std::size_t>(1, opts_.pool_size);
  reaper_ = std::thread([this] {
    name_this_thread("sf-sql-reaper");
    reap();
  });
}

connection_pool::~connection_pool() {
  std::vector<slot> doomed;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    stopping_ = true;
    for (auto& [key, pt] : targets_)
      for (auto& s : pt.idle)
        doomed.push_back(std::move(s));
    targets_.clear();
  }
  reaper_cv_.notify_all();
  freed_.notify_all();
  if (reaper_.joinable())
    reaper_.join();
  for (auto& s : doomed)
    s.conn->close();
}

connection_pool::lease::lease(lease&& other) noexcept
  : pool_(other.pool_),
    key_(std::move(other.key_)),
    conn_(std::move(other.conn_)),
    reused_(other.reused_),
    discard_(other.discard_) {
  other.pool_ = nullptr;
}

connection_pool::lease& connection_pool::lease::operator=(lease&& other) noexcept {
  if (this != &other) {
    if (pool_ && conn_)
      pool_->release(key_, std::move(conn_), !discard_);
    pool_ = other.pool_;
    key_ = std::move(other.key_);
    conn_ = std::move(other.conn_);
    reused_ = other.reused_;
    discard_ = other.discard_;
    other.pool_ = nullptr;
  }
  return *this;
}

connection_pool::lease::~lease() {
  if (pool_ && conn_)
    pool_->release(key_, std::move(conn_), !discard_);
}

caf::expected<connection_pool::lease> connection_pool::acquire(const target& t,
                                                               const query_control& ctl) {
  auto idx = static_cast<std::size_t>(t.driver);
  if (idx >= backends_.size() || !backends_[idx])
    return make_error(errc::unavailable,
                      fmt::format("{}: this driver is not available", driver_label(t.driver)));
  auto key = t.pool_key();
  std::vector<std::unique_ptr<sql_connection>> dead;
  auto close_dead = [&] {
    for (auto& c : dead)
      c->close();
    dead.clear();
  };
  for (;;) {
    std::unique_lock<std::mutex> lock{mtx_};
    if (stopping_)
      return make_error(errc::unavailable, "the SQL connector is shutting down");
    auto& pt = targets_[key];
    // Reuse the most recently used idle connection that is still alive.
    while (!pt.idle.empty()) {
      auto conn = std::move(pt.idle.back().conn);
      pt.idle.pop_back();
      if (conn->usable() && conn->alive()) {
        lock.unlock();
        close_dead();
        lease l;
        l.pool_ = this;
        l.key_ = key;
        l.conn_ = std::move(conn);
        l.reused_ = true;
        return l;
      }
      --pt.open;
      dead.push_back(std::move(conn));
    }
    if (pt.open < opts_.pool_size) {
      ++pt.open;
      ++pt.opened_total;
      lock.unlock();
      close_dead();
      auto opened = backends_[idx]->open(t, ctl);
      if (!opened) {
        std::lock_guard<std::mutex> guard{mtx_};
        auto it = targets_.find(key);
        if (it != targets_.end())
          --it->second.open;
        freed_.notify_one();
        return std::move(opened.error());
      }
      lease l;
      l.pool_ = this;
      l.key_ = key;
      l.conn_ = std::move(*opened);
      return l;
    }
    // Full: wait for a release, in slices so cancellation is seen.
    if (auto err = ctl.check(fmt::format("waiting for a free {} connection (pool_size {})",
                                         driver_label(t.driver), opts_.pool_size)))
      return err;
    freed_.wait_for(lock, std::min<std::chrono::milliseconds>(ctl.remaining(),
                                                              std::chrono::milliseconds(100)));
    lock.unlock();
    close_dead();
  }
}

void connection_pool::release(const std::string& key, std::unique_ptr<sql_connection> conn,
                              bool keep) {
  keep = keep && conn->usable();
  {
    std::lock_guard<std::mutex> guard{mtx_};
    auto it = targets_.find(key);
    if (it != targets_.end()) {
      if (keep && !stopping_) {
        it->second.idle.push_back(slot{std::move(conn), std::chrono::steady_clock::now()});
      } else {
        --it->second.open;
      }
    }
  }
  freed_.notify_one();
  if (conn)
    conn->close();
}

connection_pool::counts connection_pool::stats(const target& t) const {
  std::lock_guard<std::mutex> guard{mtx_};
  auto it = targets_.find(t.pool_key());
  if (it == targets_.end())
    return {};
  return {it->second.open, it->second.idle.size(), it->second.opened_total};
}

void connection_pool::reap() {
  auto period = std::clamp<std::chrono::milliseconds>(opts_.idle_timeout / 4,
                                                      std::chrono::milliseconds(50),
                                                      std::chrono::milliseconds(5'000));
  std::unique_lock<std::mutex> lock{mtx_};
  while (!stopping_) {
    reaper_cv_.wait_for(lock, period);
    if (stopping_)
      break;
    auto now = std::chrono::steady_clock::now();
    std::vector<std::unique_ptr<sql_connection>> expired;
    for (auto& [key, pt] : targets_) {
      auto keep_end = std::stable_partition(pt.idle.begin(), pt.idle.end(), [&](const slot& s) {
        return now - s.idle_since < opts_.idle_timeout;
      });
      for (auto it = keep_end; it != pt.idle.end(); ++it) {
        expired.push_back(std::move(it->conn));
        --pt.open;
      }
      pt.idle.erase(keep_end, pt.idle.end());
    }
    if (expired.empty())
      continue;
    lock.unlock();
    freed_.notify_all();
    for (auto& c : expired)
      c->close();
    lock.lock();
  }
}

// -- statement_watchdog --------------------------------------------------------

namespace {
/// How long past its deadline a statement may run before the watchdog
/// interrupts it (the libraries' own timeouts normally end it first).
constexpr auto overrun_grace = std::chrono::seconds(2);
} // namespace

statement_watchdog::statement_watchdog() : thread_([this] { loop(); }) {}

statement_watchdog::~statement_watchdog() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

statement_watchdog::guard statement_watchdog::watch(const query_control* ctl,
                                                    sql_connection* conn) {
  std::lock_guard<std::mutex> lock{mtx_};
  auto id = next_++;
  watched_.emplace(id, entry{ctl, conn, false, false});
  cv_.notify_all();
  return guard{this, id};
}

statement_watchdog::guard::~guard() {
  if (!w_)
    return;
  // Once erased (after any interrupt() in progress), the watchdog never
  // touches the connection again.
  std::unique_lock<std::mutex> lock{w_->mtx_};
  w_->cv_.wait(lock, [&] {
    auto it = w_->watched_.find(id_);
    return it == w_->watched_.end() || !it->second.interrupting;
  });
  w_->watched_.erase(id_);
}

std::size_t statement_watchdog::interrupted() const {
  std::lock_guard<std::mutex> lock{mtx_};
  return interrupted_;
}

void statement_watchdog::loop() {
  std::unique_lock<std::mutex> lock{mtx_};
  while (!stopping_) {
    if (watched_.empty())
      cv_.wait(lock, [this] { return stopping_ || !watched_.empty(); });
    else
      cv_.wait_for(lock, std::chrono::milliseconds(100));
    if (stopping_)
      break;
    auto now = std::chrono::steady_clock::now();
    std::vector<uint64_t> due;
    for (auto& [id, e] : watched_) {
      if (e.done)
        continue;
      bool overdue = e.ctl->deadline != std::chrono::steady_clock::time_point::max()
                     && now > e.ctl->deadline + overrun_grace;
      if (e.ctl->is_cancelled() || overdue) {
        e.done = true;
        e.interrupting = true;
        due.push_back(id);
      }
    }
    for (auto id : due) {
      auto* conn = watched_.at(id).conn;
      ++interrupted_;
      // Outside the lock (MySQL's interrupt opens a side connection); the
      // guard's destructor waits for it, so the connection stays alive.
      lock.unlock();
      conn->interrupt();
      lock.lock();
      watched_.at(id).interrupting = false;
      cv_.notify_all();
    }
  }
}

} // namespace stepflow::connectors::sql
