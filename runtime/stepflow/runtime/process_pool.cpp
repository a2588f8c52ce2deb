// The process pool: Boost.Process v2 starts the programs, Asio pipes on one
// I/O thread carry the protocol lines, and one periodic tick per active
// process enforces start timeouts, task timeouts and cancellation.
#include "stepflow/runtime/process_pool.hpp"
#include "stepflow/runtime/thread_name.hpp"

#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <deque>
#include <fstream>
#include <future>
#include <mutex>
#include <optional>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/readable_pipe.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/writable_pipe.hpp>
#include <boost/asio/write.hpp>
#include <boost/process/v2/environment.hpp>
#include <boost/process/v2/process.hpp>
#include <boost/process/v2/start_dir.hpp>
#include <boost/process/v2/stdio.hpp>
// Boost 1.81's header-only mode leaves process_environment::on_setup out.
#include <boost/process/v2/impl/environment.ipp>


#include <fmt/format.h>

namespace stepflow {

namespace asio = boost::asio;
namespace bp = boost::process::v2;
using steady = std::chrono::steady_clock;

namespace {

constexpr std::size_t max_line = std::size_t{64} << 20;
constexpr std::size_t stderr_lines_kept = 20;
constexpr auto reap_poll = std::chrono::milliseconds(10);

/// Runs in the child between fork and exec: its own process group, so a
/// kill reaches what it starts, and SIGKILL when stepflow dies (even by
/// kill -9), so no step process outlives it. (The launcher closes every
/// descriptor but stdin/out/err itself.)
struct child_setup {
  pid_t parent = ::getpid();
  template <class Launcher>
  bp::error_code on_exec_setup(Launcher&, const bp::filesystem::path&, const char* const*) {
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) // the parent died before prctl took effect
      ::_exit(1);
    return {};
  }
};

std::string describe_exit(int status) {
  if (WIFEXITED(status))
    return fmt::format("exited with status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return fmt::format("was killed by signal {}", WTERMSIG(status));
  return "ended";
}

} // namespace

std::uint64_t resident_bytes(int pid) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0)
      return std::strtoull(line.c_str() + 6, nullptr, 10) * 1024;
  return 0;
}

struct process_pool::impl : std::enable_shared_from_this<process_pool::impl> {
  struct group;

  enum class state { starting, idle, busy, closing, dead };

  struct worker : std::enable_shared_from_this<worker> {
    worker(asio::io_context& ctx, group& g)
      : g(g), in(ctx), out(ctx), err(ctx), tick(ctx), out_buf(max_line) {}
    group& g;
    int pid = -1;
    state st = state::starting;
    asio::writable_pipe in;
    asio::readable_pipe out;
    asio::readable_pipe err;
    asio::steady_timer tick;
    asio::streambuf out_buf;
    std::array<char, 4096> err_chunk{};
    std::string err_partial;
    std::deque<std::string> err_tail;
    std::deque<std::string> writes;
    bool writing = false;
    bool out_eof = false;
    bool err_eof = false;
    std::optional<int> exit_status;
    steady::time_point deadline = steady::time_point::max();
    steady::time_point reap_deadline = steady::time_point::max();
    std::optional<process_task> task;
    std::uint64_t task_seq = 0;
    std::uint64_t tasks_done = 0;
    /// Why we killed it (timeout, cancel, protocol error), if we did.
    std::optional<caf::error> kill_reason;
  };

  struct group {
    process_spec spec;
    std::deque<process_task> queue;
    std::vector<std::shared_ptr<worker>> workers;
    bool retired = false;
    process_group_stats stats; // guarded by impl::stats_mtx
  };

  explicit impl(process_pool_options o) : opts(o), guard(asio::make_work_guard(ctx)) {}

  process_pool_options opts;
  asio::io_context ctx;
  asio::executor_work_guard<asio::io_context::executor_type> guard;
  std::thread thread;
  mutable std::mutex groups_mtx;
  std::deque<std::unique_ptr<group>> groups;
  mutable std::mutex stats_mtx;
  bool stopping = false;
  std::promise<void> all_gone;
  bool all_gone_set = false;

  group& group_at(group_id id) {
    std::lock_guard<std::mutex> lock{groups_mtx};
    return *groups.at(id);
  }

  template <class F>
  void update_stats(group& g, F&& f) {
    std::lock_guard<std::mutex> lock{stats_mtx};
    f(g.stats);
  }

