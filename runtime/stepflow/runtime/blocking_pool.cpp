#include "stepflow/runtime/blocking_pool.hpp"
#include "stepflow/runtime/thread_name.hpp"

#include <algorithm>

namespace stepflow {

blocking_pool::blocking_pool(blocking_pool_options opts) : opts_(opts) {
  auto n = std::max<std::size_t>(1, opts_.threads);
  threads_.reserve(n);
  for (std::size_t i = 0; i < n; ++i)
    threads_.emplace_back([this, i] {
      name_this_thread("sf-blocking-" + std::to_string(i));
      work();
    });
}

blocking_pool::~blocking_pool() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_)
    t.join();
}

bool blocking_pool::post(std::function<void()> job) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (stopping_ || jobs_.size() >= opts_.max_queued)
      return false;
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
  return true;
}

void blocking_pool::work() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lock{mtx_};
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty())
        return; // stopping and drained
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    try {
      job();
    } catch (...) {
      // Contract: jobs report their own failures; nothing escapes a worker.
    }
  }
}

} // namespace stepflow
