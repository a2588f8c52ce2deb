#include "stepflow/actors/engine.hpp"

#include <condition_variable>
#include <map>
#include <mutex>

#include <caf/logger.hpp>

#include "stepflow/actors/run_protocol.hpp"

namespace stepflow::actors {

struct engine::impl {
  explicit impl(const engine_options& opts, step_services svc) : services(svc) {
    cfg.set("scheduler.max-threads", opts.scheduler_threads);
    cfg.set("scheduler.policy", opts.scheduler_policy == "stealing" ? caf::atom("stealing")
                                                                  : caf::atom("sharing"));
    cfg.set("logger.console", caf::atom("none"));
    sys = std::make_unique<caf::actor_system>(cfg);
  }

  step_services services;
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  mutable std::mutex mtx;
  std::condition_variable idle;
  std::map<std::string, run_supervisor_actor> runs;
};

engine::engine(engine_options opts, step_services services)
  : impl_(std::make_unique<impl>(opts, services)) {
}

engine::~engine() {
  {
    std::unique_lock<std::mutex> guard{impl_->mtx};
    impl_->idle.wait(guard, [this] { return impl_->runs.empty(); });
  }
  impl_->sys.reset();
}

void engine::start(run_plan plan, run_record rec, run_observer obs) {
  auto init = std::make_shared<run_init>();
  init->plan = std::move(plan);
  init->rec = std::move(rec);
  init->obs = std::move(obs);
  init->services = impl_->services;
  auto* self = impl_.get();
  auto id = init->rec.task_id;
  init->on_exit = [self](const std::string& task_id) {
    std::lock_guard<std::mutex> guard{self->mtx};
    self->runs.erase(task_id);
    if (self->runs.empty())
      self->idle.notify_all();
  };
  std::lock_guard<std::mutex> guard{impl_->mtx};
  auto sup = spawn_run_supervisor(*impl_->sys, std::move(init));
  // CAF 0.17's spawn stores a strong reference to the system's logger in a
  // thread-local of the calling thread, and ~actor_system waits until the
  // logger is destroyed. start() runs on threads CAF does not own (the
  // store's writer thread, the service's timer thread) that outlive the
  // engine, so without this the engine's destructor (and a graceful
  // `stepflow serve` shutdown) hangs forever after the first run.
  caf::logger::set_current_actor_system(nullptr);
  impl_->runs.emplace(id, sup);
}

bool engine::revoke(const std::string& task_id, bool terminate) {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  auto it = impl_->runs.find(task_id);
  if (it == impl_->runs.end())
    return false;
  caf::anon_send(it->second, revoke_atom::value, terminate);
  return true;
}

size_t engine::active_runs() const {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  return impl_->runs.size();
}

const step_services& engine::services() const noexcept {
  return impl_->services;
}

} // namespace stepflow::actors
