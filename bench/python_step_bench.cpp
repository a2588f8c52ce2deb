// bench=python_step: PowerFlow Python steps through warm Python hosts (the
// external-process protocol), without the actor engine: what one step costs
// on top of the step's own work.
// Flags: --tasks N (default 5000), --concurrency P (host processes, default
// 2), --inflight K (default 16), --step Class (default DummyStep2 of the test
// SyncPack; it joins one input and saves it).
// Prints: bench=python_step tasks=... concurrency=... tasks_per_s=...
//   p50_ms=... p99_ms=... first_task_ms=... wall_s=...
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "stepflow/runtime/json.hpp"
#include "stepflow/runtime/process_pool.hpp"

using namespace stepflow;
using clock_type = std::chrono::steady_clock;

int main(int argc, char** argv) {
  long tasks = 5000, concurrency = 2, inflight = 16;
  std::string step = "DummyStep2";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--tasks") tasks = std::atol(v.c_str());
    else if (k == "--concurrency") concurrency = std::atol(v.c_str());
    else if (k == "--inflight") inflight = std::atol(v.c_str());
    else if (k == "--step") step = v;
    else { std::fprintf(stderr, "unknown option %s\n", k.c_str()); return 2; }
  }
  std::string src = STEPFLOW_SOURCE_DIR;
  process_spec spec;
  spec.name = step;
  spec.argv = {"/usr/bin/python3", src + "/connectors/python/stepflow_step_host.py", "--step-file",
               src + "/tests/python/fixtures/stepflow_test_syncpack/steps/" + step + ".py"};
  spec.concurrency = static_cast<std::size_t>(concurrency);
  process_pool pool;
  auto group = pool.add_group(spec);

  std::mutex mtx;
  std::condition_variable cv;
  long started = 0, finished = 0, failed = 0;
  std::vector<double> latencies_ms;
  latencies_ms.reserve(static_cast<std::size_t>(tasks));
  double first_ms = 0;
  auto t0 = clock_type::now();
  auto submit_one = [&](long i) {
    process_task t;
    t.id = fmt::format("bench:{}", i);
    t.request = fmt::format(
      R"({{"type":"run","protocol":1,"id":"{}","run_id":"bench","application":"bench",)"
      R"("step":{{"name":"S","file":"{}","syncpack":"stepflow_test_syncpack"}},"params":{{}},)"
      R"("inputs":[{{"name":"Prev","data":{{"device_id":{},"name":"dev"}}}}],)"
      R"("app_variables":{{}},"configuration":{{}},"log_level":20}})",
      t.id, step, i);
    auto begin = clock_type::now();
    t.done = [&, begin](caf::expected<json::object> r) {
      double ms = std::chrono::duration<double, std::milli>(clock_type::now() - begin).count();
      std::lock_guard<std::mutex> guard{mtx};
      if (!r || !r->at("ok").as_bool())
        ++failed;
      if (finished == 0)
        first_ms = ms;
      latencies_ms.push_back(ms);
      ++finished;
      cv.notify_all();
    };
    pool.submit(group, std::move(t));
  };
  {
    std::unique_lock<std::mutex> lock{mtx};
    while (finished < tasks) {
      while (started < tasks && started - finished < inflight) {
        auto i = started++;
        lock.unlock();
        submit_one(i);
        lock.lock();
      }
      cv.wait_for(lock, std::chrono::seconds(60));
      if (clock_type::now() - t0 > std::chrono::minutes(5))
        break; // bounded in time as well as in count
    }
  }
  double wall = std::chrono::duration<double>(clock_type::now() - t0).count();
  std::sort(latencies_ms.begin(), latencies_ms.end());
  auto pct = [&](double p) {
    return latencies_ms.empty() ? 0.0
                                : latencies_ms[std::min(latencies_ms.size() - 1,
                                                        static_cast<std::size_t>(p * latencies_ms.size()))];
  };
  std::printf("bench=python_step tasks=%ld failed=%ld concurrency=%ld inflight=%ld tasks_per_s=%.0f "
              "p50_ms=%.2f p99_ms=%.2f first_task_ms=%.1f wall_s=%.2f\n",
              finished, failed, concurrency, inflight, finished / wall, pct(0.5), pct(0.99), first_ms,
              wall);
  return failed ? 1 : 0;
}
