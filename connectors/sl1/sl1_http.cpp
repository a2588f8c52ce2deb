#include "sl1/sl1_http.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <exception>

#include <fmt/format.h>

#include "stepflow/runtime/log_level.hpp"

namespace stepflow::connectors::sl1_detail {

namespace {

constexpr int max_retries = 10;

const json::value* get(const json::object& params, std::string_view name) {
  auto it = params.find(name);
  return it == params.end() || it->value().is_null() ? nullptr : &it->value();
}

/// A number, or a string holding exactly one; NaN otherwise.
double number_of(const json::value& v) {
  if (v.is_number())
    return v.to_number<double>();
  if (v.is_string()) {
    std::string t(v.get_string());
    char* end = nullptr;
    double d = std::strtod(t.c_str(), &end);
    if (!t.empty() && end && *end == '\0')
      return d;
  }
  return std::nan("");
}

/// Whether the authority of `url` carries "user[:password]@".
bool has_userinfo(std::string_view url) {
  auto scheme = url.find("://");
  auto start = scheme == std::string_view::npos ? 0 : scheme + 3;
  auto end = url.find_first_of("/?#", start);
  auto authority = url.substr(start, end == std::string_view::npos ? url.npos : end - start);
  return authority.find('@') != std::string_view::npos;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size()
         && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
              return std::tolower(static_cast<unsigned char>(x))
                     == std::tolower(static_cast<unsigned char>(y));
            });
}

json::object headers_json(const http_headers& headers) {
  json::object out;
  for (const auto& [name, value] : headers) {
    json::value* existing = nullptr;
    for (auto& kv : out)
      if (iequals(kv.key(), name))
        existing = &kv.value();
    if (existing && existing->is_string()) {
      auto& s = existing->as_string();
      s.append(", ");
      s.append(value);
    } else {
      out[name] = value;
    }
  }
  return out;
}

} // namespace

void completion::operator()(step_outcome out) {
  if (fired_.exchange(true))
    return;
  done_(std::move(out));
}

void add_param(std::vector<param_info>& params, std::string name, std::string type,
               json::value def, std::string description, bool required) {
  params.push_back(param_info{std::move(name), std::move(description), required, std::move(def),
                              std::move(type)});
}

void add_sl1_params(std::vector<param_info>& params, const sl1_connector_options& o) {
  add_param(params, "sl1_url", "string", nullptr,
            "Base URL of the SL1 system, e.g. \"https://sl1.example.com\" (a trailing /api is "
            "dropped). Either this or host.");
  add_param(params, "host", "string", nullptr, "SL1 host name (used when sl1_url is not set).");
  add_param(params, "protocol", "string", "https", "Protocol used with host: https or http.");
  add_param(params, "port", "number", nullptr, "Port used with host; default: the protocol's.");
  add_param(params, "user", "string", "", "User for basic authentication (alias: username).");
  add_param(params, "username", "string", "", "Alias of user.");
  add_param(params, "password", "string", "", "Password for basic authentication.");
  add_param(params, "verify_ssl", "boolean", true,
            "Verify the server's TLS certificate and host name (alias: verify).");
  add_param(params, "verify", "boolean", nullptr, "Alias of verify_ssl.");
  add_param(params, "ca_file", "string", "", "PEM file of CA certificates to trust.");
  add_param(params, "proxy", "string", "",
            "Proxy URL; empty: the HTTP client's default (options or environment).");
  add_param(params, "timeout", "number", o.timeout_s,
            "Seconds allowed for each request (each page, each attempt). Also the runtime's "
            "limit for the whole step.");
  add_param(params, "retries", "number", o.retries,
            "Times a failed request is retried (0 to 10): connect errors, timeouts, 429, 5xx.");
}

caf::error check_number(const json::object& params, std::string_view step, std::string_view name,
                        double lo, double hi, bool whole) {
  auto* v = get(params, name);
  if (!v)
    return {};
  double d = number_of(*v);
  if (!(d >= lo && d <= hi) || (whole && d != std::floor(d)))
    return make_error(errc::invalid_definition,
                      fmt::format("{}: parameter \"{}\" must be a{} number from {} to {}", step,
                                  name, whole ? " whole" : "", lo, hi));
  return {};
}

