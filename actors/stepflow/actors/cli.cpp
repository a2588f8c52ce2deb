#include "stepflow/actors/cli.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <optional>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include "stepflow/actors/client.hpp"
#include "stepflow/actors/engine.hpp"
#include "stepflow/actors/server.hpp"
#include "stepflow/runtime/cache.hpp"
#include "stepflow/runtime/clock.hpp"
#include "stepflow/runtime/content.hpp"
#include "stepflow/runtime/http_client.hpp"
#include "stepflow/runtime/kv_store.hpp"
#include "stepflow/runtime/launcher.hpp"
#include "stepflow/runtime/log_level.hpp"
#include "stepflow/runtime/plan.hpp"
#include "stepflow/runtime/resolve.hpp"
#include "stepflow/runtime/run_record.hpp"

namespace fs = std::filesystem;

namespace stepflow::actors {

/// Default data directory: $STEPFLOW_DATA_DIR, else ~/.local/share/stepflow.
std::string default_data_dir() {
  if (const char* d = std::getenv("STEPFLOW_DATA_DIR"); d && *d)
    return d;
  if (const char* h = std::getenv("HOME"); h && *h)
    return std::string(h) + "/.local/share/stepflow";
  return "./stepflow-data";
}

caf::error load_bundled_syncpacks(std::vector<syncpack_content>& out,
                                  const std::vector<std::string>& extra,
                                  const std::string& data_dir, const cli_environment& env);

namespace {

constexpr int exit_ok = 0;
constexpr int exit_failed = 1;
constexpr int exit_usage = 2;

std::atomic<int> g_signal{0};

extern "C" void on_signal(int sig) {
  g_signal = sig;
}

int fail(const std::string& sentence) {
  std::cerr << "stepflow: " << sentence << "\n";
  return exit_usage;
}


/// The SyncPacks shipped with the binary: $STEPFLOW_SYNCPACKS_DIR, else a
/// syncpacks/ folder beside or above the executable.
std::optional<std::string> bundled_syncpacks_dir() {
  if (const char* d = std::getenv("STEPFLOW_SYNCPACKS_DIR"); d && *d)
    return std::string(d);
  std::error_code ec;
  auto exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec)
    return std::nullopt;
  for (auto p : {exe.parent_path() / "syncpacks", exe.parent_path().parent_path() / "syncpacks",
                 fs::path("/usr/share/stepflow/syncpacks")})
    if (fs::is_directory(p, ec))
      return p.string();
  return std::nullopt;
}

/// Adds the --syncpack ones, then the bundled SyncPacks (every sub-directory
/// and wheel). Wheels are extracted below `<data_dir>/syncpacks/`.
caf::error load_syncpack_dirs(content_catalog& catalog, const std::vector<std::string>& extra,
                              bool bundled, const std::string& data_dir) {
  auto extract_root = (fs::path(data_dir) / "syncpacks").string();
  for (const auto& path : extra) {
    auto pack = load_syncpack(path, extract_root);
    if (!pack)
      return pack.error();
    catalog.add(std::move(*pack));
  }
  if (!bundled)
    return {};
  auto root = bundled_syncpacks_dir();
  if (!root)
    return {};
  std::error_code ec;
  std::vector<std::string> paths;
  for (const auto& e : fs::directory_iterator(*root, ec))
    if (e.is_directory() || (e.is_regular_file() && e.path().extension() == ".whl"))
      paths.push_back(e.path().string());
  std::sort(paths.begin(), paths.end());
  for (const auto& d : paths) {
    auto pack = load_syncpack(d, extract_root);
    if (!pack)
      return pack.error();
    catalog.add(std::move(*pack));
  }
  return {};
}

/// Loads the SyncPacks, then adds the step types that come with them.
caf::error load_syncpacks(content_catalog& catalog, const std::vector<std::string>& extra,
                          bool bundled, const std::string& data_dir, const cli_environment& env) {
  if (auto err = load_syncpack_dirs(catalog, extra, bundled, data_dir))
    return err;
  if (!env.add_content_steps)
    return {};
  return env.add_content_steps(catalog.syncpacks(), *env.registry);
}

} // namespace