  void refresh_counts(group& g) {
    std::size_t busy = 0;
    for (auto& w : g.workers)
      busy += w->st == state::busy;
    update_stats(g, [&](process_group_stats& s) {
      s.processes = g.workers.size();
      s.busy = busy;
      s.queued = g.queue.size();
    });
  }

  // -- scheduling -------------------------------------------------------------

  void pump(group& g) {
    while (!g.queue.empty() && !stopping) {
      std::shared_ptr<worker> idle;
      std::size_t starting = 0;
      for (auto& w : g.workers) {
        if (w->st == state::idle && !idle)
          idle = w;
        starting += w->st == state::starting;
      }
      if (idle) {
        assign(*idle, std::move(g.queue.front()));
        g.queue.pop_front();
        continue;
      }
      if (g.workers.size() < std::max<std::size_t>(1, g.spec.concurrency)
          && starting < g.queue.size()) {
        if (!start_worker(g))
          continue; // the front task failed; try the next one
        continue;
      }
      break;
    }
    if (g.retired && g.queue.empty()) {
      auto workers = g.workers;
      for (auto& w : workers)
        if (w->st == state::idle)
          close_worker(w);
    }
    refresh_counts(g);
  }

  /// Starts one process; on failure fails the front task and returns false.
  bool start_worker(group& g) {
    auto w = std::make_shared<worker>(ctx, g);
    try {
      if (g.spec.argv.empty())
        throw std::runtime_error("no command");
      bp::filesystem::path exe = g.spec.argv.front();
      if (exe.is_relative() && exe.filename() == exe)
        exe = bp::environment::find_executable(g.spec.argv.front());
      if (exe.empty())
        throw std::runtime_error(fmt::format("{} was not found on PATH", g.spec.argv.front()));
      std::vector<std::string> args(g.spec.argv.begin() + 1, g.spec.argv.end());
      std::vector<std::string> env_text;
      for (auto it = ::environ; it && *it; ++it) {
        std::string_view kv{*it};
        auto eq = kv.find('=');
        bool replaced = false;
        for (auto& [k, v] : g.spec.env)
          replaced |= kv.substr(0, eq) == k;
        for (auto& k : g.spec.env_unset)
          replaced |= kv.substr(0, eq) == k;
        if (!replaced)
          env_text.emplace_back(kv);
      }
      for (auto& [k, v] : g.spec.env)
        env_text.push_back(k + "=" + v);
      bp::process proc(ctx, exe, args, bp::process_stdio{w->in, w->out, w->err},
                       bp::process_start_dir{g.spec.cwd.empty() ? "." : g.spec.cwd},
                       bp::process_environment{env_text}, child_setup{});
      w->pid = proc.id();
      proc.detach(); // reaped here with waitpid
    } catch (const std::exception& e) {
      auto task = std::move(g.queue.front());
      g.queue.pop_front();
      auto why = fmt::format("cannot start step process {} ({}): {}", g.spec.name,
                             g.spec.argv.empty() ? "" : g.spec.argv.front(), e.what());
      asio::post(ctx, [done = std::move(task.done), why]() {
        done(make_error(errc::step_failed, why));
      });
      return false;
    }
    update_stats(g, [](process_group_stats& s) { ++s.started; });
    w->deadline = steady::now() + g.spec.start_timeout;
    g.workers.push_back(w);
    read_line(w);
    read_err(w);
    arm_tick(w);
    return true;
  }

  void assign(worker& w, process_task task) {
    w.st = state::busy;
    ++w.task_seq;
    w.deadline = w.g.spec.task_timeout.count() > 0 ? steady::now() + w.g.spec.task_timeout
                                                    : steady::time_point::max();
    auto line = task.request + "\n";
    w.task = std::move(task);
    write(w.shared_from_this(), std::move(line));
    arm_tick(w.shared_from_this());
  }

  // -- pipes ------------------------------------------------------------------

  void write(const std::shared_ptr<worker>& w, std::string line) {
    if (w->st == state::dead || w->st == state::closing)
      return;
    w->writes.push_back(std::move(line));
    if (!w->writing)
      write_next(w);
  }

