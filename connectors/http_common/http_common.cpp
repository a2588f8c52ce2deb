#include "http_common/http_common.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <exception>

#include <fmt/format.h>

#include "stepflow/connectors/connector.hpp"
#include "stepflow/runtime/log_level.hpp"

namespace stepflow::connectors::http_common {

void completion::operator()(step_outcome out) {
  if (fired_.exchange(true))
    return;
  done_(std::move(out));
}

// -- connector options ----------------------------------------------------------

caf::error read_http_defaults(const json::object& options, std::string_view scope,
                              http_defaults& out) {
  auto retries = option_whole_number(options, scope, "retries", out.retries, 0, max_retries);
  if (!retries)
    return std::move(retries.error());
  auto timeout = option_number_in(options, scope, "timeout", out.timeout_s, 0.001, 86'400);
  if (!timeout)
    return std::move(timeout.error());
  auto base = option_number_in(options, scope, "retry_base_delay_ms", out.retry_base_delay_ms, 0,
                               3'600'000);
  if (!base)
    return std::move(base.error());
  auto cap = option_number_in(options, scope, "retry_max_delay_ms", out.retry_max_delay_ms, 0,
                              3'600'000);
  if (!cap)
    return std::move(cap.error());
  out.retries = static_cast<int>(*retries);
  out.timeout_s = *timeout;
  out.retry_base_delay_ms = *base;
  out.retry_max_delay_ms = *cap;
  return {};
}

// -- step parameters ----------------------------------------------------------


void add_basic_auth_params(std::vector<param_info>& params) {
  add_param(params, "user", "string", "", "User for basic authentication (alias: username).");
  add_param(params, "username", "string", "", "Alias of user.");
  add_param(params, "password", "string", "", "Password for basic authentication.");
}

void add_transport_params(std::vector<param_info>& params, const http_defaults& d) {
  add_param(params, "verify_ssl", "boolean", true,
            "Verify the server's TLS certificate and host name (alias: verify).");
  add_param(params, "verify", "boolean", nullptr, "Alias of verify_ssl.");
  add_param(params, "ca_file", "string", "", "PEM file of CA certificates to trust.");
  add_param(params, "proxy", "string", "",
            "Proxy URL; empty: the HTTP client's default (options or environment).");
  add_param(params, "timeout", "number", d.timeout_s,
            "Seconds allowed for each request (each page, each attempt). Also the runtime's "
            "limit for the whole step.");
  add_param(params, "retries", "number", d.retries,
            "Times a failed request is retried (0 to 10): connect errors, timeouts, 429, 5xx.");
}

const json::value* present(const json::object& params, std::string_view name) {
  auto it = params.find(name);
  return it == params.end() || it->value().is_null() ? nullptr : &it->value();
}

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

bool has_userinfo(std::string_view url) {
  auto scheme = url.find("://");
  auto start = scheme == std::string_view::npos ? 0 : scheme + 3;
  auto end = url.find_first_of("/?#", start);
  auto authority = url.substr(start, end == std::string_view::npos ? url.npos : end - start);
  return authority.find('@') != std::string_view::npos;
}

caf::error check_number(const json::object& params, std::string_view step, std::string_view name,
                        double lo, double hi, bool whole) {
  auto* v = present(params, name);
  if (!v)
    return {};
  double d = number_of(*v);
  if (!(d >= lo && d <= hi) || (whole && d != std::floor(d)))
    return make_error(errc::invalid_definition,
                      fmt::format("{}: parameter \"{}\" must be a{} number from {} to {}", step,
                                  name, whole ? " whole" : "", lo, hi));
  return {};
}

caf::error check_transport_params(const json::object& params, std::string_view step) {
  if (auto err = check_number(params, step, "timeout", 0.001, 86'400, false))
    return err;
  return check_number(params, step, "retries", 0, max_retries, true);
}

std::pair<std::string, std::string> basic_credentials(const step_context& ctx) {
  auto user = ctx.param_string("user");
  if (user.empty())
    user = ctx.param_string("username");
  auto password = user.empty() ? std::string() : ctx.param_string("password");
  return {std::move(user), std::move(password)};
}

void apply_transport_params(const step_context& ctx, const http_defaults& d, http_request& r) {
  r.verify_tls = ctx.param_bool("verify_ssl", true) && ctx.param_bool("verify", true);
  r.ca_file = ctx.param_string("ca_file");
  r.proxy = ctx.param_string("proxy");
  double t = ctx.param_number("timeout", d.timeout_s);
  if (!std::isfinite(t) || t <= 0)
    t = d.timeout_s;
  r.timeout = std::chrono::milliseconds(std::llround(std::min(t, 86'400.0) * 1000));
  r.connect_timeout = std::min(r.timeout, std::chrono::milliseconds(10'000));
  r.retry = retries_policy(retries_param(ctx, d.retries), d);
}

retry_policy retries_policy(int retries, const http_defaults& d) {
  retry_policy p;
  p.max_attempts = 1 + std::clamp(retries, 0, max_retries);
  p.base_delay = std::chrono::milliseconds(std::llround(d.retry_base_delay_ms));
  p.max_delay = std::chrono::milliseconds(std::llround(d.retry_max_delay_ms));
  return p;
}

int retries_param(const step_context& ctx, int fallback) {
  double r = ctx.param_number("retries", fallback);
  if (!std::isfinite(r) || r < 0)
    return fallback;
  return static_cast<int>(std::min<double>(r, max_retries));
}

std::string idempotency_key(const step_context& ctx, std::string_view suffix) {
  auto key = fmt::format("{}:{}", ctx.run_id, ctx.step_name);
  if (!suffix.empty())
    fmt::format_to(std::back_inserter(key), ":{}", suffix);
  return key;
}

// -- requests -----------------------------------------------------------------

void send(const std::shared_ptr<step_context>& ctx, const endpoint& ep, call c,
          completion_ptr fin, ok_handler ok, answer_hook hook) {
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
  req.idempotency_key = c.idempotency_key;
  ctx->log(log_level::debug, fmt::format("{} {}", req.method, req.url));
  auto started = std::chrono::steady_clock::now();
  ctx->services.http->submit(
    std::move(req), [ctx, fin, ok = std::move(ok), hook = std::move(hook), c = std::move(c),
                     started](caf::expected<http_response> result) mutable {
      try {
        if (!result)
          return (*fin)(step_outcome::failure(message_of(result.error())));
        auto& res = *result;
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::steady_clock::now() - started)
                    .count();
        ctx->log(log_level::info,
                 fmt::format("HTTP {} in {} ms{}", res.status, ms, attempts_suffix(res)));
        if (hook && hook(res, c, ok))
          return;
        if (res.status < 200 || res.status >= 300)
          return (*fin)(step_outcome::failure(fmt::format("{} {} returned HTTP {}{}", c.method,
                                                          path_only(c.path), res.status,
                                                          attempts_suffix(res)),
                                              failure_data(res)));
        ok(std::move(res));
      } catch (const std::exception& e) {
        (*fin)(step_outcome::failure(
          fmt::format("{} {}: {}", c.method, path_only(c.path), e.what())));
      } catch (...) {
        (*fin)(step_outcome::failure(
          fmt::format("{} {}: unknown error", c.method, path_only(c.path))));
      }
    });
}

// -- answers and URLs ---------------------------------------------------------

json::value body_json(const http_response& res) {
  if (res.body.empty())
    return json::string{};
  if (auto parsed = parse_json(res.body, "response body"))
    return std::move(*parsed);
  return json::string(res.body);
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

json::object failure_data(const http_response& res) {
  return json::object{{"http_code", res.status},
                      {"headers", headers_json(res.headers)},
                      {"body", body_json(res)}};
}

std::string attempts_suffix(const http_response& res) {
  return res.attempts > 1 ? fmt::format(" after {} attempts", res.attempts) : std::string();
}

std::string_view path_only(std::string_view path) noexcept {
  return path.substr(0, path.find('?'));
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

std::string join_url(std::string_view prefix, std::string_view relative) {
  if (relative.empty())
    return std::string(prefix);
  if (relative.front() == '?' || relative.front() == '#')
    return fmt::format("{}{}", prefix, relative);
  while (!prefix.empty() && prefix.back() == '/')
    prefix.remove_suffix(1);
  while (!relative.empty() && relative.front() == '/')
    relative.remove_prefix(1);
  return fmt::format("{}/{}", prefix, relative);
}

bool iequals(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size()
         && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
              return std::tolower(static_cast<unsigned char>(x))
                     == std::tolower(static_cast<unsigned char>(y));
            });
}

} // namespace stepflow::connectors::http_common
