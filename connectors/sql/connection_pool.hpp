#pragma once
// Bounded pools of open connections, one per distinct target (driver,
// address, database and credentials). Connections are reused across runs;
// one that broke is discarded and the next acquire opens a fresh one; idle
// ones are closed after idle_timeout. Every member blocks only on a
// blocking_pool thread; acquire() waits (bounded by the caller's
// query_control) when the target already has pool_size connections in use.
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "sql/sql_backend.hpp"

namespace stepflow::connectors::sql {

struct pool_options {
  /// Most open connections per target (>= 1). Default: 4.
  std::size_t pool_size = 4;
  /// Idle connections older than this are closed. Default: 300 s.
  std::chrono::milliseconds idle_timeout{300'000};
};

class connection_pool {
public:
  /// `backends` indexed by driver_kind; a null entry makes that driver
  /// unavailable.
  connection_pool(pool_options opts, std::vector<std::unique_ptr<sql_backend>> backends);
  /// Stops the reaper and closes every idle connection. Leases must be gone.
  ~connection_pool();
  connection_pool(const connection_pool&) = delete;
  connection_pool& operator=(const connection_pool&) = delete;

  class lease {
  public:
    lease() = default;
    lease(lease&& other) noexcept;
    lease& operator=(lease&& other) noexcept;
    /// Returns the connection (kept when still usable, else closed).
    ~lease();
    sql_connection* operator->() const noexcept { return conn_.get(); }
    sql_connection& operator*() const noexcept { return *conn_; }
    /// True when the connection came from the idle list (opened by an earlier run).
    bool reused() const noexcept { return reused_; }
    /// Closes the connection instead of returning it.
    void discard() noexcept { discard_ = true; }

  private:
    friend class connection_pool;
    connection_pool* pool_ = nullptr;
    std::string key_;
    std::unique_ptr<sql_connection> conn_;
    bool reused_ = false;
    bool discard_ = false;
  };

  /// An idle connection to `t` that is still alive, else a new one; waits
  /// while pool_size connections to `t` are in use.
  caf::expected<lease> acquire(const target& t, const query_control& ctl);

  struct counts {
    std::size_t open = 0; ///< in use + idle
    std::size_t idle = 0;
    std::size_t opened_total = 0; ///< connections ever opened for the target
  };
  /// For tests and logs.
  counts stats(const target& t) const;

private:
  struct slot {
    std::unique_ptr<sql_connection> conn;
    std::chrono::steady_clock::time_point idle_since;
  };
  struct per_target {
    std::size_t open = 0;
    std::size_t opened_total = 0;
    std::vector<slot> idle; // most recently used last
  };

  void release(const std::string& key, std::unique_ptr<sql_connection> conn, bool keep);
  void reap();

  pool_options opts_;
  std::vector<std::unique_ptr<sql_backend>> backends_;
  mutable std::mutex mtx_;
  std::condition_variable freed_;
  std::condition_variable reaper_cv_;
  std::map<std::string, per_target> targets_;
  bool stopping_ = false;
  std::thread reaper_;
};

/// One thread that interrupts statements whose step was cancelled (or that
/// overran their deadline by more than a grace period the library timeout
/// should have covered), so a blocked pool thread is released.
class statement_watchdog {
public:
  statement_watchdog();
  ~statement_watchdog();
  statement_watchdog(const statement_watchdog&) = delete;
  statement_watchdog& operator=(const statement_watchdog&) = delete;

  /// Watches `conn` under `ctl` until the returned guard is destroyed.
  class guard {
  public:
    guard(statement_watchdog* w, uint64_t id) : w_(w), id_(id) {}
    guard(guard&& other) noexcept : w_(std::exchange(other.w_, nullptr)), id_(other.id_) {}
    guard& operator=(guard&&) = delete;
    ~guard();

  private:
    statement_watchdog* w_;
    uint64_t id_;
  };

  guard watch(const query_control* ctl, sql_connection* conn);

  /// Statements interrupted so far (for tests and logs).
  std::size_t interrupted() const;

private:
  struct entry {
    const query_control* ctl;
    sql_connection* conn;
    bool done;         ///< interrupted once already
    bool interrupting; ///< interrupt() running now (outside the lock)
  };
  void loop();

  mutable std::mutex mtx_;
  std::condition_variable cv_;
  std::map<uint64_t, entry> watched_;
  uint64_t next_ = 1;
  std::size_t interrupted_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

} // namespace stepflow::connectors::sql