caf::error check_sl1_params(const json::object& params, std::string_view step) {
  auto bad = [&](std::string what) {
    return make_error(errc::invalid_definition, fmt::format("{}: {}", step, what));
  };
  auto* url = get(params, "sl1_url");
  auto* host = get(params, "host");
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
    if (auto* p = get(params, "protocol"); p && (!p->is_string() || (p->get_string() != "https" && p->get_string() != "http")))
      return bad("parameter \"protocol\" must be \"https\" or \"http\"");
    if (auto err = check_number(params, step, "port", 1, 65535, true))
      return err;
  } else {
    return bad("parameter \"sl1_url\" (or \"host\") is required");
  }
  if (auto err = check_number(params, step, "timeout", 0.001, 86'400, false))
    return err;
  return check_number(params, step, "retries", 0, max_retries, true);
}

retry_policy retries_policy(int retries, const sl1_connector_options& o) {
  retry_policy p;
  p.max_attempts = 1 + std::clamp(retries, 0, max_retries);
  p.base_delay = std::chrono::milliseconds(std::llround(o.retry_base_delay_ms));
  p.max_delay = std::chrono::milliseconds(std::llround(o.retry_max_delay_ms));
  return p;
}

int retries_param(const step_context& ctx, int fallback) {
  double r = ctx.param_number("retries", fallback);
  if (!std::isfinite(r) || r < 0)
    return fallback;
  return static_cast<int>(std::min<double>(r, max_retries));
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
  auto& r = ep.proto;
  r.user = ctx.param_string("user");
  if (r.user.empty())
    r.user = ctx.param_string("username");
  if (!r.user.empty())
    r.password = ctx.param_string("password");
  r.verify_tls = ctx.param_bool("verify_ssl", true) && ctx.param_bool("verify", true);
  r.ca_file = ctx.param_string("ca_file");
  r.proxy = ctx.param_string("proxy");
  double t = ctx.param_number("timeout", o.timeout_s);
  if (!std::isfinite(t) || t <= 0)
    t = o.timeout_s;
  r.timeout = std::chrono::milliseconds(std::llround(std::min(t, 86'400.0) * 1000));
  r.connect_timeout = std::min(r.timeout, std::chrono::milliseconds(10'000));
  r.retry = retries_policy(retries_param(ctx, o.retries), o);
  r.headers.emplace_back("Accept", "application/json");
  return ep;
}

std::string idempotency_key(const step_context& ctx, std::string_view suffix) {
  auto key = fmt::format("{}:{}", ctx.run_id, ctx.step_name);
  if (!suffix.empty())
    fmt::format_to(std::back_inserter(key), ":{}", suffix);
  return key;
}

std::string_view path_only(std::string_view path) noexcept {
  return path.substr(0, path.find('?'));
}

json::value body_json(const http_response& res) {
  if (res.body.empty())
    return json::string{};
  if (auto parsed = parse_json(res.body, "response body"))
    return std::move(*parsed);
  return json::string(res.body);
}

json::object failure_data(const http_response& res) {
  return json::object{{"http_code", res.status},
                      {"headers", headers_json(res.headers)},
                      {"body", body_json(res)}};
}

std::string attempts_suffix(const http_response& res) {
  return res.attempts > 1 ? fmt::format(" after {} attempts", res.attempts) : std::string();
}

void send(const std::shared_ptr<step_context>& ctx, const endpoint& ep, call c,
          completion_ptr fin, std::function<void(http_response&&)> ok) {
  if (ctx->cancelled.load())
    return (*fin)(step_outcome::failure(
      fmt::format("{} {} was not sent: the step was cancelled", c.method, path_only(c.path))));
  if (!ctx->services.http)
    return (*fin)(step_outcome::failure("no HTTP client service is configured"));
  http_request req = ep.proto;
  req.method = c.method;
  req.url = ep.base + c.path;
  if (c.body) {
    req.body = to_json(*c.body);
    if (!find_header(req.headers, "Content-Type"))
      req.headers.emplace_back("Content-Type", "application/json");
  }
  req.idempotency_key = std::move(c.idempotency_key);
  ctx->log(log_level::debug, fmt::format("{} {}", req.method, req.url));
  auto started = std::chrono::steady_clock::now();
  ctx->services.http->submit(
    std::move(req), [ctx, fin, ok = std::move(ok), method = std::move(c.method),
                     path = std::move(c.path), started](caf::expected<http_response> result) {
      try {
        if (!result)
          return (*fin)(step_outcome::failure(message_of(result.error())));
        auto& res = *result;
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::steady_clock::now() - started)
                    .count();
        ctx->log(log_level::info,
                 fmt::format("HTTP {} in {} ms{}", res.status, ms, attempts_suffix(res)));
        if (res.status < 200 || res.status >= 300)
          return (*fin)(step_outcome::failure(fmt::format("{} {} returned HTTP {}{}", method,
                                                          path_only(path), res.status,
                                                          attempts_suffix(res)),
                                              failure_data(res)));
        ok(std::move(res));
      } catch (const std::exception& e) {
        (*fin)(step_outcome::failure(fmt::format("{} {}: {}", method, path_only(path), e.what())));
      } catch (...) {
        (*fin)(step_outcome::failure(fmt::format("{} {}: unknown error", method, path_only(path))));
      }
    });
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

std::string query_string(const std::vector<std::pair<std::string, std::string>>& q) {
  std::string out;
  for (const auto& [k, v] : q) {
    out += out.empty() ? '?' : '&';
    out += url_encode(k);
    out += '=';
    out += url_encode(v);
  }
  return out;
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
