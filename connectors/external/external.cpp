// External-process step types: one process_pool group per step type; run()
// writes the task line and returns; the pool's thread turns the process's
// lines into log lines, cache calls and the step outcome.
#include "external/external.hpp"

#include <algorithm>
#include <atomic>
#include <deque>
#include <cctype>
#include <mutex>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>

#include <fmt/format.h>

#include "stepflow/runtime/cache.hpp"
#include "stepflow/runtime/log_level.hpp"
#include "stepflow/runtime/process_pool.hpp"

namespace stepflow::connectors {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view scope = "external";

struct external_options {
  std::string python = "/usr/bin/python3";
  std::string python_lib;
  std::size_t concurrency = 4;
  std::uint64_t memory_limit_mb = 1024;
  std::uint64_t max_tasks = 0;
  double start_timeout_s = 30;
};

/// The folder holding stepflow_step_host.py: $STEPFLOW_PYTHON_LIB, else
/// connectors/python beside or above the binary, else the installed copy.
std::string find_python_lib() {
  if (const char* d = std::getenv("STEPFLOW_PYTHON_LIB"); d && *d)
    return d;
  std::error_code ec;
  auto exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec)
    for (auto p : {exe.parent_path() / "python", exe.parent_path() / "connectors" / "python",
                   exe.parent_path().parent_path() / "connectors" / "python"})
      if (fs::exists(p / "stepflow_step_host.py", ec))
        return p.string();
  return "/usr/share/stepflow/python";
}

int level_of(std::string_view name) {
  if (name == "debug")
    return log_level::debug;
  if (name == "warning" || name == "warn")
    return log_level::warning;
  if (name == "error" || name == "critical" || name == "exception")
    return log_level::error;
  return log_level::info; // info, flow, anything else
}

/// The process pool and everything the step types share; outlives every run
/// (the registry and in-flight callbacks hold it).
struct shared_state {
  process_pool pool;
};

class external_step final : public step_type {
public:
  /// The group of a deleted uploaded step.
  static constexpr process_pool::group_id deleted = static_cast<process_pool::group_id>(-1);

  external_step(std::shared_ptr<shared_state> state, process_pool::group_id group, step_info info)
    : state_(std::move(state)), group_(group) {
    infos_.push_back(std::move(info));
    info_ = &infos_.back();
  }

  const step_info& info() const noexcept override { return *info_.load(); }

  /// A new description (an uploaded step replaced). Earlier ones stay
  /// allocated, so a reference handed out by info() never dangles.
  void set_info(step_info info) {
    std::lock_guard<std::mutex> guard{infos_mtx_};
    infos_.push_back(std::move(info));
    info_ = &infos_.back();
  }

  /// Points the step at other processes (an uploaded step's new code, or
  /// `deleted`); returns the previous group. Runs already queued keep theirs.
  process_pool::group_id swap_group(process_pool::group_id g) noexcept {
    return group_.exchange(g);
  }
  bool is_deleted() const noexcept { return group_.load() == deleted; }
  process_pool::group_id group() const noexcept { return group_.load(); }