/// The --syncpack directories, then every bundled SyncPack, and their steps.
caf::error load_bundled_syncpacks(std::vector<syncpack_content>& out,
                                  const std::vector<std::string>& extra,
                                  const std::string& data_dir, const cli_environment& env) {
  content_catalog catalog;
  if (auto err = load_syncpacks(catalog, extra, true, data_dir, env))
    return err;
  out = catalog.syncpacks();
  return {};
}

namespace {

bool looks_like_file(const std::string& s) {
  std::error_code ec;
  return s.find('/') != std::string::npos || (s.size() > 5 && s.substr(s.size() - 5) == ".json")
         || fs::is_regular_file(s, ec);
}

/// "k=v": v is parsed as JSON when it is valid JSON, else taken as a string.
caf::error parse_param(const std::string& kv, json::object& out) {
  auto eq = kv.find('=');
  if (eq == std::string::npos || eq == 0)
    return make_error(errc::invalid_argument,
                      fmt::format("--param {} must have the form key=value", quote_json(kv)));
  auto key = kv.substr(0, eq);
  auto text = kv.substr(eq + 1);
  auto v = parse_json(text, "param");
  out[key] = v ? std::move(*v) : json::value(json::string(text));
  return {};
}

// -- printing -----------------------------------------------------------------

std::string seconds_text(int64_t from, int64_t to) {
  if (from <= 0 || to < from)
    return "-";
  auto secs = static_cast<double>(to - from) / 1e9;
  if (secs < 1.0)
    return fmt::format("{:.1f}ms", secs * 1e3);
  return fmt::format("{:.3f}s", secs);
}

void print_step(const run_record& r, size_t i) {
  const auto& s = r.steps[i];
  std::string line = fmt::format("  {:<8} {:<32} {:>9}", to_string(s.status), s.name,
                                 seconds_text(s.started_ns, s.ended_ns));
  if (!s.error.empty())
    line += "  " + s.error;
  std::cout << line << std::endl;
}

void print_summary(const run_record& r) {
  size_t ok = 0, failed = 0, skipped = 0;
  for (const auto& s : r.steps) {
    ok += s.status == step_status::success;
    failed += s.status == step_status::failed;
    skipped += s.status == step_status::skipped;
  }
  std::cout << fmt::format("run {} {} in {}: {} succeeded, {} failed, {} skipped", r.task_id,
                           to_string(r.status), seconds_text(r.started_ns, r.ended_ns), ok,
                           failed, skipped)
            << std::endl;
}

// -- run ----------------------------------------------------------------------

/// Child runs for `stepflow run` (Trigger Application), in process: the
/// applications come from the same catalog (SyncPacks, the store).
class local_launcher final : public run_launcher {
public:
  local_launcher(const content_catalog& catalog, const step_registry& registry,
                 plan_options po)
    : catalog_(catalog), registry_(registry), po_(po) {}

  engine* eng = nullptr;

