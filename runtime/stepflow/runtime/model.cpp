#include "stepflow/runtime/model.hpp"

#include <algorithm>
#include <map>
#include <queue>
#include <set>

#include <fmt/format.h>

namespace stepflow {

namespace {

caf::error invalid(std::string_view source, std::string_view path, std::string_view problem) {
  if (path.empty())
    return make_error(errc::invalid_definition, fmt::format("{}: {}", source, problem));
  return make_error(errc::invalid_definition, fmt::format("{}: {}: {}", source, path, problem));
}

std::string_view kind_name(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null: return "null";
    case json::kind::bool_: return "a boolean";
    case json::kind::int64:
    case json::kind::uint64:
    case json::kind::double_: return "a number";
    case json::kind::string: return "a string";
    case json::kind::array: return "an array";
    case json::kind::object: return "an object";
  }
  return "a value";
}

/// Reads optional string member `key` of `obj` into `out`. Null/absent leave
/// `out` unchanged; numbers are accepted for "version".
caf::error opt_string(const json::object& obj, std::string_view key, std::string& out,
                      std::string_view source, std::string_view path_prefix) {
  auto it = obj.find(key);
  if (it == obj.end() || it->value().is_null())
    return {};
  const auto& v = it->value();
  if (v.is_string()) {
    out = std::string(v.get_string());
    return {};
  }
  if (key == "version" && v.is_number()) {
    out = to_text(v);
    return {};
  }
  auto path = path_prefix.empty() ? std::string(key) : fmt::format("{}.{}", path_prefix, key);
  return invalid(source, path, fmt::format("must be a string, not {}", kind_name(v)));
}

caf::error string_list(const json::object& obj, std::string_view key, std::vector<std::string>& out,
                       std::string_view source, const std::string& path_prefix) {
  auto it = obj.find(key);
  if (it == obj.end() || it->value().is_null())
    return {};
  const auto& v = it->value();
  auto path = fmt::format("{}.{}", path_prefix, key);
  if (v.is_string()) { // tolerated: a single name instead of a list
    out.emplace_back(v.get_string());
    return {};
  }
  if (!v.is_array())
    return invalid(source, path, fmt::format("must be a list of step names, not {}", kind_name(v)));
  size_t i = 0;
  for (const auto& e : v.get_array()) {
    if (!e.is_string() || e.get_string().empty())
      return invalid(source, fmt::format("{}[{}]", path, i), "must be a non-empty step name");
    out.emplace_back(e.get_string());
    ++i;
  }
  return {};
}

} // namespace

bool is_reserved_step_key(std::string_view key) noexcept {
  return key == "name" || key == "file" || key == "syncpack" || key == "output_to"
         || key == "data_from";
}

long application::step_index(std::string_view name) const noexcept {
  for (size_t i = 0; i < steps.size(); ++i)
    if (steps[i].name == name)
      return static_cast<long>(i);
  return -1;
}

