#include "sl1/sl1_http.hpp"

#include <cmath>
#include <tuple>

#include <fmt/format.h>

namespace stepflow::connectors::sl1_detail {

using namespace http_common;

void add_sl1_params(std::vector<param_info>& params, const sl1_connector_options& o) {
  add_param(params, "sl1_url", "string", nullptr,
            "Base URL of the SL1 system, e.g. \"https://sl1.example.com\" (a trailing /api is "
            "dropped). Either this or host.");
  add_param(params, "host", "string", nullptr, "SL1 host name (used when sl1_url is not set).");
  add_param(params, "protocol", "string", "https", "Protocol used with host: https or http.");
  add_param(params, "port", "number", nullptr, "Port used with host; default: the protocol's.");
  add_basic_auth_params(params);
  add_transport_params(params, o);
}

caf::error check_sl1_params(const json::object& params, std::string_view step) {
  auto bad = [&](std::string what) {
    return make_error(errc::invalid_definition, fmt::format("{}: {}", step, what));
  };
  auto* url = present(params, "sl1_url");
  auto* host = present(params, "host");
  if (url) {
    if (!url->is_string() || url->get_string().empty())
      return bad("parameter \"sl1_url\" must be a non-empty string");
    auto u = std::string_view(url->get_string());
    if (!u.starts_with("http://") && !u.starts_with("https://"))
      return bad("parameter \"sl1_url\" must start with http:// or https://");
    if (has_userinfo(u))
      return bad("parameter \"sl1_url\" must not carry credentials; use user and password");
  } else if (host) {
    if (!host->is_string() || host->get_string().empty()
        || host->get_string().find_first_of("/@?# ") != json::string::npos)
      return bad("parameter \"host\" must be a host name (no scheme, path or credentials)");
    if (auto* p = present(params, "protocol"); p && (!p->is_string() || (p->get_string() != "https" && p->get_string() != "http")))
      return bad("parameter \"protocol\" must be \"https\" or \"http\"");
    if (auto err = check_number(params, step, "port", 1, 65535, true))
      return err;
  } else {
    return bad("parameter \"sl1_url\" (or \"host\") is required");
  }
  return check_transport_params(params, step);
}

caf::expected<endpoint> sl1_endpoint(const step_context& ctx, const sl1_connector_options& o) {
  endpoint ep;
  auto url = ctx.param_string("sl1_url");
  if (!url.empty()) {
    while (!url.empty() && url.back() == '/')
      url.pop_back();
    if (url.ends_with("/api"))
      url.resize(url.size() - 4);
    ep.base = std::move(url);
  } else {
    auto host = ctx.param_string("host");
    if (host.empty())
      return make_error(errc::invalid_argument, "parameter \"sl1_url\" (or \"host\") is required");
    auto protocol = ctx.param_string("protocol", "https");
    ep.base = fmt::format("{}://{}", protocol, host);
    if (auto* port = ctx.param("port"); port && !port->is_null())
      ep.base += ":" + ctx.param_string("port");
  }
  std::tie(ep.proto.user, ep.proto.password) = basic_credentials(ctx);
  apply_transport_params(ctx, o, ep.proto);
  ep.proto.headers.emplace_back("Accept", "application/json");
  return ep;
}

std::string id_of(const json::value* v) {
  if (!v || v->is_null())
    return {};
  std::string s;
  if (v->is_int64() || v->is_uint64())
    s = to_text(*v);
  else if (v->is_double() && v->get_double() == std::floor(v->get_double()) && v->get_double() >= 0)
    s = fmt::format("{:.0f}", v->get_double());
  else if (v->is_string())
    s = std::string(v->get_string());
  else
    return {};
  while (!s.empty() && s.back() == '/')
    s.pop_back();
  if (auto slash = s.rfind('/'); slash != std::string::npos)
    s = s.substr(slash + 1);
  if (s.empty() || s.find_first_of(" ?#%") != std::string::npos)
    return {};
  return s;
}

std::optional<json::object> object_param(const step_context& ctx, std::string_view name) {
  auto* v = ctx.param(name);
  if (!v || v->is_null())
    return json::object{};
  if (v->is_object())
    return v->get_object();
  if (v->is_string()) {
    auto text = std::string_view(v->get_string());
    if (text.find_first_not_of(" \t\r\n") == std::string_view::npos)
      return json::object{};
    auto parsed = parse_json(text, name);
    if (parsed && parsed->is_object())
      return std::move(parsed->get_object());
  }
  return std::nullopt;
}

const json::value* at_path(const json::value& root, std::string_view path) {
  const json::value* cur = &root;
  while (!path.empty()) {
    auto dot = path.find('.');
    auto key = path.substr(0, dot);
    path = dot == std::string_view::npos ? std::string_view{} : path.substr(dot + 1);
    if (key.empty())
      continue;
    if (!cur->is_object())
      return nullptr;
    auto it = cur->get_object().find(key);
    if (it == cur->get_object().end())
      return nullptr;
    cur = &it->value();
  }
  return cur;
}

std::optional<std::string> graphql_error(const json::value& body) {
  if (!body.is_object())
    return std::nullopt;
  auto it = body.get_object().find("errors");
  if (it == body.get_object().end() || it->value().is_null())
    return std::nullopt;
  const auto& errors = it->value();
  if (errors.is_array() && errors.get_array().empty())
    return std::nullopt;
  const auto& first = errors.is_array() ? errors.get_array().front() : errors;
  if (first.is_object()) {
    if (auto m = first.get_object().find("message"); m != first.get_object().end())
      return to_text(m->value());
  }
  return first.is_string() ? std::string(first.get_string()) : to_json(first);
}

} // namespace stepflow::connectors::sl1_detail