  void launch(child_run_request req,
              std::function<void(caf::expected<std::string>)> done) override {
    int depth = 0;
    {
      std::lock_guard<std::mutex> g{mtx_};
      if (auto it = depth_.find(req.parent_task); it != depth_.end())
        depth = it->second + 1;
    }
    if (depth + 1 >= max_run_depth)
      return done(make_error(errc::invalid_argument,
                             fmt::format("runs started by runs may nest at most {} deep; {} would "
                                         "start the {}th level", max_run_depth,
                                         quote_json(req.application), depth + 2)));
    auto app = catalog_.find_application(req.application);
    if (!app)
      return done(app.error());
    if (!*app)
      return done(make_error(errc::not_found,
                             fmt::format("no application named {}", quote_json(req.application))));
    auto shared = std::make_shared<const application>(std::move(**app));
    std::optional<configuration> cfg;
    auto cfg_name = req.configuration.empty() ? shared->configuration : req.configuration;
    if (!cfg_name.empty()) {
      auto c = catalog_.find_configuration(cfg_name);
      if (!c)
        return done(c.error());
      if (!*c)
        return done(make_error(errc::not_found,
                               fmt::format("no configuration named {}", quote_json(cfg_name))));
      cfg = std::move(**c);
    }
    auto plan = prepare_run(shared, cfg ? &*cfg : nullptr, req.params, -1, registry_, po_);
    if (!plan)
      return done(plan.error());
    run_record rec;
    rec.task_id = new_task_id();
    rec.params = req.params;
    rec.parent_task = req.parent_task;
    rec.queue = req.queue.empty() ? "default" : req.queue;
    rec.created_ns = system_clock().now_ns();
    auto id = rec.task_id;
    {
      std::lock_guard<std::mutex> g{mtx_};
      depth_[id] = depth;
      apps_[id] = shared;
    }
    run_observer obs;
    obs.on_done = [this](const run_record& r) {
      std::vector<std::function<void(std::optional<run_record>, json::value)>> ws;
      json::value result;
      {
        std::lock_guard<std::mutex> g{mtx_};
        std::vector<bool> sinks;
        if (auto it = apps_.find(r.task_id); it != apps_.end())
          for (const auto& succ : it->second->succs)
            sinks.push_back(succ.empty());
        result = child_result(r, sinks);
        done_.emplace(r.task_id, std::make_pair(r, result));
        if (auto it = waiters_.find(r.task_id); it != waiters_.end()) {
          ws = std::move(it->second);
          waiters_.erase(it);
        }
      }
      for (auto& w : ws)
        w(r, result);
    };
    eng->start(std::move(*plan), std::move(rec), std::move(obs));
    done(id);
  }