caf::expected<application> parse_application(const json::value& doc, std::string_view source,
                                             std::string_view default_id) {
  if (!doc.is_object())
    return invalid(source, "", fmt::format("an application must be a JSON object, not {}",
                                           kind_name(doc)));
  application app;
  const auto& obj = doc.get_object();
  app.raw = obj;
  std::string name;
  if (auto err = opt_string(obj, "name", name, source, ""))
    return err;
  app.id = name.empty() ? std::string(default_id) : name;
  if (app.id.empty())
    return invalid(source, "name", "the application has no name");
  for (auto [key, dst] : {std::pair{"friendly_name", &app.friendly_name},
                          std::pair{"description", &app.description},
                          std::pair{"author", &app.author}, std::pair{"version", &app.version},
                          std::pair{"configuration", &app.configuration}})
    if (auto err = opt_string(obj, key, *dst, source, ""))
      return err;
  // app_variables
  if (auto it = obj.find("app_variables"); it != obj.end() && !it->value().is_null()) {
    if (!it->value().is_array())
      return invalid(source, "app_variables",
                     fmt::format("must be a list, not {}", kind_name(it->value())));
    std::set<std::string> seen;
    size_t i = 0;
    for (const auto& e : it->value().get_array()) {
      auto path = fmt::format("app_variables[{}]", i++);
      if (!e.is_object())
        return invalid(source, path, fmt::format("must be an object, not {}", kind_name(e)));
      const auto& vo = e.get_object();
      app_variable var;
      if (auto err = opt_string(vo, "name", var.name, source, path))
        return err;
      if (var.name.empty())
        return invalid(source, path + ".name", "a variable needs a non-empty name");
      if (!seen.insert(var.name).second)
        return invalid(source, path + ".name",
                       fmt::format("duplicate variable name {}", quote_json(var.name)));
      if (auto err = opt_string(vo, "description", var.description, source, path))
        return err;
      if (auto r = vo.find("required"); r != vo.end() && !r->value().is_null()) {
        if (r->value().is_bool())
          var.required = r->value().get_bool();
        else if (r->value().is_string())
          var.required = r->value().get_string() == "true" || r->value().get_string() == "True";
        else
          return invalid(source, path + ".required", "must be true or false");
      }
      if (auto v = vo.find("value"); v != vo.end())
        var.value = v->value();
      if (auto v = vo.find("sample_value"); v != vo.end())
        var.sample_value = v->value();
      if (auto v = vo.find("default_value"); v != vo.end())
        var.default_value = v->value();
      app.app_variables.push_back(std::move(var));
    }
  }
  // steps
  auto sit = obj.find("steps");
  if (sit == obj.end())
    return invalid(source, "steps", "missing: an application needs a list of steps");
  if (!sit->value().is_array())
    return invalid(source, "steps",
                   fmt::format("must be a list, not {}", kind_name(sit->value())));
  const auto& steps = sit->value().get_array();
  if (steps.empty())
    return invalid(source, "steps", "an application needs at least one step");
  std::map<std::string, size_t, std::less<>> by_name;
  for (size_t i = 0; i < steps.size(); ++i) {
    auto path = fmt::format("steps[{}]", i);
    const auto& s = steps[i];
    if (!s.is_object())
      return invalid(source, path, fmt::format("a step must be an object, not {}", kind_name(s)));
    const auto& so = s.get_object();
    step_def def;
    if (auto err = opt_string(so, "name", def.name, source, path))
      return err;
    if (def.name.empty())
      return invalid(source, path + ".name", "a step needs a non-empty name");
    if (auto err = opt_string(so, "file", def.file, source, path))
      return err;
    if (def.file.empty())
      return invalid(source, path + ".file",
                     fmt::format("step {} needs a \"file\" naming its step type", quote_json(def.name)));
    if (auto err = opt_string(so, "syncpack", def.syncpack, source, path))
      return err;
    if (auto err = string_list(so, "output_to", def.output_to, source, path))
      return err;
    if (auto err = string_list(so, "data_from", def.data_from, source, path))
      return err;
    for (const auto& kv : so)
      if (!is_reserved_step_key(kv.key()))
        def.params.emplace(kv.key(), kv.value());
    if (auto [it, fresh] = by_name.emplace(def.name, i); !fresh)
      return invalid(source, path + ".name",
                     fmt::format("duplicate step name {} (also steps[{}])", quote_json(def.name),
                                 it->second));
    app.steps.push_back(std::move(def));
  }
  // Edges: A.output_to B and B.data_from A both mean A feeds B.
  size_t n = app.steps.size();
  std::vector<std::set<size_t>> preds(n), succs(n);
  for (size_t i = 0; i < n; ++i) {
    const auto& def = app.steps[i];
    auto link = [&](const std::vector<std::string>& names, std::string_view key,
                    bool outgoing) -> caf::error {
      for (size_t k = 0; k < names.size(); ++k) {
        auto it = by_name.find(names[k]);
        auto path = fmt::format("steps[{}].{}[{}]", i, key, k);
        if (it == by_name.end())
          return invalid(source, path, fmt::format("no step named {}", quote_json(names[k])));
        if (it->second == i)
          return invalid(source, path,
                         fmt::format("step {} cannot feed itself", quote_json(def.name)));
        auto from = outgoing ? i : it->second;
        auto to = outgoing ? it->second : i;
        succs[from].insert(to);
        preds[to].insert(from);
      }
      return {};
    };
    if (auto err = link(def.output_to, "output_to", true))
      return err;
    if (auto err = link(def.data_from, "data_from", false))
      return err;
  }
  app.preds.resize(n);
  app.succs.resize(n);
  for (size_t i = 0; i < n; ++i) {
    app.preds[i].assign(preds[i].begin(), preds[i].end());
    app.succs[i].assign(succs[i].begin(), succs[i].end());
  }
  // Topological order (Kahn, smallest index first); leftovers form cycles.
  std::vector<size_t> indeg(n);
  std::priority_queue<size_t, std::vector<size_t>, std::greater<>> ready;
  for (size_t i = 0; i < n; ++i)
    if ((indeg[i] = app.preds[i].size()) == 0)
      ready.push(i);
  while (!ready.empty()) {
    auto i = ready.top();
    ready.pop();
    app.topo_order.push_back(i);
    for (auto s : app.succs[i])
      if (--indeg[s] == 0)
        ready.push(s);
  }
  if (app.topo_order.size() != n) {
    // Walk predecessors among the remaining steps until one repeats.
    size_t start = 0;
    while (indeg[start] == 0)
      ++start;
    std::vector<size_t> path;
    std::vector<long> pos(n, -1);
    size_t cur = start;
    while (pos[cur] < 0) {
      pos[cur] = static_cast<long>(path.size());
      path.push_back(cur);
      for (auto p : app.preds[cur])
        if (indeg[p] != 0) {
          cur = p;
          break;
        }
    }
    std::vector<size_t> cycle(path.begin() + pos[cur], path.end());
    std::reverse(cycle.begin(), cycle.end());
    std::rotate(cycle.begin(), std::min_element(cycle.begin(), cycle.end()), cycle.end());
    std::string desc;
    for (auto c : cycle)
      desc += quote_json(app.steps[c].name) + " -> ";
    desc += quote_json(app.steps[cycle.front()].name);
    return invalid(source, "steps", fmt::format("the steps form a cycle: {}", desc));
  }
  return app;
}

