#pragma once
// A small pool of threads for libraries that block (libmariadb, libpq,
// SQLite, ODBC, libssh). Steps post jobs here and report back through their
// completion callback, so no CAF scheduler thread ever waits on I/O.
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace stepflow {

struct blocking_pool_options {
  /// Threads in the pool (>= 1). Default: 8.
  std::size_t threads = 8;
  /// Most jobs waiting; post() refuses more (returns false). Default: 100,000.
  std::size_t max_queued = 100'000;
};

class blocking_pool {
public:
  explicit blocking_pool(blocking_pool_options opts = {});
  /// Runs the jobs already queued, then joins the threads.
  ~blocking_pool();
  blocking_pool(const blocking_pool&) = delete;
  blocking_pool& operator=(const blocking_pool&) = delete;

  /// Queues `job`; false (job dropped) when the queue is full or the pool
  /// is stopping. Jobs must not throw (an exception is swallowed).
  bool post(std::function<void()> job);

  std::size_t threads() const noexcept { return threads_.size(); }

private:
  void work();

  blocking_pool_options opts_;
  std::mutex mtx_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

} // namespace stepflow
