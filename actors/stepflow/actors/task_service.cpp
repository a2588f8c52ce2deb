#include "stepflow/actors/task_service.hpp"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>
#include <unordered_map>
#include <unordered_set>
#include <thread>

#include <fmt/format.h>

#include "stepflow/runtime/clock.hpp"
#include "stepflow/runtime/thread_name.hpp"

namespace stepflow::actors {

namespace {

int64_t now_ns() {
  return system_clock().now_ns();
}

bool terminal(run_status s) {
  return s == run_status::success || s == run_status::failed || s == run_status::revoked;
}

/// One run waiting for, or holding, a worker of its queue.
struct ticket {
  std::string task_id;
  std::string application;
  std::string queue;
  int priority = 0;
  uint64_t seq = 0;
  std::string key; ///< its entry in table::queue
  bool child = false; ///< started by another run: not held by the worker limit
  /// Prepared at submission; null after recovery and while the run waits
  /// for a worker (then loaded and prepared at start, so a long queue costs
  /// little memory).
  std::shared_ptr<run_plan> plan;
  std::shared_ptr<run_record> rec;
  /// Its application exists only in `plan` (POST /steps/run): keep the plan.
  bool adhoc = false;
};

/// Highest priority first, then in arrival order; (priority, seq) is unique.
struct ticket_order {
  bool operator()(const ticket* a, const ticket* b) const {
    if (a->priority != b->priority)
      return a->priority > b->priority;
    return a->seq < b->seq;
  }
};

std::string queue_key(const std::string& queue, int priority, uint64_t seq) {
  std::string k = queue;
  k.push_back('\0');
  k += be32(static_cast<uint32_t>(255 - std::clamp(priority, 0, 255)));
  k += be64(seq);
  return k;
}

/// A thread that runs callbacks at deadlines (for ?wait=).
class timer_thread {
public:
  timer_thread()
    : thread_([this] {
        name_this_thread("sf-timers");
        loop();
      }) {}
  ~timer_thread() {
    {
      std::lock_guard<std::mutex> g{mtx_};
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  uint64_t schedule(std::chrono::steady_clock::time_point at, std::function<void()> fn) {
    std::lock_guard<std::mutex> g{mtx_};
    auto id = ++next_;
    timers_.emplace(std::make_pair(at, id), std::move(fn));
    cv_.notify_all();
    return id;
  }

private:
  void loop() {
    std::unique_lock<std::mutex> g{mtx_};
    while (!stop_) {
      if (timers_.empty()) {
        cv_.wait(g);
        continue;
      }
      auto first = timers_.begin();
      if (first->first.first > std::chrono::steady_clock::now()) {
        cv_.wait_until(g, first->first.first);
        continue;
      }
      auto fn = std::move(first->second);
      timers_.erase(first);
      g.unlock();
      try {
        fn();
      } catch (...) {
      }
      g.lock();
    }
  }
  std::mutex mtx_;
  std::condition_variable cv_;
  std::map<std::pair<std::chrono::steady_clock::time_point, uint64_t>, std::function<void()>>
    timers_;
  uint64_t next_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

struct waiter {
  uint64_t id = 0;
  std::function<void(std::optional<run_record>)> done;
};

struct queue_state {
  /// Tickets owned by task_service::impl::pending, in start order.
  std::set<const ticket*, ticket_order> waiting;
  size_t running = 0;
};

} // namespace

struct task_service::impl {
  impl(task_service_options o, kv_store& s, engine& e, const step_registry& r, config_transform d)
    : opts(std::move(o)), store(s), eng(e), registry(r), decrypt(std::move(d)), cstore(s),
      rstore(s) {
    seq = static_cast<uint64_t>(now_ns());
  }

  task_service_options opts;
  kv_store& store;
  engine& eng;
  const step_registry& registry;
  config_transform decrypt;
  content_store cstore;
  run_store rstore;

  mutable std::mutex content_mtx;
  std::map<std::string, std::shared_ptr<const application>> apps;
  std::map<std::string, std::shared_ptr<const configuration>> cfgs;

  mutable std::mutex mtx;
  std::map<std::string, queue_state> queues;
  /// Waiting for a worker, by task id (owns the tickets that the queues'
  /// `waiting` sets point to; nodes never move).
  std::unordered_map<std::string, ticket> pending;
  std::unordered_set<std::string> running_ids;
  std::map<std::string, std::vector<waiter>> waiters;
  size_t depth = 0; ///< accepted and not finished
  bool dispatching = true;
  std::atomic<uint64_t> seq{0};
  std::atomic<uint64_t> waiter_ids{0};
  /// Depth and queue of running runs and of child runs (for child runs:
  /// nesting limit and queue inheritance); a top-level run is added when it
  /// starts, every run is removed when it leaves the service.
  std::unordered_map<std::string, std::pair<int, std::string>> lineage;
  timer_thread timers;

  size_t workers_of(const std::string& q) const {
    auto it = opts.queue_workers.find(q);
    return it == opts.queue_workers.end() ? opts.default_workers : it->second;
  }

  /// Pops what may start now from queue `q` (lock held).
  std::vector<ticket> take_startable(const std::string& q) {
    std::vector<ticket> out;
    if (!dispatching)
      return out;
    auto& qs = queues[q];
    auto limit = workers_of(q);
    while (qs.running < limit && !qs.waiting.empty()) {
      auto node = pending.extract((*qs.waiting.begin())->task_id);
      qs.waiting.erase(qs.waiting.begin());
      ticket t = std::move(node.mapped());
      running_ids.insert(t.task_id);
      lineage.try_emplace(t.task_id, 0, t.queue);
      ++qs.running;
      out.push_back(std::move(t));
    }
    return out;
  }

  void enqueue(ticket t) {
    std::vector<ticket> go;
    std::shared_ptr<run_plan> drop_plan; // freed after the lock is released
    std::shared_ptr<run_record> drop_rec;
    {
      std::lock_guard<std::mutex> g{mtx};
      auto q = t.queue;
      if (t.child && dispatching) {
        // Child runs start at once: their parent may be waiting on them.
        running_ids.insert(t.task_id);
        ++queues[q].running;
        go.push_back(std::move(t));
      } else {
        auto id = t.task_id;
        auto [it, fresh] = pending.try_emplace(id, std::move(t));
        if (fresh)
          queues[q].waiting.insert(&it->second);
        go = take_startable(q);
        // Still waiting: hold only the queue entry until a worker is free.
        if (auto w = pending.find(id); fresh && w != pending.end() && !w->second.adhoc) {
          drop_plan = std::move(w->second.plan);
          drop_rec = std::move(w->second.rec);
        }
      }
    }
    for (auto& t2 : go)
      start(std::move(t2));
  }

  /// Accounting after a run left the service (finished, failed to start, or
  /// revoked while pending): frees its worker, answers waiters, starts more.
  void finished(const ticket& t, const run_record& r, bool was_running) {
    std::vector<waiter> ws;
    std::vector<ticket> go;
    {
      std::lock_guard<std::mutex> g{mtx};
      if (was_running) {
        auto& qs = queues[t.queue];
        if (qs.running > 0)
          --qs.running;
        running_ids.erase(t.task_id);
      }
      if (depth > 0)
        --depth;
      lineage.erase(t.task_id);
      if (auto it = waiters.find(t.task_id); it != waiters.end()) {
        ws = std::move(it->second);
        waiters.erase(it);
      }
      go = take_startable(t.queue);
    }
    for (auto& w : ws)
      w.done(r);
    for (auto& t2 : go)
      start(std::move(t2));
  }

  void fail_unstarted(const ticket& t, run_record rec, std::string why) {
    rec.status = run_status::failed;
    rec.error = std::move(why);
    rec.ended_ns = now_ns();
    auto batch = rstore.record_ops(rec);
    batch.push_back({write_op::erase, table::queue, t.key, {}});
    auto snapshot = std::make_shared<run_record>(std::move(rec));
    store.write_async(std::move(batch),
                      [this, t, snapshot](caf::error) { finished(t, *snapshot, true); });
  }

  caf::expected<run_plan> plan_for(const run_record& rec) {
    std::shared_ptr<const application> app;
    std::shared_ptr<const configuration> cfg;
    {
      std::lock_guard<std::mutex> g{content_mtx};
      if (auto it = apps.find(rec.application); it != apps.end())
        app = it->second;
      if (!rec.configuration.empty())
        if (auto it = cfgs.find(rec.configuration); it != cfgs.end())
          cfg = it->second;
    }
    if (!app)
      return make_error(errc::not_found, fmt::format("application {} no longer exists",
                                                     quote_json(rec.application)));
    if (!rec.configuration.empty() && !cfg)
      return make_error(errc::not_found, fmt::format("configuration {} no longer exists",
                                                     quote_json(rec.configuration)));
    std::optional<configuration> clear;
    if (cfg) {
      if (decrypt) {
        auto d = decrypt(*cfg);
        if (!d)
          return d.error();
        clear = std::move(*d);
      } else {
        clear = *cfg;
      }
    }
    return prepare_run(app, clear ? &*clear : nullptr, rec.params, rec.log_level, registry,
                       opts.plan);
  }

  void start(ticket t) {
    run_record rec;
    if (t.rec) {
      rec = *t.rec;
    } else {
      auto loaded = rstore.load(t.task_id);
      if (!loaded || !*loaded) {
        // Nothing to run: drop the queue entry.
        run_record gone;
        gone.task_id = t.task_id;
        store.write_async({{write_op::erase, table::queue, t.key, {}}},
                          [this, t, gone](caf::error) { finished(t, gone, true); });
        return;
      }
      rec = std::move(**loaded);
    }
    std::shared_ptr<run_plan> plan = t.plan;
    if (!plan) {
      auto p = plan_for(rec);
      if (!p) {
        fail_unstarted(t, std::move(rec), message_of(p.error()));
        return;
      }
      plan = std::make_shared<run_plan>(std::move(*p));
    }
    run_observer obs;
    obs.record_start = false; // the pending record is committed; see run_store::load
    obs.final_ops.push_back({write_op::erase, table::queue, t.key, {}});
    auto tk = std::make_shared<ticket>(t);
    tk->plan.reset();
    tk->rec.reset();
    obs.on_done = [this, tk](const run_record& r) { finished(*tk, r, true); };
    eng.start(std::move(*plan), std::move(rec), std::move(obs));
  }
};

task_service::task_service(task_service_options opts, kv_store& store, engine& eng,
                           const step_registry& registry, config_transform decrypt)
  : impl_(std::make_unique<impl>(std::move(opts), store, eng, registry, std::move(decrypt))) {
}

task_service::~task_service() = default;

// -- content --------------------------------------------------------------------

caf::error task_service::load_content(const std::vector<syncpack_content>& packs) {
  auto& p = *impl_;
  auto ids = p.cstore.application_ids();
  if (!ids)
    return ids.error();
  for (const auto& id : *ids) {
    auto app = p.cstore.application_by_id(id);
    if (!app)
      return app.error();
    if (*app)
      p.apps[id] = std::make_shared<const application>(std::move(**app));
  }
  auto names = p.cstore.configuration_names();
  if (!names)
    return names.error();
  for (const auto& n : *names) {
    auto cfg = p.cstore.configuration_by_name(n);
    if (!cfg)
      return cfg.error();
    if (*cfg)
      p.cfgs[n] = std::make_shared<const configuration>(std::move(**cfg));
  }
  for (const auto& pack : packs) {
    for (const auto& a : pack.apps)
      if (!p.apps.count(a.id))
        if (auto err = put_application(a))
          return err;
    for (const auto& c : pack.configs)
      if (!p.cfgs.count(c.name))
        if (auto err = put_configuration(c))
          return err;
  }
  return {};
}

std::shared_ptr<const application> task_service::find_application(const std::string& id) const {
  std::lock_guard<std::mutex> g{impl_->content_mtx};
  auto it = impl_->apps.find(id);
  return it == impl_->apps.end() ? nullptr : it->second;
}

std::shared_ptr<const configuration>
task_service::find_configuration(const std::string& name) const {
  std::lock_guard<std::mutex> g{impl_->content_mtx};
  auto it = impl_->cfgs.find(name);
  return it == impl_->cfgs.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<const application>> task_service::applications() const {
  std::lock_guard<std::mutex> g{impl_->content_mtx};
  std::vector<std::shared_ptr<const application>> out;
  for (auto& [_, a] : impl_->apps)
    out.push_back(a);
  return out;
}

std::vector<std::shared_ptr<const configuration>> task_service::configurations() const {
  std::lock_guard<std::mutex> g{impl_->content_mtx};
  std::vector<std::shared_ptr<const configuration>> out;
  for (auto& [_, c] : impl_->cfgs)
    out.push_back(c);
  return out;
}

caf::error task_service::put_application(application app) {
  if (auto err = impl_->cstore.put(app))
    return err;
  std::lock_guard<std::mutex> g{impl_->content_mtx};
  auto id = app.id;
  impl_->apps[id] = std::make_shared<const application>(std::move(app));
  return {};
}

caf::error task_service::put_configuration(configuration cfg) {
  if (auto err = impl_->cstore.put(cfg))
    return err;
  std::lock_guard<std::mutex> g{impl_->content_mtx};
  auto name = cfg.name;
  impl_->cfgs[name] = std::make_shared<const configuration>(std::move(cfg));
  return {};
}

caf::expected<bool> task_service::erase_application(const std::string& id) {
  auto r = impl_->cstore.erase_application(id);
  if (!r)
    return r;
  std::lock_guard<std::mutex> g{impl_->content_mtx};
  return impl_->apps.erase(id) > 0 || *r;
}

caf::expected<bool> task_service::erase_configuration(const std::string& name) {
  auto r = impl_->cstore.erase_configuration(name);
  if (!r)
    return r;
  std::lock_guard<std::mutex> g{impl_->content_mtx};
  return impl_->cfgs.erase(name) > 0 || *r;
}

// -- runs -------------------------------------------------------------------------

void task_service::submit(run_request req, std::function<void(caf::expected<std::string>)> done) {
  auto& p = *impl_;
  auto app = req.adhoc ? req.adhoc : find_application(req.application);
  if (!app) {
    done(make_error(errc::not_found,
                    fmt::format("no application named {}", quote_json(req.application))));
    return;
  }
  if (req.queue.empty())
    req.queue = "default";
  std::string cfg_name = req.configuration.empty() ? app->configuration : req.configuration;
  std::optional<configuration> cfg;
  if (!cfg_name.empty()) {
    auto c = find_configuration(cfg_name);
    if (!c) {
      done(make_error(errc::not_found,
                      req.configuration.empty()
                        ? fmt::format("application {} is aligned with configuration {}, which "
                                      "does not exist", quote_json(app->id), quote_json(cfg_name))
                        : fmt::format("no configuration named {}", quote_json(cfg_name))));
      return;
    }
    if (p.decrypt) {
      auto d = p.decrypt(*c);
      if (!d) {
        done(d.error());
        return;
      }
      cfg = std::move(*d);
    } else {
      cfg = *c;
    }
  }
  auto plan = prepare_run(app, cfg ? &*cfg : nullptr, req.params, req.log_level, p.registry,
                          p.opts.plan);
  if (!plan) {
    done(plan.error());
    return;
  }
  {
    std::lock_guard<std::mutex> g{p.mtx};
    if (!p.dispatching) {
      done(make_error(errc::unavailable, "the server is shutting down"));
      return;
    }
    if (p.depth >= p.opts.max_queue_depth) {
      done(make_error(errc::unavailable,
                      fmt::format("{} runs are waiting; try again later", p.depth)));
      return;
    }
    ++p.depth;
  }
  auto rec = std::make_shared<run_record>();
  rec->task_id = new_task_id();
  rec->application = app->id;
  rec->configuration = plan->configuration;
  rec->queue = req.queue;
  rec->priority = req.priority;
  rec->params = req.params;
  rec->log_level = plan->log_level;
  rec->status = run_status::pending;
  rec->created_ns = now_ns();
  rec->parent_task = req.parent_task;
  rec->replay_of = req.replay_of;
  for (const auto& s : app->steps) {
    step_record sr;
    sr.name = s.name;
    sr.file = s.file;
    rec->steps.push_back(std::move(sr));
  }
  ticket t;
  t.task_id = rec->task_id;
  t.application = rec->application;
  t.queue = req.queue;
  t.priority = req.priority;
  t.seq = ++p.seq;
  t.key = queue_key(t.queue, t.priority, t.seq);
  t.plan = std::make_shared<run_plan>(std::move(*plan));
  t.rec = rec;
  t.child = !req.parent_task.empty();
  t.adhoc = req.adhoc != nullptr;
  auto batch = p.rstore.record_ops(*rec);
  batch.push_back({write_op::put, table::queue, t.key, t.task_id});
  if (t.child)
    batch.push_back({write_op::put, table::children, req.parent_task + std::string(1, '\0') + t.task_id, {}});
  if (t.child) {
    // Top-level runs get their entry when they start (see take_startable).
    std::lock_guard<std::mutex> g{p.mtx};
    int d = 1;
    if (auto it = p.lineage.find(req.parent_task); it != p.lineage.end())
      d = it->second.first + 1;
    p.lineage[t.task_id] = {d, req.queue};
  }
  p.store.write_async(std::move(batch), [this, t = std::move(t), done](caf::error err) mutable {
    if (err) {
      {
        std::lock_guard<std::mutex> g{impl_->mtx};
        if (impl_->depth > 0)
          --impl_->depth;
      }
      done(make_error(errc::unavailable,
                      fmt::format("cannot record the run: {}", message_of(err))));
      return;
    }
    auto id = t.task_id;
    impl_->enqueue(std::move(t));
    done(std::move(id));
  });
}

void task_service::wait(const std::string& task_id, std::chrono::milliseconds timeout,
                        std::function<void(std::optional<run_record>)> done) {
  auto& p = *impl_;
  {
    std::lock_guard<std::mutex> g{p.mtx};
    if (p.pending.count(task_id) || p.running_ids.count(task_id)) {
      auto id = ++p.waiter_ids;
      p.waiters[task_id].push_back(waiter{id, done});
      p.timers.schedule(std::chrono::steady_clock::now() + timeout, [this, task_id, id] {
        std::function<void(std::optional<run_record>)> fn;
        {
          std::lock_guard<std::mutex> g2{impl_->mtx};
          auto it = impl_->waiters.find(task_id);
          if (it == impl_->waiters.end())
            return;
          for (auto w = it->second.begin(); w != it->second.end(); ++w)
            if (w->id == id) {
              fn = std::move(w->done);
              it->second.erase(w);
              break;
            }
          if (it->second.empty())
            impl_->waiters.erase(it);
        }
        if (!fn)
          return;
        auto rec = impl_->rstore.load(task_id);
        fn(rec && *rec ? std::optional<run_record>{std::move(**rec)} : std::nullopt);
      });
      return;
    }
  }
  auto rec = p.rstore.load(task_id);
  done(rec && *rec ? std::optional<run_record>{std::move(**rec)} : std::nullopt);
}

caf::expected<bool> task_service::revoke(const std::string& task_id, bool terminate) {
  auto& p = *impl_;
  std::optional<ticket> t;
  {
    std::lock_guard<std::mutex> g{p.mtx};
    if (auto it = p.pending.find(task_id); it != p.pending.end()) {
      p.queues[it->second.queue].waiting.erase(&it->second);
      t = std::move(it->second);
      p.pending.erase(it);
    } else if (p.running_ids.count(task_id)) {
      // fall through to the engine below
    } else {
      auto rec = p.rstore.load(task_id);
      if (!rec)
        return rec.error();
      if (!*rec)
        return make_error(errc::not_found, fmt::format("no task named {}", quote_json(task_id)));
      return false;
    }
  }
  if (!t)
    return p.eng.revoke(task_id, terminate);
  run_record rec;
  if (t->rec) {
    rec = *t->rec;
  } else if (auto loaded = p.rstore.load(task_id); loaded && *loaded) {
    rec = std::move(**loaded);
  } else {
    rec.task_id = task_id;
  }
  rec.status = run_status::revoked;
  rec.ended_ns = now_ns();
  for (auto& s : rec.steps)
    s.status = step_status::skipped;
  auto batch = p.rstore.record_ops(rec);
  batch.push_back({write_op::erase, table::queue, t->key, {}});
  // Committed before answering, so a GET right after the revoke shows it
  // (revoking is rare; one fsync on the caller's thread is acceptable).
  if (auto err = p.store.write(std::move(batch)))
    return err;
  p.finished(*t, rec, false);
  return true;
}

size_t task_service::revoke_all(const std::string& application, bool terminate) {
  std::vector<std::string> ids;
  {
    std::lock_guard<std::mutex> g{impl_->mtx};
    for (auto& [id, t] : impl_->pending)
      if (application.empty() || t.application == application)
        ids.push_back(id);
    for (auto& id : impl_->running_ids)
      ids.push_back(id);
  }
  size_t n = 0;
  for (auto& id : ids) {
    if (!application.empty()) {
      auto rec = impl_->rstore.load(id);
      if (!rec || !*rec || (*rec)->application != application)
        continue;
    }
    auto r = revoke(id, terminate);
    n += r && *r ? 1 : 0;
  }
  return n;
}

void task_service::replay(const std::string& task_id,
                          std::function<void(caf::expected<std::string>)> done) {
  auto rec = impl_->rstore.load(task_id);
  if (!rec) {
    done(rec.error());
    return;
  }
  if (!*rec) {
    done(make_error(errc::not_found, fmt::format("no task named {}", quote_json(task_id))));
    return;
  }
  run_request req;
  req.application = (*rec)->application;
  req.params = (*rec)->params;
  req.configuration = (*rec)->configuration;
  req.queue = (*rec)->queue;
  req.priority = (*rec)->priority;
  req.log_level = (*rec)->log_level;
  req.replay_of = task_id;
  submit(std::move(req), std::move(done));
}

caf::expected<size_t> task_service::recover() {
  auto& p = *impl_;
  struct entry {
    std::string key;
    std::string task_id;
  };
  std::vector<entry> entries;
  auto err = p.store.scan(table::queue, {}, {}, false, [&](std::string_view k, std::string_view v) {
    entries.push_back({std::string(k), std::string(v)});
    return true;
  });
  if (err)
    return err;
  size_t n = 0;
  uint64_t max_seq = 0;
  write_batch fixes;
  std::vector<ticket> tickets;
  for (auto& e : entries) {
    auto nul = e.key.find('\0');
    if (nul == std::string::npos || e.key.size() != nul + 1 + 4 + 8) {
      fixes.push_back({write_op::erase, table::queue, e.key, {}});
      continue;
    }
    ticket t;
    t.key = e.key;
    t.task_id = e.task_id;
    t.queue = e.key.substr(0, nul);
    t.priority = 255 - static_cast<int>(read_be32(std::string_view(e.key).substr(nul + 1)));
    t.seq = read_be64(std::string_view(e.key).substr(nul + 5));
    max_seq = std::max(max_seq, t.seq);
    auto rec = p.rstore.load(t.task_id);
    if (!rec)
      return rec.error();
    if (!*rec || terminal((*rec)->status)) {
      fixes.push_back({write_op::erase, table::queue, e.key, {}});
      continue;
    }
    auto& r = **rec;
    r.attempt += 1;
    r.status = run_status::pending;
    r.started_ns = 0;
    r.ended_ns = 0;
    for (auto& s : r.steps) {
      s = step_record{s.name, s.file};
    }
    for (auto& op : p.rstore.record_ops(r))
      fixes.push_back(std::move(op));
    // Step records of the interrupted attempt go; the new attempt rewrites them.
    std::string prefix = r.task_id;
    prefix.push_back('\0');
    fixes.push_back({write_op::erase_prefix, table::step_state, prefix, {}});
    fixes.push_back({write_op::erase_prefix, table::step_logs, prefix, {}});
    t.application = r.application;
    t.rec = std::make_shared<run_record>(std::move(r));
    tickets.push_back(std::move(t));
    ++n;
  }
  if (!fixes.empty())
    if (auto werr = p.store.write(std::move(fixes)))
      return werr;
  if (max_seq >= p.seq)
    p.seq = max_seq + 1;
  {
    std::lock_guard<std::mutex> g{p.mtx};
    p.depth += tickets.size();
  }
  for (auto& t : tickets)
    p.enqueue(std::move(t));
  return n;
}

void task_service::launch(child_run_request req,
                          std::function<void(caf::expected<std::string>)> done) {
  run_request rr;
  rr.application = std::move(req.application);
  rr.params = std::move(req.params);
  rr.configuration = std::move(req.configuration);
  rr.parent_task = req.parent_task;
  rr.queue = std::move(req.queue);
  {
    std::lock_guard<std::mutex> g{impl_->mtx};
    if (auto it = impl_->lineage.find(req.parent_task); it != impl_->lineage.end()) {
      if (it->second.first + 1 >= max_run_depth) {
        done(make_error(errc::invalid_argument,
                        fmt::format("runs started by runs may nest at most {} deep; {} would "
                                    "start the {}th level", max_run_depth,
                                    quote_json(rr.application), it->second.first + 2)));
        return;
      }
      if (rr.queue.empty())
        rr.queue = it->second.second;
    }
  }
  submit(std::move(rr), std::move(done));
}

void task_service::when_done(const std::string& task_id,
                             std::function<void(std::optional<run_record>, json::value)> done) {
  wait(task_id, std::chrono::hours(24), [this, done](std::optional<run_record> r) {
    if (!r) {
      done(std::nullopt, nullptr);
      return;
    }
    std::vector<bool> sinks;
    if (auto app = find_application(r->application))
      for (const auto& succ : app->succs)
        sinks.push_back(succ.empty());
    auto result = child_result(*r, sinks);
    done(std::move(r), std::move(result));
  });
}

std::vector<std::string> task_service::children(const std::string& task_id) const {
  std::vector<std::string> out;
  auto prefix = task_id + std::string(1, '\0');
  (void) impl_->store.scan(table::children, prefix, {}, false,
                           [&](std::string_view k, std::string_view) {
                             out.emplace_back(k.substr(prefix.size()));
                             return true;
                           });
  return out;
}

void task_service::stop_dispatching() {
  std::lock_guard<std::mutex> g{impl_->mtx};
  impl_->dispatching = false;
}

std::vector<task_service::queue_stats> task_service::queues() const {
  std::lock_guard<std::mutex> g{impl_->mtx};
  std::vector<queue_stats> out;
  std::set<std::string> names;
  for (auto& [n, _] : impl_->queues)
    names.insert(n);
  for (auto& [n, _] : impl_->opts.queue_workers)
    names.insert(n);
  names.insert("default");
  for (auto& n : names) {
    queue_stats qs;
    qs.name = n;
    qs.workers = impl_->workers_of(n);
    if (auto it = impl_->queues.find(n); it != impl_->queues.end()) {
      qs.queued = it->second.waiting.size();
      qs.running = it->second.running;
    }
    out.push_back(std::move(qs));
  }
  return out;
}

size_t task_service::depth() const {
  std::lock_guard<std::mutex> g{impl_->mtx};
  return impl_->depth;
}

bool task_service::is_running(const std::string& task_id) const {
  std::lock_guard<std::mutex> g{impl_->mtx};
  return impl_->running_ids.count(task_id) > 0;
}

void task_service::refresh_status(run_record& r) const {
  if (r.status == run_status::pending && is_running(r.task_id))
    r.status = run_status::running;
}

size_t task_service::running() const {
  std::lock_guard<std::mutex> g{impl_->mtx};
  return impl_->running_ids.size();
}

run_store& task_service::runs() noexcept {
  return impl_->rstore;
}

kv_store& task_service::store() noexcept {
  return impl_->store;
}

const step_registry& task_service::registry() const noexcept {
  return impl_->registry;
}

} // namespace stepflow::actors