  void when_done(const std::string& task_id,
                 std::function<void(std::optional<run_record>, json::value)> done) override {
    std::unique_lock<std::mutex> g{mtx_};
    if (auto it = done_.find(task_id); it != done_.end()) {
      auto copy = it->second;
      g.unlock();
      done(std::move(copy.first), std::move(copy.second));
      return;
    }
    if (!depth_.count(task_id)) {
      g.unlock();
      done(std::nullopt, nullptr);
      return;
    }
    waiters_[task_id].push_back(std::move(done));
  }

private:
  const content_catalog& catalog_;
  const step_registry& registry_;
  plan_options po_;
  std::mutex mtx_;
  std::map<std::string, int> depth_;
  std::map<std::string, std::shared_ptr<const application>> apps_;
  std::map<std::string, std::pair<run_record, json::value>> done_;
  std::map<std::string,
           std::vector<std::function<void(std::optional<run_record>, json::value)>>> waiters_;
};

struct run_args {
  std::string target;
  std::string config;
  std::vector<std::string> params;
  std::string log_level;
  std::string data_dir;
  std::vector<std::string> syncpacks;
  bool json_output = false;
  double step_timeout = 300;
  int retention_days = 7;
};

int cmd_run(const run_args& a, const cli_environment& env) {
  json::object params;
  for (const auto& p : a.params)
    if (auto err = parse_param(p, params))
      return fail(message_of(err));
  int level = -1;
  if (!a.log_level.empty()) {
    auto l = parse_log_level(a.log_level);
    if (!l)
      return fail(fmt::format("--log-level {} is not debug, info, warning or error",
                              quote_json(a.log_level)));
    level = *l;
  }
  // Store (runs, cache, stored content).
  store_options so;
  so.path = a.data_dir.empty() ? default_data_dir() : a.data_dir;
  auto store = open_lmdb_store(so);
  if (!store)
    return fail(fmt::format("cannot open the data directory {}: {}", so.path,
                            message_of(store.error())));
  content_store stored{**store};
  content_catalog catalog{&stored};
  if (auto err = load_syncpacks(catalog, a.syncpacks, true, so.path, env))
    return fail(message_of(err));
  // Application.
  std::optional<application> app;
  if (looks_like_file(a.target)) {
    auto loaded = load_application_file(a.target);
    if (!loaded)
      return fail(message_of(loaded.error()));
    app = std::move(*loaded);
  } else {
    auto found = catalog.find_application(a.target);
    if (!found)
      return fail(message_of(found.error()));
    if (!*found)
      return fail(fmt::format("no application named {} (not a file, not in a SyncPack, not in "
                              "the store at {})", quote_json(a.target), so.path));
    app = std::move(**found);
  }
  // Configuration: --config (file or name), else the one the app is aligned with.
  std::optional<configuration> cfg;
  std::string cfg_name = a.config.empty() ? app->configuration : a.config;
  if (!cfg_name.empty()) {
    if (!a.config.empty() && looks_like_file(a.config)) {
      auto loaded = load_configuration_file(a.config);
      if (!loaded)
        return fail(message_of(loaded.error()));
      cfg = std::move(*loaded);
    } else {
      auto found = catalog.find_configuration(cfg_name);
      if (!found)
        return fail(message_of(found.error()));
      if (!*found)
        return fail(a.config.empty()
                      ? fmt::format("application {} is aligned with configuration {}, which was "
                                    "not found", quote_json(app->id), quote_json(cfg_name))
                      : fmt::format("no configuration named {}", quote_json(cfg_name)));
      cfg = std::move(**found);
    }
  }
  plan_options po;
  po.default_step_timeout_s = a.step_timeout;
  auto app_ptr = std::make_shared<const application>(std::move(*app));
  auto plan = prepare_run(app_ptr, cfg ? &*cfg : nullptr, params, level, *env.registry, po);
  if (!plan)
    return fail(message_of(plan.error()));
  // Retention: drop runs older than the retention window.
  run_store runs{**store};
  if (a.retention_days > 0) {
    auto cutoff = system_clock().now_ns() - int64_t{a.retention_days} * 86'400'000'000'000;
    (void) runs.purge_before(cutoff);
  }
  // Services and engine.
  stepflow::cache cache{**store, system_clock()};
  (void) cache.sweep_expired();
  http_client http;
  local_launcher launcher{catalog, *env.registry, po};
  step_services services{store->get(), &cache, &http, &system_clock(), &launcher};
  run_record rec;
  rec.task_id = new_task_id();
  rec.params = params;
  rec.created_ns = system_clock().now_ns();
  std::mutex mtx;
  std::condition_variable cv;
  std::optional<run_record> result;
  run_observer obs;
  bool quiet = a.json_output;
  if (!quiet)
    std::cout << fmt::format("task {} application {}{} log level {}", rec.task_id,
                             quote_json(app_ptr->id),
                             plan->configuration.empty()
                               ? std::string{}
                               : fmt::format(" configuration {}", quote_json(plan->configuration)),
                             log_level_name(plan->log_level))
              << std::endl;
  obs.on_step_end = [&](const run_record& r, size_t i) {
    if (quiet)
      return;
    // Called after the step's record (and logs) were committed.
    auto lines = runs.logs(r.task_id, i);
    std::lock_guard<std::mutex> guard{mtx};
    print_step(r, i);
    if (lines)
      for (const auto& l : *lines) {
        const auto& nm = r.steps[i].name;
        if (l.message == "start " + nm || l.message.rfind("stop " + nm + "|", 0) == 0)
          continue; // the table line already says it
        if (!r.steps[i].error.empty() && l.message == r.steps[i].error)
          continue;
        std::cout << fmt::format("           {:<8} {}", log_level_name(l.level), l.message)
                  << std::endl;
      }
  };
  obs.on_done = [&](const run_record& r) {
    std::lock_guard<std::mutex> guard{mtx};
    result = r;
    cv.notify_all();
  };
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  {
    engine eng{engine_options{}, services};
    launcher.eng = &eng;
    auto id = rec.task_id;
    eng.start(std::move(*plan), std::move(rec), obs);
    std::unique_lock<std::mutex> guard{mtx};
    bool revoked = false;
    while (!result) {
      cv.wait_for(guard, std::chrono::milliseconds(100));
      if (g_signal && !revoked) {
        revoked = true;
        guard.unlock();
        if (!quiet)
          std::cerr << "stepflow: interrupted, revoking the run" << std::endl;
        eng.revoke(id, true);
        guard.lock();
      }
    }
  }
  // Full record with data from the store (the committed truth).
  auto final_rec = *result;
  if (a.json_output) {
    auto stored_rec = runs.load(final_rec.task_id);
    if (stored_rec && *stored_rec)
      final_rec = std::move(**stored_rec);
    std::cout << to_pretty_json(to_json(final_rec, true)) << std::endl;
  } else {
    print_summary(final_rec);
  }
  return final_rec.status == run_status::success ? exit_ok : exit_failed;
}

// -- validate -----------------------------------------------------------------

int cmd_validate(const std::vector<std::string>& files, const std::vector<std::string>& packs,
                 const cli_environment& env) {
  content_catalog catalog;
  if (auto err = load_syncpacks(catalog, packs, true, default_data_dir(), env))
    return fail(message_of(err));
  int bad = 0;
  for (const auto& f : files) {
    auto doc = load_json_file(f);
    if (!doc) {
      std::cerr << "stepflow: " << message_of(doc.error()) << "\n";
      ++bad;
      continue;
    }
    bool is_app = doc->is_object() && doc->get_object().contains("steps");
    if (is_app) {
      auto app = parse_application(*doc, f, file_stem(f));
      if (!app) {
        std::cerr << "stepflow: " << message_of(app.error()) << "\n";
        ++bad;
        continue;
      }
      std::string unknown;
      for (size_t i = 0; i < app->steps.size(); ++i)
        if (!env.registry->find(app->steps[i].file)) {
          unknown = fmt::format("{}: steps[{}].file: unknown step type {}", f, i,
                                quote_json(app->steps[i].file));
          break;
        }
      if (!unknown.empty()) {
        std::cerr << "stepflow: " << unknown << "\n";
        ++bad;
        continue;
      }
      std::cout << fmt::format("ok: {}: application {} with {} steps", f, quote_json(app->id),
                               app->steps.size())
                << "\n";
    } else {
      auto cfg = parse_configuration(*doc, f, file_stem(f));
      if (cfg) {
        auto values = resolve_configuration(*cfg);
        if (!values) {
          std::cerr << "stepflow: " << f << ": " << message_of(values.error()) << "\n";
          ++bad;
          continue;
        }
        std::cout << fmt::format("ok: {}: configuration {} with {} values", f,
                                 quote_json(cfg->name), cfg->data.size())
                  << "\n";
      } else {
        std::cerr << "stepflow: "
                  << (doc->is_object() && !doc->get_object().contains("configuration_data")
                        ? fmt::format("{}: neither an application (no \"steps\") nor a "
                                      "configuration (no \"configuration_data\")", f)
                        : message_of(cfg.error()))
                  << "\n";
        ++bad;
      }
    }
  }
  return bad ? exit_usage : exit_ok;
}

int cmd_steps(const cli_environment& env, const std::vector<std::string>& packs, bool as_json) {
  content_catalog catalog;
  if (auto err = load_syncpacks(catalog, packs, true, default_data_dir(), env))
    return fail(message_of(err));
  if (as_json) {
    json::array out;
    for (const auto* t : env.registry->all())
      out.push_back(to_json(t->info()));
    std::cout << to_pretty_json(out) << std::endl;
    return exit_ok;
  }
  for (const auto* t : env.registry->all()) {
    const auto& i = t->info();
    std::cout << fmt::format("{:<18} {}", i.name, i.description) << "\n";
    for (const auto& p : i.params)
      std::cout << fmt::format("    {:<16} {}{}", p.name, p.required ? "(required) " : "",
                               p.description)
                << "\n";
  }
  return exit_ok;
}

} // namespace