  void write_next(const std::shared_ptr<worker>& w) {
    if (w->writes.empty() || !w->in.is_open()) {
      w->writing = false;
      return;
    }
    w->writing = true;
    asio::async_write(w->in, asio::buffer(w->writes.front()),
                      [self = shared_from_this(), w](bp::error_code ec, std::size_t) {
                        w->writes.pop_front();
                        if (ec) {
                          w->writes.clear();
                          w->writing = false;
                          return; // the read side notices the death
                        }
                        self->write_next(w);
                      });
  }

  void read_line(const std::shared_ptr<worker>& w) {
    asio::async_read_until(
      w->out, w->out_buf, '\n', [self = shared_from_this(), w](bp::error_code ec, std::size_t n) {
        if (ec) {
          if (ec == asio::error::not_found) {
            self->protocol_error(w, "sent a line longer than 64 MiB");
            return;
          }
          w->out_eof = true;
          self->begin_reap(w);
          return;
        }
        std::string line(asio::buffers_begin(w->out_buf.data()),
                         asio::buffers_begin(w->out_buf.data()) + static_cast<long>(n) - 1);
        w->out_buf.consume(n);
        self->on_line(w, line);
        if (w->st != state::dead)
          self->read_line(w);
      });
  }

  void read_err(const std::shared_ptr<worker>& w) {
    w->err.async_read_some(asio::buffer(w->err_chunk),
                           [self = shared_from_this(), w](bp::error_code ec, std::size_t n) {
                             if (ec) {
                               if (!w->err_partial.empty())
                                 self->keep_err_line(*w, std::exchange(w->err_partial, {}));
                               w->err_eof = true;
                               return;
                             }
                             w->err_partial.append(w->err_chunk.data(), n);
                             std::size_t pos;
                             while ((pos = w->err_partial.find('\n')) != std::string::npos) {
                               self->keep_err_line(*w, w->err_partial.substr(0, pos));
                               w->err_partial.erase(0, pos + 1);
                             }
                             if (w->err_partial.size() > 4096)
                               self->keep_err_line(*w, std::exchange(w->err_partial, {}));
                             self->read_err(w);
                           });
  }

  void keep_err_line(worker& w, std::string line) {
    if (line.size() > 1000)
      line.resize(1000);
    w.err_tail.push_back(std::move(line));
    if (w.err_tail.size() > stderr_lines_kept)
      w.err_tail.pop_front();
  }

  // -- protocol ---------------------------------------------------------------

  void on_line(const std::shared_ptr<worker>& w, const std::string& line) {
    if (line.empty() || line == "\r")
      return;
    auto doc = parse_json(line, "step process output");
    if (!doc || !doc->is_object()) {
      protocol_error(w, fmt::format("wrote a line that is not a JSON object: {}",
                                    line.substr(0, 200)));
      return;
    }
    auto& msg = doc->get_object();
    auto* type = msg.if_contains("type");
    std::string_view t = type && type->is_string() ? std::string_view(type->get_string()) : "";
    if (w->st == state::starting) {
      if (t != "ready") {
        protocol_error(w, fmt::format("sent {} before \"ready\"", quote_json(t)));
        return;
      }
      auto* proto = msg.if_contains("protocol");
      if (!proto || !proto->is_number() || proto->to_number<double>() != 1) {
        protocol_error(w, fmt::format("speaks protocol {}, stepflow speaks 1",
                                      proto ? to_text(*proto) : "(none)"));
        return;
      }
      w->st = state::idle;
      w->deadline = steady::time_point::max();
      pump(w->g);
      return;
    }
    if (w->st != state::busy || !w->task)
      return; // stray line between tasks: ignored
    if (t == "result") {
      finish_task(w, std::move(msg));
      return;
    }
    if (w->task->on_message) {
      std::weak_ptr<worker> weak = w;
      auto seq = w->task_seq;
      process_reply reply = [self = shared_from_this(), weak, seq](std::string out) {
        asio::post(self->ctx, [self, weak, seq, out = std::move(out)]() mutable {
          auto wk = weak.lock();
          if (wk && wk->st == state::busy && wk->task_seq == seq)
            self->write(wk, std::move(out) + "\n");
        });
      };
      w->task->on_message(std::move(msg), reply);
    }
  }

