#include "stepflow/runtime/resolve.hpp"

#include <map>
#include <set>
#include <vector>

#include <fmt/format.h>

namespace stepflow {

namespace {

/// Splits `s` into literal text and references. Calls lit(text) and
/// ref(name); returns false on an unterminated reference.
template <class Lit, class Ref>
caf::error scan_refs(std::string_view s, Lit&& lit, Ref&& ref) {
  size_t i = 0;
  std::string buf;
  while (i < s.size()) {
    if (s.compare(i, 3, "$${") == 0) {
      buf += "${";
      i += 3;
      continue;
    }
    if (s.compare(i, 2, "${") == 0) {
      auto end = s.find('}', i + 2);
      if (end == std::string_view::npos)
        return make_error(errc::bad_reference,
                          fmt::format("unterminated reference in {}", quote_json(s)));
      if (!buf.empty()) {
        if (auto err = lit(buf))
          return err;
        buf.clear();
      }
      auto name = s.substr(i + 2, end - i - 2);
      // trim blanks: "${ config.x }" is accepted
      while (!name.empty() && name.front() == ' ')
        name.remove_prefix(1);
      while (!name.empty() && name.back() == ' ')
        name.remove_suffix(1);
      if (name.empty())
        return make_error(errc::bad_reference, fmt::format("empty reference in {}", quote_json(s)));
      if (auto err = ref(name))
        return err;
      i = end + 1;
      continue;
    }
    buf += s[i++];
  }
  if (!buf.empty())
    if (auto err = lit(buf))
      return err;
  return {};
}

caf::expected<json::value> resolve_string(std::string_view s, const ref_lookup& lookup) {
  if (s.find("${") == std::string_view::npos)
    return json::value(json::string(s));
  // Exactly one reference: keep the referenced value's type.
  if (s.size() > 3 && s.substr(0, 2) == "${" && s.back() == '}'
      && s.find('}') == s.size() - 1 && s.find("${", 2) == std::string_view::npos) {
    auto name = s.substr(2, s.size() - 3);
    while (!name.empty() && name.front() == ' ')
      name.remove_prefix(1);
    while (!name.empty() && name.back() == ' ')
      name.remove_suffix(1);
    if (!name.empty())
      return lookup(name);
  }
  std::string out;
  auto err = scan_refs(
    s, [&](const std::string& text) -> caf::error { out += text; return {}; },
    [&](std::string_view name) -> caf::error {
      auto v = lookup(name);
      if (!v)
        return v.error();
      out += to_text(*v);
      return {};
    });
  if (err)
    return err;
  return json::value(json::string(out));
}

} // namespace

caf::expected<json::value> resolve_refs(const json::value& v, const ref_lookup& lookup) {
  switch (v.kind()) {
    case json::kind::string:
      return resolve_string(v.get_string(), lookup);
    case json::kind::array: {
      json::array out;
      out.reserve(v.get_array().size());
      for (const auto& e : v.get_array()) {
        auto r = resolve_refs(e, lookup);
        if (!r)
          return r.error();
        out.push_back(std::move(*r));
      }
      return json::value(std::move(out));
    }
    case json::kind::object: {
      json::object out;
      for (const auto& kv : v.get_object()) {
        auto r = resolve_refs(kv.value(), lookup);
        if (!r)
          return r.error();
        out.emplace(kv.key(), std::move(*r));
      }
      return json::value(std::move(out));
    }
    default:
      return v;
  }
}

bool has_refs(const json::value& v) {
  switch (v.kind()) {
    case json::kind::string:
      return std::string_view(v.get_string()).find("${") != std::string_view::npos;
    case json::kind::array:
      for (const auto& e : v.get_array())
        if (has_refs(e))
          return true;
      return false;
    case json::kind::object:
      for (const auto& kv : v.get_object())
        if (has_refs(kv.value()))
          return true;
      return false;
    default:
      return false;
  }
}

const json::value* walk_path(const json::value& v, std::string_view path) {
  const json::value* cur = &v;
  // Every segment counts, empty ones too: "a.b." has an empty last segment.
  bool more = !path.empty();
  while (more) {
    auto dot = path.find('.');
    auto seg = path.substr(0, dot);
    more = dot != std::string_view::npos;
    path = more ? path.substr(dot + 1) : std::string_view{};
    if (cur->is_object()) {
      auto it = cur->get_object().find(seg);
      if (it == cur->get_object().end())
        return nullptr;
      cur = &it->value();
    } else if (cur->is_array()) {
      size_t idx = 0;
      if (seg.empty())
        return nullptr;
      for (char c : seg) {
        if (c < '0' || c > '9')
          return nullptr;
        idx = idx * 10 + static_cast<size_t>(c - '0');
      }
      if (idx >= cur->get_array().size())
        return nullptr;
      cur = &cur->get_array()[idx];
    } else {
      return nullptr;
    }
  }
  return cur;
}

caf::expected<json::object> resolve_configuration(const configuration& cfg) {
  std::map<std::string, json::value, std::less<>> done;
  std::vector<std::string> stack; // entries being resolved, for cycle reports
  std::function<caf::expected<json::value>(const config_entry&)> resolve_entry;
  resolve_entry = [&](const config_entry& e) -> caf::expected<json::value> {
    if (auto it = done.find(e.name); it != done.end())
      return it->second;
    for (size_t i = 0; i < stack.size(); ++i)
      if (stack[i] == e.name) {
        std::string chain;
        for (size_t k = i; k < stack.size(); ++k)
          chain += stack[k] + " -> ";
        chain += e.name;
        return make_error(errc::bad_reference,
                          fmt::format("configuration {}: ${{config...}} references form a cycle: {}",
                                      quote_json(cfg.name), chain));
      }
    stack.push_back(e.name);
    ref_lookup lookup = [&](std::string_view ref) -> caf::expected<json::value> {
      if (ref.substr(0, 7) != "config.")
        return json::value(json::string(fmt::format("${{{}}}", ref))); // left for the run
      auto rest = ref.substr(7);
      auto dot = rest.find('.');
      auto name = rest.substr(0, dot);
      auto* target = cfg.find(name);
      if (!target)
        return make_error(errc::bad_reference,
                          fmt::format("configuration {}: entry {} refers to ${{{}}}, which does not exist",
                                      quote_json(cfg.name), quote_json(stack.back()), ref));
      auto v = resolve_entry(*target);
      if (!v)
        return v.error();
      if (dot == std::string_view::npos)
        return v;
      auto* sub = walk_path(*v, rest.substr(dot + 1));
      if (!sub)
        return make_error(errc::bad_reference,
                          fmt::format("configuration {}: entry {} refers to ${{{}}}, which does not exist",
                                      quote_json(cfg.name), quote_json(stack.back()), ref));
      return *sub;
    };
    auto v = resolve_refs(e.value, lookup);
    stack.pop_back();
    if (!v)
      return v.error();
    done.emplace(e.name, *v);
    return v;
  };
  json::object out;
  for (const auto& e : cfg.data) {
    auto v = resolve_entry(e);
    if (!v)
      return v.error();
    out[e.name] = std::move(*v);
  }
  return out;
}

} // namespace stepflow