  void run(std::shared_ptr<step_context> ctx, step_done done) const override {
    auto group = group_.load();
    if (group == deleted) {
      done(step_outcome::failure(fmt::format("step type {} was deleted", info().name)));
      return;
    }
    process_task task;
    task.id = fmt::format("{}:{}", ctx->run_id, ctx->step_name);
    task.request = request_line(*ctx, task.id);
    task.is_cancelled = [ctx] { return ctx->cancelled.load(); };
    task.on_message = [ctx](json::object msg, const process_reply& reply) {
      on_message(*ctx, std::move(msg), reply);
    };
    task.done = [done = std::move(done)](caf::expected<json::object> result) {
      if (!result) {
        done(step_outcome::failure(message_of(result.error())));
        return;
      }
      auto& r = *result;
      json::value data = nullptr;
      if (auto* d = r.if_contains("data"))
        data = std::move(*d);
      auto* ok = r.if_contains("ok");
      if (ok && ok->is_bool() && ok->get_bool()) {
        done(step_outcome::success(std::move(data)));
        return;
      }
      std::string why = "the step failed";
      if (auto* e = r.if_contains("error"); e && e->is_string() && !e->get_string().empty())
        why = std::string(e->get_string());
      done(step_outcome::failure(std::move(why), std::move(data)));
    };
    state_->pool.submit(group, std::move(task));
  }

private:
  /// The "run" line, serialised piecewise so step data is never copied.
  std::string request_line(const step_context& ctx, const std::string& id) const {
    std::string out;
    out.reserve(512);
    out += fmt::format(R"({{"type":"run","protocol":1,"id":{},"run_id":{},"application":{},)",
                       quote_json(id), quote_json(ctx.run_id), quote_json(ctx.application));
    out += fmt::format(R"("step":{{"name":{},"file":{},"syncpack":{}}},"params":)",
                       quote_json(ctx.step_name), quote_json(ctx.step_type),
                       quote_json(info().syncpack));
    out += to_json(ctx.params);
    out += R"(,"inputs":[)";
    bool first = true;
    for (const auto& [name, data] : ctx.inputs) {
      out += first ? "" : ",";
      first = false;
      out += fmt::format(R"({{"name":{},"data":)", quote_json(name));
      out += data ? to_json(*data) : "null";
      out += "}";
    }
    out += R"(],"app_variables":)";
    out += ctx.app_variables ? to_json(*ctx.app_variables) : "{}";
    out += R"(,"configuration":)";
    out += ctx.configuration ? to_json(*ctx.configuration) : "{}";
    out += fmt::format(R"(,"log_level":{}}})", ctx.log_level);
    return out;
  }

  static void on_message(step_context& ctx, json::object msg, const process_reply& reply) {
    auto type = msg.if_contains("type");
    std::string_view t = type && type->is_string() ? std::string_view(type->get_string()) : "";
    if (t == "log") {
      auto* lvl = msg.if_contains("level");
      auto* text = msg.if_contains("message");
      ctx.log(level_of(lvl && lvl->is_string() ? std::string_view(lvl->get_string()) : "info"),
              text ? to_text(*text) : std::string{});
      return;
    }
    if (t == "cache") {
      cache_call(ctx, std::move(msg), reply);
      return;
    }
    // Unknown message types are ignored: newer programs may send more.
  }

  static void cache_call(step_context& ctx, json::object msg, const process_reply& reply) {
    json::value request = msg.contains("request") ? msg["request"] : json::value(nullptr);
    json::value id = msg.contains("id") ? msg["id"] : json::value(nullptr);
    auto answer = [reply, request, id](caf::expected<json::value> v) {
      json::object out{{"type", "cache_result"}, {"id", id}, {"request", request}};
      if (v) {
        out["ok"] = true;
        out["value"] = std::move(*v);
      } else {
        out["ok"] = false;
        out["error"] = message_of(v.error());
      }
      reply(to_json(out));
    };
    auto* c = ctx.services.cache;
    auto* op = msg.if_contains("op");
    auto* key = msg.if_contains("key");
    if (!c) {
      answer(make_error(errc::unavailable, "no cache in this run"));
      return;
    }
    if (!op || !op->is_string() || !key || !key->is_string() || key->get_string().empty()) {
      answer(make_error(errc::invalid_argument, "a cache request needs \"op\" and \"key\""));
      return;
    }
    std::string k(key->get_string());
    if (op->get_string() == "get") {
      auto v = c->get(k);
      if (!v)
        answer(std::move(v.error()));
      else
        answer(*v ? std::move(**v) : json::value(nullptr));
    } else if (op->get_string() == "save") {
      int64_t ttl = 0;
      if (auto* t = msg.if_contains("ttl"); t && t->is_number())
        ttl = t->to_number<int64_t>();
      json::value value = msg.contains("value") ? msg["value"] : json::value(nullptr);
      c->put_async(k, value, ttl, [answer](caf::error err) {
        answer(err ? caf::expected<json::value>(std::move(err)) : json::value(true));
      });
    } else if (op->get_string() == "delete") {
      // The answer says whether something was there (a racing writer may
      // make it stale; the entry is gone either way).
      auto existed = c->get(k);
      bool was = existed && *existed;
      c->erase_async(k, [answer, was](caf::error err) {
        answer(err ? caf::expected<json::value>(std::move(err)) : json::value(was));
      });
    } else {
      answer(make_error(errc::invalid_argument,
                        fmt::format("unknown cache op {}", quote_json(op->get_string()))));
    }
  }