json::value to_json(const application& app) {
  json::object out = app.raw;
  if (out.find("name") == out.end())
    out["name"] = app.id;
  return out;
}

const config_entry* configuration::find(std::string_view n) const noexcept {
  for (const auto& e : data)
    if (e.name == n)
      return &e;
  return nullptr;
}

caf::expected<configuration> parse_configuration(const json::value& doc, std::string_view source,
                                                 std::string_view default_name) {
  configuration cfg;
  const json::array* entries = nullptr;
  if (doc.is_array()) {
    entries = &doc.get_array();
    cfg.name = std::string(default_name);
    cfg.raw["name"] = cfg.name;
    cfg.raw["configuration_data"] = doc;
  } else if (doc.is_object()) {
    const auto& obj = doc.get_object();
    cfg.raw = obj;
    for (auto [key, dst] : {std::pair{"name", &cfg.name},
                            std::pair{"friendly_name", &cfg.friendly_name},
                            std::pair{"description", &cfg.description},
                            std::pair{"author", &cfg.author}, std::pair{"version", &cfg.version}})
      if (auto err = opt_string(obj, key, *dst, source, ""))
        return err;
    if (cfg.name.empty())
      cfg.name = std::string(default_name);
    auto it = obj.find("configuration_data");
    if (it == obj.end())
      return invalid(source, "configuration_data",
                     "missing: a configuration needs a list of {name, value} entries");
    if (!it->value().is_array())
      return invalid(source, "configuration_data",
                     fmt::format("must be a list, not {}", kind_name(it->value())));
    entries = &it->value().get_array();
  } else {
    return invalid(source, "", fmt::format("a configuration must be a JSON object, not {}",
                                           kind_name(doc)));
  }
  if (cfg.name.empty())
    return invalid(source, "name", "the configuration has no name");
  std::map<std::string, size_t, std::less<>> seen;
  for (size_t i = 0; i < entries->size(); ++i) {
    auto path = fmt::format("configuration_data[{}]", i);
    const auto& e = (*entries)[i];
    if (!e.is_object())
      return invalid(source, path, fmt::format("must be an object, not {}", kind_name(e)));
    const auto& eo = e.get_object();
    config_entry entry;
    if (auto err = opt_string(eo, "name", entry.name, source, path))
      return err;
    if (entry.name.empty())
      return invalid(source, path + ".name", "an entry needs a non-empty name");
    if (auto [it, fresh] = seen.emplace(entry.name, i); !fresh)
      return invalid(source, path + ".name",
                     fmt::format("duplicate entry {} (also configuration_data[{}])",
                                 quote_json(entry.name), it->second));
    if (auto v = eo.find("value"); v != eo.end())
      entry.value = v->value();
    if (auto v = eo.find("encrypted"); v != eo.end() && !v->value().is_null()) {
      if (v->value().is_bool())
        entry.encrypted = v->value().get_bool();
      else if (v->value().is_string())
        entry.encrypted = v->value().get_string() == "true" || v->value().get_string() == "True";
      else
        return invalid(source, path + ".encrypted", "must be true or false");
    }
    cfg.data.push_back(std::move(entry));
  }
  return cfg;
}

json::value to_json(const configuration& cfg) {
  json::object out = cfg.raw;
  out["name"] = cfg.name;
  return out;
}

std::string file_stem(std::string_view path) {
  auto slash = path.find_last_of('/');
  if (slash != std::string_view::npos)
    path.remove_prefix(slash + 1);
  if (path.size() > 5 && path.substr(path.size() - 5) == ".json")
    path.remove_suffix(5);
  return std::string(path);
}

caf::expected<application> load_application_file(const std::string& path) {
  auto doc = load_json_file(path);
  if (!doc)
    return doc.error();
  return parse_application(*doc, path, file_stem(path));
}

caf::expected<configuration> load_configuration_file(const std::string& path) {
  auto doc = load_json_file(path);
  if (!doc)
    return doc.error();
  return parse_configuration(*doc, path, file_stem(path));
}

} // namespace stepflow
