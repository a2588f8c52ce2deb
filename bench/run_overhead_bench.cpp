// bench=run_overhead: end-to-end cost of running an application in process.
// Cases (flags): --runs N (default 20000), --steps S (default 10, a chain of
// StaticData steps), --inflight K (default 256 runs at once), --store
// memory|lmdb (default lmdb: every step record committed with group commit),
// --sync 0|1 (fsync per commit for lmdb, default 1).
// Prints one line: bench=run_overhead runs=... steps=... store=... runs_per_s=...
//   steps_per_s=... per_step_us=... wall_s=...
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <string>

#include <fmt/format.h>

#include "stepflow/actors/engine.hpp"
#include "stepflow/connectors/registry.hpp"
#include "stepflow/runtime/cache.hpp"
#include "stepflow/runtime/clock.hpp"
#include "stepflow/runtime/kv_store.hpp"

using namespace stepflow;

int main(int argc, char** argv) {
  long runs = 20000, steps = 10, inflight = 256;
  std::string store_kind = "lmdb";
  bool sync = true;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--runs") runs = std::atol(v.c_str());
    else if (k == "--steps") steps = std::atol(v.c_str());
    else if (k == "--inflight") inflight = std::atol(v.c_str());
    else if (k == "--store") store_kind = v;
    else if (k == "--sync") sync = v != "0";
    else { std::fprintf(stderr, "unknown option %s\n", k.c_str()); return 2; }
  }
  step_registry registry;
  if (auto err = connectors::register_all(registry)) return 2;
  json::array step_list;
  for (long s = 0; s < steps; ++s) {
    json::object st{{"name", fmt::format("s{}", s)}, {"file", "StaticData"}, {"data", json::object{{"i", s}}}};
    if (s + 1 < steps) st["output_to"] = json::array{json::string(fmt::format("s{}", s + 1))};
    step_list.push_back(std::move(st));
  }
  auto app = parse_application(json::object{{"name", "bench"}, {"steps", std::move(step_list)}}, "bench", "bench");
  if (!app) { std::fprintf(stderr, "%s\n", message_of(app.error()).c_str()); return 2; }
  auto app_ptr = std::make_shared<const application>(std::move(*app));

  std::unique_ptr<kv_store> store;
  std::string dir;
  if (store_kind == "memory") {
    store = make_memory_store();
  } else {
    char tmpl[] = "/tmp/stepflow-bench-XXXXXX";
    dir = mkdtemp(tmpl);
    store_options so; so.path = dir; so.sync = sync;
    auto s = open_lmdb_store(so);
    if (!s) { std::fprintf(stderr, "%s\n", message_of(s.error()).c_str()); return 2; }
    store = std::move(*s);
  }
  cache c{*store, system_clock()};
  step_services svc{store.get(), &c, nullptr, &system_clock()};
  std::mutex mtx;
  std::condition_variable cv;
  long done = 0, failed = 0, in_flight = 0;
  auto t0 = std::chrono::steady_clock::now();
  {
    actors::engine eng{actors::engine_options{}, svc};
    actors::run_observer obs;
    obs.on_done = [&](const run_record& r) {
      std::lock_guard<std::mutex> g{mtx};
      ++done; --in_flight;
      if (r.status != run_status::success) ++failed;
      cv.notify_all();
    };
    for (long i = 0; i < runs; ++i) {
      {
        std::unique_lock<std::mutex> g{mtx};
        cv.wait(g, [&] { return in_flight < inflight; });
        ++in_flight;
      }
      auto plan = prepare_run(app_ptr, nullptr, {}, -1, registry);
      run_record rec;
      rec.task_id = new_task_id();
      rec.created_ns = system_clock().now_ns();
      eng.start(std::move(*plan), std::move(rec), obs);
    }
    std::unique_lock<std::mutex> g{mtx};
    cv.wait_for(g, std::chrono::minutes(5), [&] { return done == runs; });
  }
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto st = store->stats();
  std::printf("bench=run_overhead runs=%ld steps=%ld store=%s sync=%d inflight=%ld failed=%ld "
              "runs_per_s=%.0f steps_per_s=%.0f per_step_us=%.2f commits=%llu batches=%llu wall_s=%.2f\n",
              done, steps, store_kind.c_str(), sync ? 1 : 0, inflight, failed, done / wall,
              done * steps / wall, wall * 1e6 / (double(done) * steps),
              (unsigned long long) st.commits, (unsigned long long) st.batches, wall);
  store.reset();
  if (!dir.empty()) std::filesystem::remove_all(dir);
  return failed ? 1 : 0;
}