  std::shared_ptr<shared_state> state_;
  std::atomic<process_pool::group_id> group_;
  std::mutex infos_mtx_;
  std::deque<step_info> infos_;
  std::atomic<const step_info*> info_{nullptr};
};

/// Uploaded steps (POST /api/v1/steps) by name. Entries are never removed,
/// so a type handed out stays valid; a deleted one is simply not found.
class uploaded_steps final : public dynamic_step_source {
public:
  const step_type* find(std::string_view file) const noexcept override {
    std::lock_guard<std::mutex> guard{mtx};
    auto it = steps.find(file);
    return it == steps.end() || it->second->is_deleted() ? nullptr : it->second.get();
  }
  std::vector<const step_type*> all() const override {
    std::lock_guard<std::mutex> guard{mtx};
    std::vector<const step_type*> out;
    for (auto& [_, s] : steps)
      if (!s->is_deleted())
        out.push_back(s.get());
    return out;
  }

  mutable std::mutex mtx;
  std::map<std::string, std::shared_ptr<external_step>, std::less<>> steps;
  std::uint64_t version = 0;
};

bool is_identifier(std::string_view s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s.front())))
    return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

// -- manifests ------------------------------------------------------------------

struct found_step {
  step_info info;
  process_spec spec;
  std::string file; ///< for messages
};

caf::expected<found_step> read_manifest(const fs::path& file, const std::string& pack,
                                        const process_spec& defaults) {
  auto doc = load_json_file(file.string());
  if (!doc)
    return std::move(doc.error());
  auto where = file.string();
  if (!doc->is_object())
    return make_error(errc::invalid_definition, fmt::format("{}: must be a JSON object", where));
  auto& o = doc->get_object();
  if (auto err = reject_unknown(o, where,
                                {"name", "command", "friendly_name", "description", "version",
                                 "parameters", "concurrency", "timeout", "memory_limit_mb",
                                 "max_tasks", "env"}))
    return err;
  found_step s;
  s.file = where;
  s.spec = defaults;
  auto stem = file.filename().string();
  stem = stem.substr(0, stem.size() - std::string_view(".step.json").size());
  auto name = option_string(o, where, "name", stem);
  if (!name)
    return std::move(name.error());
  s.info.name = *name;
  s.info.syncpack = pack;
  s.spec.name = *name;
  auto* cmd = o.if_contains("command");
  if (!cmd || !cmd->is_array() || cmd->get_array().empty())
    return make_error(errc::invalid_definition,
                      fmt::format("{}: command must be a non-empty array of strings", where));
  for (auto& a : cmd->get_array()) {
    if (!a.is_string())
      return make_error(errc::invalid_definition,
                        fmt::format("{}: command must be a non-empty array of strings", where));
    s.spec.argv.emplace_back(a.get_string());
  }
  // A relative command with a slash is relative to the manifest's folder.
  if (fs::path p = s.spec.argv[0]; p.is_relative() && p.filename() != p)
    s.spec.argv[0] = (file.parent_path() / p).lexically_normal().string();
  s.spec.cwd = file.parent_path().string();
  for (auto [key, field] : {std::pair{"friendly_name", &s.info.friendly_name},
                            std::pair{"description", &s.info.description},
                            std::pair{"version", &s.info.version}}) {
    auto v = option_string(o, where, key, *field);
    if (!v)
      return std::move(v.error());
    *field = *v;
  }
  if (s.info.friendly_name.empty())
    s.info.friendly_name = s.info.name;
  if (auto* ps = o.if_contains("parameters")) {
    if (!ps->is_array())
      return make_error(errc::invalid_definition, fmt::format("{}: parameters must be an array", where));
    for (auto& p : ps->get_array()) {
      if (!p.is_object() || !p.get_object().contains("name")
          || !p.get_object().at("name").is_string())
        return make_error(errc::invalid_definition,
                          fmt::format("{}: every parameter needs a \"name\"", where));
      auto& po = p.get_object();
      param_info pi;
      pi.name = std::string(po.at("name").get_string());
      if (auto* d = po.if_contains("description"); d && d->is_string())
        pi.description = std::string(d->get_string());
      if (auto* r = po.if_contains("required"); r && r->is_bool())
        pi.required = r->get_bool();
      if (auto* d = po.if_contains("default_value"))
        pi.default_value = *d;
      if (auto* t = po.if_contains("type"); t && t->is_string())
        pi.type = std::string(t->get_string());
      s.info.params.push_back(std::move(pi));
    }
  }
  auto num = [&](std::string_view key, double fallback) { return option_number(o, where, key, fallback); };
  auto conc = num("concurrency", static_cast<double>(s.spec.concurrency));
  auto timeout = num("timeout", 0);
  auto mem = num("memory_limit_mb", static_cast<double>(s.spec.memory_limit_bytes >> 20));
  auto max_tasks = num("max_tasks", static_cast<double>(s.spec.max_tasks));
  for (auto* v : {&conc, &timeout, &mem, &max_tasks})
    if (!*v)
      return std::move(v->error());
  if (*conc < 1)
    return make_error(errc::invalid_definition, fmt::format("{}: concurrency must be at least 1", where));
  s.spec.concurrency = static_cast<std::size_t>(*conc);
  s.spec.task_timeout = std::chrono::milliseconds(static_cast<int64_t>(std::max(0.0, *timeout) * 1000));
  s.spec.memory_limit_bytes = static_cast<std::uint64_t>(std::max(0.0, *mem)) << 20;
  s.spec.max_tasks = static_cast<std::uint64_t>(std::max(0.0, *max_tasks));
  if (auto* env = o.if_contains("env")) {
    if (!env->is_object())
      return make_error(errc::invalid_definition, fmt::format("{}: env must be an object", where));
    for (auto& kv : env->get_object())
      s.spec.env.emplace_back(std::string(kv.key()), to_text(kv.value()));
  }
  return s;
}

