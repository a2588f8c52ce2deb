// The run supervisor and step actors (protocol in run_protocol.hpp).
#include "stepflow/actors/run_protocol.hpp"

#include <atomic>
#include <deque>
#include <cstdio>
#include <optional>
#include <thread>
#include <chrono>

#include <fmt/format.h>

#include "stepflow/runtime/clock.hpp"
#include "stepflow/runtime/kv_store.hpp"
#include "stepflow/runtime/log_level.hpp"

namespace stepflow::actors {

namespace {

int64_t now_ns(const step_services& s) {
  return s.clock ? s.clock->now_ns() : system_clock().now_ns();
}

// -- step actor ---------------------------------------------------------------

struct step_actor_state {
  static inline const char* name = "step_actor";
  bool reported = false;
};

step_actor::behavior_type
step_actor_impl(step_actor::stateful_pointer<step_actor_state> self, run_supervisor_actor sup,
                uint32_t index, const step_type* type, std::shared_ptr<step_context> ctx,
                double timeout_s) {
  auto started = now_ns(ctx->services);
  // Shared between the handlers and the completion callback, which may run
  // on another thread. (Kept outside CAF actor state on purpose.)
  struct completion {
    std::atomic<bool> fired{false};
    std::atomic<bool> in_run{false};
    bool reported = false; // actor thread only
    std::thread::id runner;
    std::optional<step_outcome> inline_outcome;
  };
  auto c = std::make_shared<completion>();
  auto report = [self, sup, index, ctx, started, c](step_outcome o) {
    if (c->reported)
      return;
    c->reported = true;
    auto fin = std::make_shared<step_finished>();
    fin->index = index;
    fin->outcome = std::move(o);
    fin->logs = ctx->take_logs();
    fin->started_ns = started;
    fin->ended_ns = now_ns(ctx->services);
    self->send(sup, finished_atom::value, step_finished_ptr{std::move(fin)});
    self->quit();
  };
  // The step may complete on any thread. A completion from inside run() on
  // this actor's own thread is handed over directly; later completions (from
  // I/O threads) arrive as outcome messages.
  auto me = caf::actor_cast<step_actor>(self);
  step_done done = [me, c](step_outcome o) {
    if (c->fired.exchange(true))
      return;
    if (c->in_run.load() && std::this_thread::get_id() == c->runner) {
      c->inline_outcome = std::move(o);
      return;
    }
    caf::anon_send(me, outcome_atom::value,
                   step_outcome_ptr{std::make_shared<const step_outcome>(std::move(o))});
  };
  self->send(self, go_atom::value);
  return {
    [self, type, ctx, done, c, report, timeout_s](go_atom) {
      c->runner = std::this_thread::get_id();
      c->in_run = true;
      try {
        type->run(ctx, done);
      } catch (const std::exception& e) {
        done(step_outcome::failure(fmt::format("step threw an exception: {}", e.what())));
      } catch (...) {
        done(step_outcome::failure("step threw an unknown exception"));
      }
      c->in_run = false;
      if (c->inline_outcome) {
        report(std::move(*c->inline_outcome));
        return;
      }
      // Still running (waiting on I/O): arm the timeout. Steps that finish
      // inside run() never touch the timer thread.
      auto ms = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
      self->delayed_send(self, ms, timeout_atom::value);
    },
    [report](outcome_atom, step_outcome_ptr o) { report(*o); },
    [report, ctx, c, timeout_s](timeout_atom) {
      ctx->cancelled = true;
      c->fired.store(true);
      report(step_outcome::failure(fmt::format("step timed out after {} s", timeout_s)));
    },
  };
}

// -- run supervisor -----------------------------------------------------------

struct run_state {
  static inline const char* name = "run_supervisor";
  std::shared_ptr<run_init> init;
  std::unique_ptr<dag_state> dag;
  std::vector<std::shared_ptr<const json::value>> data;
  std::vector<std::shared_ptr<step_context>> ctxs;
  std::vector<step_actor> actors;
  std::vector<uint32_t> log_seq;
  bool finished = false;
  /// Inline steps' ends waiting to be handled, and whether a loop is
  /// handling them (so a chain of inline steps does not recurse).
  std::deque<step_finished> inline_ends;
  bool draining = false;
  std::shared_ptr<const json::object> variables;
  std::shared_ptr<const json::object> config_values;
};

using sup_ptr = run_supervisor_actor::stateful_pointer<run_state>;

void persist(sup_ptr self, write_batch batch, std::function<void()> then) {
  auto* store = self->state.init->services.store;
  if (!store) {
    then();
    return;
  }
  store->write_async(std::move(batch), [then = std::move(then)](caf::error err) {
    // The run goes on (its state lives in the supervisor), but a record that
    // could not be committed must not pass silently.
    if (err)
      std::fprintf(stderr, "stepflow: cannot record run state: %s\n", message_of(err).c_str());
    then();
  });
}

void finish_run(sup_ptr self) {
  auto& st = self->state;
  if (st.finished || !st.dag->done())
    return;
  st.finished = true;
  auto& rec = st.init->rec;
  rec.status = st.dag->final_status();
  rec.ended_ns = now_ns(st.init->services);
  auto init = st.init;
  auto snapshot = std::make_shared<run_record>(rec);
  auto done = [init, snapshot] {
    if (init->obs.on_done)
      init->obs.on_done(*snapshot);
    if (init->on_exit)
      init->on_exit(snapshot->task_id);
  };
  if (init->services.store) {
    auto batch = run_store{*init->services.store}.record_ops(rec);
    for (auto& op : init->obs.final_ops)
      batch.push_back(std::move(op));
    persist(self, std::move(batch), done);
  } else {
    done();
  }
  self->quit();
}

void record_end(sup_ptr self, size_t i, step_status status, step_outcome outcome,
                std::vector<log_line> logs, int64_t started, int64_t ended) {
  auto& st = self->state;
  auto& rec = st.init->rec;
  auto& sr = rec.steps[i];
  const auto& name = sr.name;
  int lvl = rec.log_level;
  auto add = [&](int level, std::string msg) {
    if (level >= lvl)
      logs.push_back(log_line{ended, level, std::move(msg)});
  };
  sr.status = status;
  if (status != step_status::skipped) {
    sr.started_ns = started ? started : sr.started_ns;
    sr.ended_ns = ended;
    if (!outcome.data.is_null() || status == step_status::success)
      sr.data = std::make_shared<const json::value>(std::move(outcome.data));
    if (status == step_status::success) {
      st.data[i] = sr.data;
      if (lvl <= log_level::debug)
        add(log_level::debug,
            fmt::format("Saved data for next step: {}", to_json(sr.data ? *sr.data : nullptr).substr(0, 4096)));
    } else {
      sr.error = outcome.error;
      add(log_level::error, outcome.error);
    }
    add(log_level::info,
        fmt::format("stop {}|{:.3f}", name, static_cast<double>(ended - sr.started_ns) / 1e9));
  }
  auto first = st.log_seq[i];
  st.log_seq[i] += static_cast<uint32_t>(logs.size());
  sr.log_count = st.log_seq[i];
  st.ctxs[i].reset();
  auto init = st.init;
  std::function<void()> notify = [] {};
  if (init->obs.on_step_end) {
    // Only observers that ask for per-step callbacks pay for a snapshot.
    auto snapshot = std::make_shared<run_record>(rec);
    notify = [init, snapshot, i] { init->obs.on_step_end(*snapshot, i); };
  }
  if (init->services.store)
    persist(self, run_store{*init->services.store}.step_ops(rec, i, logs, first), notify);
  else
    notify();
}

void launch(sup_ptr self, const dag_state::transition& t);

void on_finished(sup_ptr self, const step_finished& fin) {
  auto& st = self->state;
  size_t i = fin.index;
  if (i >= st.ctxs.size() || st.dag->status(i) != step_status::running)
    return; // late report after terminate
  bool ok = fin.outcome.ok;
  std::vector<size_t> not_taken;
  const auto& app = *st.init->plan.app;
  for (const auto& name : fin.outcome.not_taken) {
    auto idx = app.step_index(name);
    if (idx >= 0)
      not_taken.push_back(static_cast<size_t>(idx));
  }
  record_end(self, i, ok ? step_status::success : step_status::failed, fin.outcome, fin.logs,
             fin.started_ns, fin.ended_ns);
  launch(self, st.dag->finish(i, ok, not_taken));
  finish_run(self);
}

/// Runs a completes_inline() step right here: no actor, no timer. Its end
/// is queued and handled by the outermost call, so a chain of inline steps
/// is a loop, not a recursion.
void run_inline(sup_ptr self, size_t i, const step_type& type, std::shared_ptr<step_context> ctx,
                int64_t started) {
  auto& st = self->state;
  std::optional<step_outcome> outcome;
  step_done done = [&outcome](step_outcome o) {
    if (!outcome)
      outcome = std::move(o);
  };
  try {
    type.run(ctx, done);
  } catch (const std::exception& e) {
    done(step_outcome::failure(fmt::format("step threw an exception: {}", e.what())));
  } catch (...) {
    done(step_outcome::failure("step threw an unknown exception"));
  }
  step_finished fin;
  fin.index = static_cast<uint32_t>(i);
  fin.outcome = outcome ? std::move(*outcome)
                        : step_outcome::failure(fmt::format(
                            "step type {} did not complete inline as it promised", type.info().name));
  fin.logs = ctx->take_logs();
  fin.started_ns = started;
  fin.ended_ns = now_ns(st.init->services);
  st.inline_ends.push_back(std::move(fin));
  if (st.draining)
    return;
  st.draining = true;
  while (!st.inline_ends.empty()) {
    auto next = std::move(st.inline_ends.front());
    st.inline_ends.pop_front();
    on_finished(self, next);
  }
  st.draining = false;
}

void start_step(sup_ptr self, size_t i) {
  auto& st = self->state;
  auto& init = *st.init;
  const auto& app = *init.plan.app;
  auto& sr = init.rec.steps[i];
  auto now = now_ns(init.services);
  st.dag->mark_running(i);
  sr.status = step_status::running;
  sr.started_ns = now;
  auto params = take_step_params(init.plan, i, st.data);
  if (!params) {
    step_finished fin;
    fin.index = static_cast<uint32_t>(i);
    fin.outcome = step_outcome::failure(message_of(params.error()));
    fin.started_ns = fin.ended_ns = now;
    on_finished(self, fin);
    return;
  }
  auto ctx = std::make_shared<step_context>();
  ctx->run_id = init.rec.task_id;
  ctx->application = app.id;
  ctx->step_name = app.steps[i].name;
  ctx->step_type = app.steps[i].file;
  ctx->params = std::move(*params);
  for (auto p : app.preds[i])
    if (st.data[p])
      ctx->inputs.emplace_back(app.steps[p].name, st.data[p]);
  for (auto s : app.succs[i])
    ctx->outputs.push_back(app.steps[s].name);
  ctx->app_variables = st.variables;
  ctx->configuration = st.config_values;
  ctx->log_level = init.plan.log_level;
  ctx->services = init.services;
  st.ctxs[i] = ctx;
  const auto& ps = init.plan.steps[i];
  if (auto err = ps.type->check(ctx->params)) {
    step_finished fin;
    fin.index = static_cast<uint32_t>(i);
    fin.outcome = step_outcome::failure(message_of(err));
    fin.started_ns = fin.ended_ns = now;
    on_finished(self, fin);
    return;
  }
  // PowerFlow logs "stop <step>|<seconds>" at the end; the start line is
  // only kept in debug runs (it costs a stored line per step).
  if (ctx->log_level <= log_level::debug)
    ctx->log(log_level::debug, fmt::format("start {}", ctx->step_name));
  if (ps.type->completes_inline()) {
    run_inline(self, i, *ps.type, std::move(ctx), now);
    return;
  }
  auto sup = caf::actor_cast<run_supervisor_actor>(self);
  auto a = self->home_system().spawn(step_actor_impl, sup, static_cast<uint32_t>(i), ps.type, ctx, ps.timeout_s);
  self->monitor(a);
  st.actors[i] = a;
}

void launch(sup_ptr self, const dag_state::transition& t) {
  auto& st = self->state;
  for (auto s : t.skipped)
    record_end(self, s, step_status::skipped, {}, {}, 0, 0);
  for (auto r : t.ready)
    if (st.dag->status(r) == step_status::pending)
      start_step(self, r);
}

run_supervisor_actor::behavior_type run_supervisor_impl(sup_ptr self,
                                                        std::shared_ptr<run_init> init) {
  auto& st = self->state;
  st.init = std::move(init);
  const auto& app = *st.init->plan.app;
  size_t n = app.steps.size();
  st.dag = std::make_unique<dag_state>(app);
  st.data.resize(n);
  st.ctxs.resize(n);
  st.actors.resize(n);
  st.log_seq.assign(n, 0);
  // One copy per run (deferred steps still resolve against the plan's own).
  st.variables = std::make_shared<const json::object>(st.init->plan.variables);
  st.config_values = std::make_shared<const json::object>(st.init->plan.config_values);
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    for (size_t i = 0; i < st.actors.size(); ++i)
      if (st.actors[i] && st.actors[i].address() == dm.source) {
        st.actors[i] = nullptr;
        if (st.dag->status(i) == step_status::running && dm.reason) {
          step_finished fin;
          fin.index = static_cast<uint32_t>(i);
          fin.outcome = step_outcome::failure(
            fmt::format("step actor stopped: {}", caf::to_string(dm.reason)));
          fin.ended_ns = now_ns(st.init->services);
          on_finished(self, fin);
        }
      }
  });
  self->send(self, start_atom::value);
  return {
    [self](start_atom) {
      auto& st = self->state;
      auto& rec = st.init->rec;
      rec.status = run_status::running;
      rec.started_ns = now_ns(st.init->services);
      if (st.init->services.store && st.init->obs.record_start)
        persist(self, run_store{*st.init->services.store}.record_ops(rec), [] {});
      launch(self, st.dag->start());
      finish_run(self);
    },
    [self](finished_atom, step_finished_ptr fin) { on_finished(self, *fin); },
    [self](revoke_atom, bool terminate) {
      auto& st = self->state;
      launch(self, st.dag->revoke());
      if (terminate) {
        auto now = now_ns(st.init->services);
        for (size_t i = 0; i < st.ctxs.size(); ++i) {
          if (st.dag->status(i) != step_status::running)
            continue;
          if (st.ctxs[i])
            st.ctxs[i]->cancelled = true;
          if (st.actors[i])
            self->send_exit(st.actors[i], caf::exit_reason::user_shutdown);
          step_finished fin;
          fin.index = static_cast<uint32_t>(i);
          fin.outcome = step_outcome::failure("terminated: the run was revoked");
          fin.started_ns = st.init->rec.steps[i].started_ns;
          fin.ended_ns = now;
          on_finished(self, fin);
        }
      }
      finish_run(self);
    },
  };
}

} // namespace

run_supervisor_actor spawn_run_supervisor(caf::actor_system& sys, std::shared_ptr<run_init> init) {
  auto& rec = init->rec;
  const auto& app = *init->plan.app;
  rec.steps.clear();
  for (const auto& s : app.steps) {
    step_record sr;
    sr.name = s.name;
    sr.file = s.file;
    rec.steps.push_back(std::move(sr));
  }
  rec.log_level = init->plan.log_level;
  rec.configuration = init->plan.configuration;
  rec.application = app.id;
  return sys.spawn(run_supervisor_impl, std::move(init));
}

} // namespace stepflow::actors