  void finish_task(const std::shared_ptr<worker>& w, json::object result) {
    auto task = std::move(*w->task);
    w->task.reset();
    ++w->tasks_done;
    update_stats(w->g, [](process_group_stats& s) { ++s.tasks; });
    const auto& spec = w->g.spec;
    bool recycle = (spec.max_tasks && w->tasks_done >= spec.max_tasks)
                   || (spec.memory_limit_bytes && resident_bytes(w->pid) > spec.memory_limit_bytes);
    if (recycle) {
      update_stats(w->g, [](process_group_stats& s) { ++s.recycled; });
      close_worker(w);
    } else {
      w->st = state::idle;
      w->deadline = steady::time_point::max();
    }
    task.done(std::move(result));
    pump(w->g);
  }

  void protocol_error(const std::shared_ptr<worker>& w, std::string what) {
    kill_worker(w, make_error(errc::step_failed,
                              fmt::format("step process {} {}", w->g.spec.name, what)));
  }

  // -- ending processes --------------------------------------------------------

  /// Asks the process to exit (stdin closed); killed after exit_grace.
  void close_worker(const std::shared_ptr<worker>& w) {
    w->st = state::closing;
    bp::error_code ec;
    w->in.close(ec);
    w->writes.clear();
    w->deadline = steady::now() + opts.exit_grace;
    arm_tick(w);
  }

  void kill_worker(const std::shared_ptr<worker>& w, caf::error why) {
    if (!w->kill_reason)
      w->kill_reason = std::move(why);
    if (w->pid > 0)
      ::kill(-w->pid, SIGKILL), ::kill(w->pid, SIGKILL);
    bp::error_code ec;
    w->in.close(ec);
    w->writes.clear();
  }

  void begin_reap(const std::shared_ptr<worker>& w) {
    if (w->reap_deadline != steady::time_point::max())
      return;
    w->reap_deadline = steady::now() + opts.exit_grace;
    reap_step(w);
  }

  void reap_step(const std::shared_ptr<worker>& w) {
    if (!w->exit_status) {
      int status = 0;
      auto r = ::waitpid(w->pid, &status, WNOHANG);
      if (r == w->pid || (r < 0 && errno == ECHILD))
        w->exit_status = r == w->pid ? status : 0;
      else if (steady::now() >= w->reap_deadline) {
        kill_worker(w, make_error(errc::step_failed,
                                  fmt::format("step process {} closed its output but did not "
                                              "exit", w->g.spec.name)));
        w->reap_deadline = steady::now() + opts.exit_grace;
      }
    }
    // Give stderr a moment to drain so the error can quote its last lines.
    if (w->exit_status && (w->err_eof || steady::now() >= w->reap_deadline)) {
      finalize(w);
      return;
    }
    auto t = std::make_shared<asio::steady_timer>(ctx, reap_poll);
    t->async_wait([self = shared_from_this(), w, t](bp::error_code) { self->reap_step(w); });
  }

  void finalize(const std::shared_ptr<worker>& w) {
    auto& g = w->g;
    auto was = w->st;
    w->st = state::dead;
    bp::error_code ec;
    w->tick.cancel();
    w->out.close(ec);
    w->err.close(ec);
    w->in.close(ec);
    std::erase(g.workers, w);
    if (w->task) {
      auto task = std::move(*w->task);
      w->task.reset();
      update_stats(g, [](process_group_stats& s) { ++s.died; });
      caf::error err;
      if (w->kill_reason) {
        err = std::move(*w->kill_reason);
      } else {
        std::string tail;
        for (auto& l : w->err_tail)
          tail += (tail.empty() ? "" : " | ") + l;
        err = make_error(errc::step_failed,
                         fmt::format("step process {} {} during the task{}{}", g.spec.name,
                                     describe_exit(*w->exit_status),
                                     tail.empty() ? "" : "; stderr: ", tail));
      }
      task.done(std::move(err));
    } else if (was == state::starting && !g.queue.empty()) {
      // It never got ready: the task that started it learns why.
      auto task = std::move(g.queue.front());
      g.queue.pop_front();
      std::string tail;
      for (auto& l : w->err_tail)
        tail += (tail.empty() ? "" : " | ") + l;
      caf::error err = w->kill_reason
                         ? std::move(*w->kill_reason)
                         : make_error(errc::step_failed,
                                      fmt::format("step process {} {} before it was ready{}{}",
                                                  g.spec.name, describe_exit(*w->exit_status),
                                                  tail.empty() ? "" : "; stderr: ", tail));
      task.done(std::move(err));
    }
    pump(g);
    check_all_gone();
  }

  // -- the tick: deadlines and cancellation -------------------------------------