found_step python_step(const fs::path& file, const std::string& pack, const process_spec& defaults,
                       const external_options& o) {
  found_step s;
  s.file = file.string();
  s.spec = defaults;
  s.info.name = file.stem().string();
  s.info.friendly_name = s.info.name;
  s.info.description = fmt::format("PowerFlow Python step {}/steps/{}", pack,
                                   file.filename().string());
  s.info.syncpack = pack;
  s.spec.name = s.info.name;
  s.spec.argv = {o.python, (fs::path(o.python_lib) / "stepflow_step_host.py").string(),
                 "--step-file", fs::absolute(file).string(), "--syncpack", pack};
  s.spec.cwd = file.parent_path().string();
  s.spec.env = {{"PYTHONDONTWRITEBYTECODE", "1"}, {"PYTHONUNBUFFERED", "1"}};
  return s;
}

class external_connector final : public connector {
public:
  external_connector(external_options o, process_spec defaults, std::vector<found_step> steps)
    : opts_(std::move(o)), defaults_(std::move(defaults)), steps_(std::move(steps)),
      state_(std::make_shared<shared_state>()), uploaded_(std::make_shared<uploaded_steps>()) {}

  /// Makes an uploaded Python step runnable: its code goes to
  /// <data_dir>/uploaded_steps/<name>/<version>/<syncpack>/steps/<name>.py and
  /// new processes run it; processes of the previous code end once idle.
  caf::error install(const json::object& def, const std::string& data_dir) {
    auto str = [&](std::string_view key, std::string fallback) {
      auto* v = def.if_contains(key);
      return v && v->is_string() && !v->get_string().empty() ? std::string(v->get_string())
                                                             : std::move(fallback);
    };
    auto name = str("name", "");
    if (!is_identifier(name))
      return make_error(errc::invalid_argument,
                        "name: must be a Python class name (letters, digits, _)");
    if (auto lang = str("language", "python"); lang != "python")
      return make_error(errc::invalid_argument,
                        fmt::format("language: only Python steps run (got {})", quote_json(lang)));
    auto* code = def.if_contains("code");
    if (!code || !code->is_string())
      return make_error(errc::invalid_argument, "code: required: the step's source as a string");
    auto pack = str("syncpack", "uploaded_steps");
    if (!is_identifier(pack))
      return make_error(errc::invalid_argument,
                        "syncpack: must be a Python package name (letters, digits, _)");
    std::lock_guard<std::mutex> guard{uploaded_->mtx};
    fs::path root = fs::path(data_dir) / "uploaded_steps";
    std::error_code ec;
    if (uploaded_->version == 0)
      fs::remove_all(root, ec); // what an earlier process left
    auto version = ++uploaded_->version;
    auto file = root / name / std::to_string(version) / pack / "steps" / (name + ".py");
    fs::create_directories(file.parent_path(), ec);
    if (ec)
      return make_error(errc::io_error, fmt::format("cannot create {}: {}",
                                                    file.parent_path().string(), ec.message()));
    if (auto err = write_file(file.string(), code->get_string()))
      return err;
    auto found = python_step(file, pack, defaults_, opts_);
    auto group = state_->pool.add_group(found.spec);
    found.info.friendly_name = str("friendly_name", name);
    found.info.description = str("description", "Uploaded PowerFlow Python step");
    found.info.version = str("version", "1.0.0");
    if (auto it = uploaded_->steps.find(name); it != uploaded_->steps.end()) {
      it->second->set_info(std::move(found.info));
      auto old = it->second->swap_group(group);
      if (old != external_step::deleted)
        state_->pool.retire(old);
      return {};
    }
    uploaded_->steps.emplace(name, std::make_shared<external_step>(state_, group, found.info));
    return {};
  }