int run_cli(int argc, char** argv, const cli_environment& env) {
  if (wants_client(argc, argv))
    return run_client(argc, argv, env);
  CLI::App app{"stepflow: run PowerFlow-compatible integration applications", "stepflow"};
  app.require_subcommand(0, 1);
  app.set_version_flag("--version", "stepflow " + env.version);

  run_args ra;
  if (const char* r = std::getenv("STEPFLOW_RETENTION_DAYS"); r && *r)
    ra.retention_days = std::atoi(r);
  auto* run = app.add_subcommand("run", "Run an application and wait for it to finish");
  run->add_option("app", ra.target, "Application file (.json) or application id")->required();
  run->add_option("--config", ra.config, "Configuration object: a file or a name");
  run->add_option("--param", ra.params, "One-time parameter key=value (repeatable)");
  run->add_option("--log-level", ra.log_level, "debug, info, warning or error");
  run->add_option("--data-dir", ra.data_dir, "Store directory (default $STEPFLOW_DATA_DIR or ~/.local/share/stepflow)");
  run->add_option("--syncpack", ra.syncpacks, "Load a SyncPack directory (repeatable)");
  run->add_option("--step-timeout", ra.step_timeout, "Default step timeout in seconds")
    ->check(CLI::PositiveNumber);
  run->add_flag("--json", ra.json_output, "Print the task object as JSON instead of a table");
  run->add_option("--retention-days", ra.retention_days,
                  "Delete runs older than this many days before running (0 keeps all; default 7, "
                  "or $STEPFLOW_RETENTION_DAYS)")
    ->check(CLI::NonNegativeNumber);

  std::vector<std::string> vfiles;
  auto* validate = app.add_subcommand("validate", "Check application and configuration files");
  validate->add_option("files", vfiles, "Files to check")->required();
  std::vector<std::string> vpacks;
  validate->add_option("--syncpack", vpacks, "Also load a SyncPack directory and its steps (repeatable)");

  bool steps_json = false;
  auto* steps = app.add_subcommand("steps", "List the step types this build provides");
  steps->add_flag("--json", steps_json, "Print as JSON");
  std::vector<std::string> spacks;
  steps->add_option("--syncpack", spacks, "Also load a SyncPack directory and its steps (repeatable)");

  serve_options so;
  if (const char* r = std::getenv("STEPFLOW_RETENTION_DAYS"); r && *r)
    so.retention_days = std::atoi(r);
  auto* serve = app.add_subcommand("serve", "Run the server: PowerFlow REST API, queues, workers");
  serve->add_option("--listen", so.listen, "HOST:PORT to listen on (default 127.0.0.1:8080)");
  serve->add_option("--data-dir", so.data_dir, "Store directory");
  serve->add_option("--workers", so.workers, "Runs at once per queue (default 64)");
  serve->add_option("--queue-workers", so.queue_workers,
                    "Workers of one queue, NAME=N (repeatable; 0 keeps its runs queued)");
  serve->add_option("--max-queue-depth", so.max_queue_depth,
                    "Accepted but unfinished runs before POST .../run answers 503");
  serve->add_option("--http-threads", so.http_threads, "HTTP I/O threads (default 1)");
  serve->add_option("--tls-cert", so.tls_cert, "PEM certificate chain (enables TLS)");
  serve->add_option("--tls-key", so.tls_key, "PEM private key");
  serve->add_option("--syncpack", so.syncpacks, "Install a SyncPack directory (repeatable)");
  serve->add_option("--port-file", so.port_file, "Write the bound port to this file");
  serve->add_option("--shutdown-grace", so.shutdown_grace_s,
                    "Seconds running runs get to finish on SIGTERM (default 10)");
  serve->add_option("--retention-days", so.retention_days, "Delete runs older than this (default 7)");
  bool no_sync = false;
  serve->add_flag("--no-sync", no_sync, "Do not fsync commits (benchmarks only: loses durability)");

  auto* help = app.add_subcommand("help", "Show this help");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    std::cout << app.help();
    return exit_ok;
  } catch (const CLI::CallForAllHelp& e) {
    std::cout << app.help();
    return exit_ok;
  } catch (const CLI::CallForVersion& e) {
    std::cout << e.what() << "\n";
    return exit_ok;
  } catch (const CLI::ParseError& e) {
    std::cerr << "stepflow: " << e.what() << " (see stepflow help)\n";
    return exit_usage;
  }
  try {
    if (run->parsed())
      return cmd_run(ra, env);
    if (validate->parsed())
      return cmd_validate(vfiles, vpacks, env);
    if (steps->parsed())
      return cmd_steps(env, spacks, steps_json);
    if (serve->parsed()) {
      so.sync = !no_sync;
      return run_server(so, env);
    }
    (void) help; // "stepflow help" and no command both print the overview
    std::cout << app.get_formatter()->make_help(&app, "stepflow", CLI::AppFormatMode::Normal);
    return exit_ok;
  } catch (const std::exception& e) {
    return fail(fmt::format("internal error: {}", e.what()));
  }
}

} // namespace stepflow::actors
