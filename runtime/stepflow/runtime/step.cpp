#include "stepflow/runtime/step.hpp"

#include <cstdlib>

#include <fmt/format.h>

#include "stepflow/runtime/clock.hpp"

namespace stepflow {

// -- step_context -------------------------------------------------------------

const json::value* step_context::param(std::string_view name) const noexcept {
  auto it = params.find(name);
  return it == params.end() ? nullptr : &it->value();
}

std::string step_context::param_string(std::string_view name, std::string_view fallback) const {
  auto* v = param(name);
  if (!v || v->is_null())
    return std::string(fallback);
  return to_text(*v);
}

double step_context::param_number(std::string_view name, double fallback) const {
  auto* v = param(name);
  if (!v)
    return fallback;
  if (v->is_number())
    return v->to_number<double>();
  if (v->is_string()) {
    std::string s(v->get_string());
    char* end = nullptr;
    double d = std::strtod(s.c_str(), &end);
    if (end && *end == '\0' && !s.empty())
      return d;
  }
  return fallback;
}

bool step_context::param_bool(std::string_view name, bool fallback) const {
  auto* v = param(name);
  if (!v)
    return fallback;
  if (v->is_bool())
    return v->get_bool();
  if (v->is_number())
    return v->to_number<double>() != 0;
  if (v->is_string()) {
    auto s = v->get_string();
    if (s == "true" || s == "True" || s == "1" || s == "yes")
      return true;
    if (s == "false" || s == "False" || s == "0" || s == "no" || s.empty())
      return false;
  }
  return fallback;
}

const json::value* step_context::input(std::string_view name) const noexcept {
  for (auto& [n, v] : inputs)
    if (n == name)
      return v.get();
  return nullptr;
}

json::value step_context::joined_input() const {
  if (inputs.empty())
    return nullptr;
  if (inputs.size() == 1)
    return inputs.front().second ? *inputs.front().second : json::value(nullptr);
  json::object o;
  for (auto& [n, v] : inputs)
    o[n] = v ? *v : json::value(nullptr);
  return o;
}

void step_context::log(int level, std::string message) {
  if (level < log_level)
    return;
  int64_t now = services.clock ? services.clock->now_ns() : system_clock().now_ns();
  std::lock_guard<std::mutex> guard{log_mtx_};
  logs_.push_back(log_line{now, level, std::move(message)});
}

std::vector<log_line> step_context::take_logs() {
  std::lock_guard<std::mutex> guard{log_mtx_};
  return std::exchange(logs_, {});
}

// -- step_type ----------------------------------------------------------------

caf::error step_type::check(const json::object& params) const {
  for (const auto& p : info().params) {
    if (!p.required)
      continue;
    auto it = params.find(p.name);
    if (it == params.end() || it->value().is_null())
      return make_error(errc::invalid_definition,
                        fmt::format("missing required parameter \"{}\" of step type {}",
                                    p.name, info().name));
  }
  return {};
}

void add_param(std::vector<param_info>& params, std::string name, std::string type,
               json::value default_value, std::string description, bool required) {
  params.push_back(param_info{std::move(name), std::move(description), required,
                              std::move(default_value), std::move(type)});
}

// -- step_registry ------------------------------------------------------------

caf::error step_registry::add(std::shared_ptr<const step_type> type) {
  const auto& name = type->info().name;
  if (types_.count(name) != 0)
    return make_error(errc::already_exists,
                      fmt::format("step type \"{}\" is registered twice", name));
  types_.emplace(name, std::move(type));
  return {};
}

const step_type* step_registry::find_fixed(std::string_view file) const noexcept {
  auto it = types_.find(file);
  return it == types_.end() ? nullptr : it->second.get();
}

const step_type* step_registry::find(std::string_view file) const noexcept {
  if (auto* t = find_fixed(file))
    return t;
  return dynamic_ ? dynamic_->find(file) : nullptr;
}

std::vector<const step_type*> step_registry::all() const {
  std::vector<const step_type*> out;
  for (auto& [_, t] : types_)
    out.push_back(t.get());
  if (dynamic_)
    for (auto* t : dynamic_->all())
      out.push_back(t);
  return out;
}

json::value to_json(const step_info& info) {
  json::array params;
  for (const auto& p : info.params)
    params.push_back(json::object{{"name", p.name},
                                  {"description", p.description},
                                  {"required", p.required},
                                  {"default_value", p.default_value},
                                  {"type", p.type}});
  return json::object{{"name", info.name},         {"friendly_name", info.friendly_name},
                      {"description", info.description}, {"version", info.version},
                      {"syncpack", info.syncpack}, {"parameters", std::move(params)}};
}

} // namespace stepflow