  /// Deleted uploaded steps are no longer found; their processes end once idle.
  void remove(const std::string& name) {
    std::lock_guard<std::mutex> guard{uploaded_->mtx};
    if (auto it = uploaded_->steps.find(name); it != uploaded_->steps.end()) {
      auto old = it->second->swap_group(external_step::deleted);
      if (old != external_step::deleted)
        state_->pool.retire(old);
    }
  }

  caf::error add_steps(step_registry& registry) override {
    registry.set_dynamic(uploaded_);
    for (auto& s : steps_) {
      if (registry.find(s.info.name)) {
        // A SyncPack's own copy of a built-in step (e.g. an exported
        // base_steps_syncpack/steps/QueryREST.py): the native one is used.
        std::cerr << fmt::format("stepflow: {} is not used: the built-in step {} has that name\n",
                                 s.file, s.info.name);
        continue;
      }
      auto group = state_->pool.add_group(s.spec);
      if (auto err = registry.add(std::make_shared<external_step>(state_, group, s.info)))
        return err;
      fixed_.emplace_back(s.info.name, group);
    }
    steps_.clear();
    return {};
  }

  /// Counters of the step types whose processes have started.
  json::object status() const {
    json::object types;
    auto add = [&](const std::string& name, process_pool::group_id g) {
      auto st = state_->pool.stats(g);
      if (st.started == 0)
        return;
      types[name] = json::object{{"processes", st.processes}, {"busy", st.busy},
                                 {"queued", st.queued},       {"started", st.started},
                                 {"recycled", st.recycled},   {"died", st.died},
                                 {"tasks", st.tasks}};
    };
    for (const auto& [name, g] : fixed_)
      add(name, g);
    std::lock_guard<std::mutex> guard{uploaded_->mtx};
    for (const auto& [name, step] : uploaded_->steps)
      if (!step->is_deleted())
        add(name, step->group());
    return json::object{{"step_processes", std::move(types)}};
  }

private:
  std::vector<std::pair<std::string, process_pool::group_id>> fixed_;
  external_options opts_;
  process_spec defaults_;
  std::vector<found_step> steps_;
  std::shared_ptr<shared_state> state_;
  std::shared_ptr<uploaded_steps> uploaded_;
};

} // namespace

