#include "stepflow/runtime/plan.hpp"

#include <fmt/format.h>

#include "stepflow/runtime/log_level.hpp"
#include "stepflow/runtime/resolve.hpp"

namespace stepflow {

std::string_view to_string(step_status s) noexcept {
  switch (s) {
    case step_status::pending: return "pending";
    case step_status::running: return "running";
    case step_status::success: return "success";
    case step_status::failed: return "failed";
    case step_status::skipped: return "skipped";
  }
  return "unknown";
}

std::string_view to_string(run_status s) noexcept {
  switch (s) {
    case run_status::pending: return "pending";
    case run_status::running: return "running";
    case run_status::success: return "success";
    case run_status::failed: return "failed";
    case run_status::revoked: return "revoked";
  }
  return "unknown";
}

namespace {

/// Parses a one-time parameter's log level (number or name).
std::optional<int> level_of(const json::value& v) {
  if (v.is_number())
    return static_cast<int>(v.to_number<double>());
  if (v.is_string())
    return parse_log_level(v.get_string());
  return std::nullopt;
}

} // namespace

caf::expected<run_plan> prepare_run(std::shared_ptr<const application> app,
                                    const configuration* cfg, const json::object& params,
                                    int log_level, const step_registry& registry,
                                    const plan_options& opts) {
  run_plan plan;
  plan.params = params;
  auto where = fmt::format("application {}", quote_json(app->id));
  // Configuration values.
  if (cfg) {
    plan.configuration = cfg->name;
    auto values = resolve_configuration(*cfg);
    if (!values)
      return values.error();
    plan.config_values = std::move(*values);
  }
  // Log level: explicit, else params.loglevel / params.log_level, else default.
  plan.log_level = opts.default_log_level;
  for (auto key : {"loglevel", "log_level"})
    if (auto it = params.find(key); it != params.end())
      if (auto lvl = level_of(it->value()))
        plan.log_level = *lvl;
  if (log_level >= 0)
    plan.log_level = log_level;
  // Variables: value, else default_value; one-time params override.
  std::vector<std::string> missing;
  json::object raw_vars;
  for (const auto& var : app->app_variables) {
    json::value v = !var.value.is_null() ? var.value : var.default_value;
    if (auto it = params.find(var.name); it != params.end())
      v = it->value();
    if (var.required && (v.is_null() || (v.is_string() && v.get_string().empty())))
      missing.push_back(var.name);
    raw_vars[var.name] = std::move(v);
  }
  for (const auto& kv : params)
    if (raw_vars.find(kv.key()) == raw_vars.end())
      raw_vars[kv.key()] = kv.value();
  if (!missing.empty()) {
    std::string names;
    for (const auto& m : missing)
      names += (names.empty() ? "" : ", ") + m;
    return make_error(errc::missing_variables,
                      fmt::format("{} is missing required variables: {}", where, names));
  }
  // Lookup used for variables and step parameters. References to step names
  // are kept for resolve_step_data_refs.
  auto config_ref = [&](std::string_view ref) -> caf::expected<json::value> {
    auto rest = ref.substr(7);
    auto dot = rest.find('.');
    auto name = rest.substr(0, dot);
    auto it = plan.config_values.find(name);
    if (it == plan.config_values.end()) {
      if (!cfg)
        return make_error(errc::bad_reference,
                          fmt::format("${{{}}} needs a configuration, but none is aligned", ref));
      return make_error(errc::bad_reference,
                        fmt::format("${{{}}}: configuration {} has no value named {}", ref,
                                    quote_json(cfg->name), quote_json(name)));
    }
    if (dot == std::string_view::npos)
      return it->value();
    auto* sub = walk_path(it->value(), rest.substr(dot + 1));
    if (!sub)
      return make_error(errc::bad_reference, fmt::format("${{{}}} does not exist", ref));
    return *sub;
  };
  std::vector<std::string> var_stack;
  bool saw_step_ref = false;
  ref_lookup var_lookup;
  var_lookup = [&](std::string_view ref) -> caf::expected<json::value> {
    if (ref.substr(0, 7) == "config.")
      return config_ref(ref);
    auto dot = ref.find('.');
    auto head = ref.substr(0, dot);
    if (auto it = raw_vars.find(head); it != raw_vars.end()) {
      for (size_t k = 0; k < var_stack.size(); ++k)
        if (var_stack[k] == head) {
          std::string chain;
          for (size_t m = k; m < var_stack.size(); ++m)
            chain += var_stack[m] + " -> ";
          return make_error(errc::bad_reference,
                            fmt::format("variables refer to each other in a cycle: {}{}", chain,
                                        head));
        }
      var_stack.emplace_back(head);
      auto v = resolve_refs(it->value(), var_lookup);
      var_stack.pop_back();
      if (!v)
        return v.error();
      if (dot == std::string_view::npos)
        return v;
      auto* sub = walk_path(*v, ref.substr(dot + 1));
      if (!sub)
        return make_error(errc::bad_reference, fmt::format("${{{}}} does not exist", ref));
      return *sub;
    }
    if (app->step_index(head) >= 0) {
      saw_step_ref = true;
      return json::value(json::string(fmt::format("${{{}}}", ref))); // resolved at step start
    }
    return make_error(errc::bad_reference,
                      fmt::format("${{{}}}: no application variable, configuration value or step named {}",
                                  ref, quote_json(head)));
  };
  for (const auto& kv : raw_vars) {
    var_stack.assign(1, std::string(kv.key()));
    auto v = resolve_refs(kv.value(), var_lookup);
    var_stack.clear();
    if (!v)
      return make_error(errc::bad_reference,
                        fmt::format("{}: variable {}: {}", where, quote_json(kv.key()),
                                    message_of(v.error())));
    plan.variables[kv.key()] = std::move(*v);
  }
  // Steps.
  plan.steps.resize(app->steps.size());
  for (size_t i = 0; i < app->steps.size(); ++i) {
    const auto& def = app->steps[i];
    auto& ps = plan.steps[i];
    ps.type = registry.find(def.file);
    if (!ps.type)
      return make_error(errc::not_found,
                        fmt::format("{}: steps[{}].file: unknown step type {} (step {})", where, i,
                                    quote_json(def.file), quote_json(def.name)));
    saw_step_ref = false;
    for (const auto& kv : def.params) {
      auto v = resolve_refs(kv.value(), var_lookup);
      if (!v)
        return make_error(code_of(v.error()),
                          fmt::format("{}: steps[{}].{}: {}", where, i,
                                      std::string_view(kv.key()), message_of(v.error())));
      ps.params.emplace(kv.key(), std::move(*v));
    }
    ps.timeout_s = opts.default_step_timeout_s;
    if (auto it = ps.params.find("timeout"); it != ps.params.end() && !has_refs(it->value())) {
      double t = -1;
      if (it->value().is_number()) {
        t = it->value().to_number<double>();
      } else if (it->value().is_string()) {
        std::string text(it->value().get_string());
        char* end = nullptr;
        t = std::strtod(text.c_str(), &end);
        if (text.empty() || !end || *end != '\0')
          t = -1;
      }
      if (t <= 0)
        return make_error(errc::invalid_definition,
                          fmt::format("{}: steps[{}].timeout: must be a positive number of seconds",
                                      where, i));
      ps.timeout_s = t;
    }
    // With step-data references, keep the parameters as written and resolve
    // them in one pass when the step starts (so "$${" escapes and values that
    // contain "${" are never resolved twice).
    ps.deferred = saw_step_ref;
    if (ps.deferred)
      ps.params = def.params;
    // Parameters with step-data references are checked when the step starts.
    if (!ps.deferred)
      if (auto err = ps.type->check(ps.params))
        return make_error(code_of(err), fmt::format("{}: step {}: {}", where, quote_json(def.name),
                                                    message_of(err)));
  }
  plan.app = std::move(app);
  return plan;
}

caf::expected<json::object>
resolve_step_data_refs(const run_plan& plan, size_t index,
                       const std::vector<std::shared_ptr<const json::value>>& data) {
  const auto& ps = plan.steps[index];
  if (!ps.deferred)
    return ps.params;
  const auto& app = *plan.app;
  auto walk = [](const json::value& v, std::string_view ref,
                 size_t dot) -> caf::expected<json::value> {
    if (dot == std::string_view::npos)
      return v;
    auto* sub = walk_path(v, ref.substr(dot + 1));
    if (!sub)
      return make_error(errc::bad_reference, fmt::format("${{{}}} does not exist", ref));
    return *sub;
  };
  ref_lookup lookup = [&](std::string_view ref) -> caf::expected<json::value> {
    if (ref.substr(0, 7) == "config.") {
      auto rest = ref.substr(7);
      auto dot = rest.find('.');
      auto it = plan.config_values.find(rest.substr(0, dot));
      if (it == plan.config_values.end())
        return make_error(errc::bad_reference, fmt::format("${{{}}} does not exist", ref));
      return walk(it->value(), ref, dot == std::string_view::npos ? dot : dot + 7);
    }
    auto dot = ref.find('.');
    auto head = ref.substr(0, dot);
    if (auto it = plan.variables.find(head); it != plan.variables.end())
      return walk(it->value(), ref, dot);
    auto idx = app.step_index(head);
    if (idx < 0)
      return make_error(errc::bad_reference, fmt::format("${{{}}} does not exist", ref));
    const auto& d = data[static_cast<size_t>(idx)];
    if (!d)
      return make_error(errc::bad_reference,
                        fmt::format("${{{}}}: step {} has not produced data", ref, quote_json(head)));
    if (dot == std::string_view::npos)
      return *d;
    auto* sub = walk_path(*d, ref.substr(dot + 1));
    if (!sub)
      return make_error(errc::bad_reference,
                        fmt::format("${{{}}}: the data of step {} has no {}", ref, quote_json(head),
                                    quote_json(ref.substr(dot + 1))));
    return *sub;
  };
  json::object out;
  for (const auto& kv : ps.params) {
    auto v = resolve_refs(kv.value(), lookup);
    if (!v)
      return make_error(errc::bad_reference,
                        fmt::format("parameter {}: {}", std::string_view(kv.key()),
                                    message_of(v.error())));
    out.emplace(kv.key(), std::move(*v));
  }
  return out;
}

caf::expected<json::object>
take_step_params(run_plan& plan, size_t index,
                 const std::vector<std::shared_ptr<const json::value>>& data) {
  auto& ps = plan.steps[index];
  if (!ps.deferred)
    return std::move(ps.params);
  return resolve_step_data_refs(plan, index, data);
}

// -- dag_state ----------------------------------------------------------------

dag_state::dag_state(const application& app)
  : app_(app),
    status_(app.steps.size(), step_status::pending),
    failure_skip_(app.steps.size(), false) {
}

dag_state::transition dag_state::start() {
  transition t;
  for (size_t i = 0; i < status_.size(); ++i)
    if (app_.preds[i].empty())
      t.ready.push_back(i);
  return t;
}

void dag_state::mark_running(size_t i) {
  status_[i] = step_status::running;
}

void dag_state::settle(size_t i, transition& t) {
  // Re-examine the successors of a step that just ended.
  for (auto s : app_.succs[i]) {
    if (status_[s] != step_status::pending)
      continue;
    bool all_ended = true, any_failure = false, any_success = false;
    for (auto p : app_.preds[s]) {
      auto st = status_[p];
      if (st == step_status::pending || st == step_status::running) {
        all_ended = false;
        break;
      }
      if (st == step_status::failed || (st == step_status::skipped && failure_skip_[p]))
        any_failure = true;
      if (st == step_status::success && edge_taken(p, s))
        any_success = true;
    }
    if (!all_ended)
      continue;
    if (!revoked_ && !any_failure && any_success) {
      t.ready.push_back(s);
      continue;
    }
    status_[s] = step_status::skipped;
    failure_skip_[s] = any_failure || revoked_;
    t.skipped.push_back(s);
    settle(s, t);
  }
}

bool dag_state::edge_taken(size_t from, size_t to) const noexcept {
  for (const auto& e : not_taken_)
    if (e.first == from && e.second == to)
      return false;
  return true;
}

dag_state::transition dag_state::finish(size_t i, bool ok, const std::vector<size_t>& not_taken) {
  transition t;
  for (auto s : not_taken)
    not_taken_.emplace_back(i, s);
  status_[i] = ok ? step_status::success : step_status::failed;
  settle(i, t);
  return t;
}

dag_state::transition dag_state::skip_branch(size_t i) {
  transition t;
  if (status_[i] != step_status::pending)
    return t;
  status_[i] = step_status::skipped;
  failure_skip_[i] = false;
  t.skipped.push_back(i);
  settle(i, t);
  return t;
}

dag_state::transition dag_state::revoke() {
  transition t;
  revoked_ = true;
  for (size_t i = 0; i < status_.size(); ++i)
    if (status_[i] == step_status::pending) {
      status_[i] = step_status::skipped;
      failure_skip_[i] = true;
      t.skipped.push_back(i);
    }
  return t;
}

size_t dag_state::running() const noexcept {
  size_t n = 0;
  for (auto s : status_)
    n += s == step_status::running ? 1 : 0;
  return n;
}

bool dag_state::done() const noexcept {
  for (auto s : status_)
    if (s == step_status::pending || s == step_status::running)
      return false;
  return true;
}

run_status dag_state::final_status() const noexcept {
  if (revoked_)
    return run_status::revoked;
  for (auto s : status_)
    if (s == step_status::failed)
      return run_status::failed;
  return run_status::success;
}

} // namespace stepflow