  void arm_tick(const std::shared_ptr<worker>& w) {
    w->tick.expires_after(opts.cancel_poll);
    w->tick.async_wait([self = shared_from_this(), w](bp::error_code ec) {
      if (ec || w->st == state::dead)
        return;
      self->on_tick(w);
    });
  }

  void on_tick(const std::shared_ptr<worker>& w) {
    auto now = steady::now();
    switch (w->st) {
      case state::starting:
        if (now >= w->deadline) {
          kill_worker(w, make_error(errc::timeout,
                                    fmt::format("step process {} did not say \"ready\" within {} s",
                                                w->g.spec.name,
                                                w->g.spec.start_timeout.count() / 1000.0)));
          return;
        }
        break;
      case state::busy:
        if (now >= w->deadline) {
          kill_worker(w, make_error(errc::timeout,
                                    fmt::format("step {} timed out after {} s; its process was "
                                                "killed", w->g.spec.name,
                                                w->g.spec.task_timeout.count() / 1000.0)));
          return;
        }
        if (w->task && w->task->is_cancelled && w->task->is_cancelled()) {
          kill_worker(w, make_error(errc::cancelled,
                                    fmt::format("step {} was cancelled; its process was killed",
                                                w->g.spec.name)));
          return;
        }
        break;
      case state::closing:
        if (now >= w->deadline) {
          kill_worker(w, make_error(errc::step_failed, "did not exit when asked"));
          return;
        }
        break;
      case state::idle:
      case state::dead:
        return; // no tick needed
    }
    arm_tick(w);
  }

  // -- shutdown ---------------------------------------------------------------

  void shutdown() {
    stopping = true;
    std::vector<group*> all;
    {
      std::lock_guard<std::mutex> lock{groups_mtx};
      for (auto& g : groups)
        all.push_back(g.get());
    }
    for (auto* g : all) {
      auto queued = std::move(g->queue);
      g->queue.clear();
      for (auto& t : queued)
        t.done(make_error(errc::unavailable, "the step process pool is stopping"));
      auto workers = g->workers;
      for (auto& w : workers) {
        if (w->task)
          w->kill_reason = make_error(errc::unavailable, "the step process pool is stopping");
        if (w->st != state::closing)
          close_worker(w);
      }
    }
    check_all_gone();
  }

  void check_all_gone() {
    if (!stopping || all_gone_set)
      return;
    std::lock_guard<std::mutex> lock{groups_mtx};
    for (auto& g : groups)
      if (!g->workers.empty())
        return;
    all_gone_set = true;
    all_gone.set_value();
  }
};

process_pool::process_pool(process_pool_options opts)
  : impl_(std::make_shared<impl>(opts)) {
  // A process that dies while we write to it must not take us with it.
  std::signal(SIGPIPE, SIG_IGN);
  impl_->thread = std::thread([i = impl_] {
    name_this_thread("sf-processes");
    i->ctx.run();
  });
}

process_pool::~process_pool() {
  auto gone = impl_->all_gone.get_future();
  asio::post(impl_->ctx, [i = impl_] { i->shutdown(); });
  // exit_grace for the polite exit, then the kill and the reap.
  gone.wait_for(impl_->opts.exit_grace * 2 + std::chrono::seconds(1));
  impl_->guard.reset();
  impl_->ctx.stop();
  impl_->thread.join();
}

process_pool::group_id process_pool::add_group(process_spec spec) {
  std::lock_guard<std::mutex> lock{impl_->groups_mtx};
  impl_->groups.push_back(std::make_unique<impl::group>());
  impl_->groups.back()->spec = std::move(spec);
  return impl_->groups.size() - 1;
}

void process_pool::retire(group_id group) {
  asio::post(impl_->ctx, [i = impl_, group] {
    auto& g = i->group_at(group);
    g.retired = true;
    i->pump(g);
  });
}

void process_pool::submit(group_id group, process_task task) {
  asio::post(impl_->ctx, [i = impl_, group, task = std::move(task)]() mutable {
    auto& g = i->group_at(group);
    if (i->stopping) {
      task.done(make_error(errc::unavailable, "the step process pool is stopping"));
      return;
    }
    g.queue.push_back(std::move(task));
    i->pump(g);
  });
}

process_group_stats process_pool::stats(group_id group) const {
  auto& g = impl_->group_at(group);
  std::lock_guard<std::mutex> lock{impl_->stats_mtx};
  return g.stats;
}

} // namespace stepflow