caf::expected<std::shared_ptr<connector>> make_external_connector(const connector_setup& setup) {
  const auto& o = *setup.options;
  if (auto err = reject_unknown(o, scope, {"python", "python_lib", "concurrency", "memory_limit_mb",
                                           "max_tasks", "start_timeout"}))
    return err;
  external_options opts;
  auto python = option_string(o, scope, "python", opts.python);
  auto lib = option_string(o, scope, "python_lib", "");
  auto conc = option_number(o, scope, "concurrency", 4);
  auto mem = option_number(o, scope, "memory_limit_mb", 1024);
  auto max_tasks = option_number(o, scope, "max_tasks", 0);
  auto start = option_number(o, scope, "start_timeout", 30);
  if (!python)
    return std::move(python.error());
  if (!lib)
    return std::move(lib.error());
  for (auto* v : {&conc, &mem, &max_tasks, &start})
    if (!*v)
      return std::move(v->error());
  if (*conc < 1)
    return make_error(errc::invalid_definition, "external.concurrency must be at least 1");
  if (*start <= 0)
    return make_error(errc::invalid_definition, "external.start_timeout must be positive");
  opts.python = *python;
  opts.python_lib = lib->empty() ? find_python_lib() : *lib;
  opts.concurrency = static_cast<std::size_t>(*conc);
  opts.memory_limit_mb = static_cast<std::uint64_t>(std::max(0.0, *mem));
  opts.max_tasks = static_cast<std::uint64_t>(std::max(0.0, *max_tasks));
  opts.start_timeout_s = *start;

  process_spec defaults;
  // Step code is not stepflow: it never sees the administrator's password.
  defaults.env_unset = {"STEPFLOW_ADMIN_PASSWORD"};
  defaults.concurrency = opts.concurrency;
  defaults.memory_limit_bytes = opts.memory_limit_mb << 20;
  defaults.max_tasks = opts.max_tasks;
  defaults.start_timeout = std::chrono::milliseconds(static_cast<int64_t>(opts.start_timeout_s * 1000));

  std::vector<found_step> steps;
  std::map<std::string, std::string> seen; // step name -> file
  for (const auto& pack : *setup.syncpacks) {
    fs::path dir = fs::path(pack.dir) / "steps";
    std::error_code ec;
    if (!fs::is_directory(dir, ec))
      continue;
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (e.is_regular_file())
        files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      auto fname = f.filename().string();
      bool manifest = fname.size() > 10 && fname.ends_with(".step.json");
      if (!manifest && (f.extension() != ".py" || fname.starts_with("_")))
        continue;
      caf::expected<found_step> s = manifest ? read_manifest(f, pack.name, defaults)
                                             : python_step(f, pack.name, defaults, opts);
      if (!s)
        return std::move(s.error());
      if (auto it = seen.find(s->info.name); it != seen.end())
        return make_error(errc::already_exists,
                          fmt::format("step type {} is defined twice: {} and {}",
                                      quote_json(s->info.name), it->second, s->file));
      seen.emplace(s->info.name, s->file);
      steps.push_back(std::move(*s));
    }
  }
  return std::make_shared<external_connector>(std::move(opts), std::move(defaults),
                                              std::move(steps));
}

caf::error install_uploaded_step(const std::vector<std::shared_ptr<connector>>& connectors,
                                 const json::object& definition, const std::string& data_dir) {
  for (const auto& c : connectors)
    if (auto* e = dynamic_cast<external_connector*>(c.get()))
      return e->install(definition, data_dir);
  return make_error(errc::unavailable, "no step host: the external connector is not loaded");
}

json::object external_status(const std::vector<std::shared_ptr<connector>>& connectors) {
  for (const auto& c : connectors)
    if (auto* e = dynamic_cast<external_connector*>(c.get()))
      return e->status();
  return {};
}

void remove_uploaded_step(const std::vector<std::shared_ptr<connector>>& connectors,
                          const std::string& name) {
  for (const auto& c : connectors)
    if (auto* e = dynamic_cast<external_connector*>(c.get()))
      e->remove(name);
}

} // namespace stepflow::connectors
