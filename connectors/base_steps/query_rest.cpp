// PowerFlow's QueryREST step: one HTTP request through the shared http_client.
// run() submits and returns; the client's callback (on the HTTP I/O thread)
// builds the outcome and calls `done`.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>

#include <fmt/format.h>

#include "http_common/http_common.hpp"
#include "stepflow/runtime/http_client.hpp"
#include "stepflow/runtime/json.hpp"
#include "stepflow/runtime/log_level.hpp"
#include "stepflow/runtime/step.hpp"

namespace stepflow::connectors {

namespace {

constexpr double default_timeout_s = 60;
constexpr double default_connect_timeout_s = 10;

std::chrono::milliseconds seconds_param(const step_context& ctx, std::string_view name,
                                        double fallback) {
  double s = ctx.param_number(name, fallback);
  if (!std::isfinite(s) || s <= 0)
    s = fallback;
  return std::chrono::milliseconds(std::llround(std::min(s, 1e9) * 1000));
}

bool status_expected(long status, const json::value* expected) {
  if (!expected || expected->is_null())
    return status >= 200 && status < 300;
  auto matches = [&](const json::value& v) {
    if (v.is_number())
      return static_cast<long>(v.to_number<double>()) == status;
    if (v.is_string())
      return v.get_string() == std::to_string(status);
    return false;
  };
  if (expected->is_array())
    return std::any_of(expected->get_array().begin(), expected->get_array().end(), matches);
  return matches(*expected);
}

step_outcome build_outcome(step_context& ctx, const std::string& method, const std::string& url,
                           std::chrono::steady_clock::time_point started,
                           caf::expected<http_response>& result) {
  if (!result)
    return step_outcome::failure(message_of(result.error()));
  auto& res = *result;
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
              std::chrono::steady_clock::now() - started)
              .count();
  auto attempts = http_common::attempts_suffix(res);
  ctx.log(log_level::info, fmt::format("HTTP {} in {} ms{}", res.status, ms, attempts));
  if (!status_expected(res.status, ctx.param("expected_status")))
    return step_outcome::failure(
      fmt::format("{} {} returned HTTP {}{}", method, url, res.status, attempts),
      http_common::failure_data(res));
  if (res.body.empty()) {
    if (auto* location = find_header(res.headers, "Location"))
      return step_outcome::success(json::object{{"location", *location}});
  }
  return step_outcome::success(http_common::body_json(res));
}

class query_rest_step final : public step_type {
public:
  query_rest_step() {
    info_.name = "QueryREST";
    info_.friendly_name = "Query REST";
    info_.description =
      "Sends one HTTP request to prefix_url + relative_url and saves the response: the parsed "
      "JSON body (or the body text; {\"location\": ...} for an empty body with a Location "
      "header). A status outside expected_status (default: any 2xx) fails the step with "
      "{http_code, headers, body}.";
    info_.version = "1.0.0";
    info_.syncpack = "base_steps";
    auto add = [&](std::string name, std::string type, json::value def, std::string description,
                   bool required = false) {
      add_param(info_.params, std::move(name), std::move(type), std::move(def),
                             std::move(description), required);
    };
    add("prefix_url", "string", nullptr,
        "Base URL of the service, e.g. \"https://sl1.example.com/api\".", true);
    add("relative_url", "string", "",
        "Path appended to prefix_url, joined with exactly one '/'. A query alone (\"?a=1\") is "
        "appended as-is.");
    add("method", "string", "GET", "HTTP method (any case).");
    add("payload", "any", nullptr,
        "Request body. An object or array is sent as JSON (Content-Type application/json "
        "unless headers set one); a string is sent as-is; null or absent sends no body.");
    add("headers", "object", json::object{}, "Request headers, name to value.");
    add("user", "string", "", "User name for basic authentication (alias: username).");
    add("username", "string", "", "Alias of user.");
    add("password", "string", "", "Password for basic authentication.");
    add("bearer_token", "string", "",
        "Token sent as \"Authorization: Bearer <token>\" when not empty.");
    add("verify_ssl", "boolean", true,
        "Verify the server's TLS certificate and host name (alias: verify).");
    add("verify", "boolean", nullptr, "Alias of verify_ssl.");
    add("proxy", "string", "",
        "Proxy URL, e.g. \"http://proxy:3128\"; empty: the HTTP client's default (options or "
        "HTTPS_PROXY / HTTP_PROXY / NO_PROXY).");
    add("timeout", "number", default_timeout_s,
        "Whole-request timeout in seconds (non-positive: the default).");
    add("connect_timeout", "number", default_connect_timeout_s,
        "Connection timeout in seconds (non-positive: the default).");
    add("expected_status", "any", nullptr,
        "Status code, or array of codes, counted as success; null means any 2xx.");
    add("retries", "number", 0,
        "Times to retry after a connect error, a timeout before any response, or HTTP 429, "
        "500, 502, 503 or 504 (backoff with jitter, Retry-After honoured). POST and PATCH "
        "are retried only before they were sent, unless idempotency_key is set. At most 10.");
    add("idempotency_key", "string", "",
        "Sent as the Idempotency-Key header on every attempt; lets retries replay POST and "
        "PATCH.");
  }

  const step_info& info() const noexcept override { return info_; }

  caf::error check(const json::object& params) const override {
    if (auto err = step_type::check(params))
      return err;
    auto bad = [&](std::string what) {
      return make_error(errc::invalid_definition, fmt::format("QueryREST: {}", what));
    };
    auto get = [&](std::string_view name) { return http_common::present(params, name); };
    auto* prefix = get("prefix_url");
    if (!prefix->is_string() || prefix->get_string().empty())
      return bad("parameter \"prefix_url\" must be a non-empty string");
    if (auto* m = get("method")) {
      if (!m->is_string() || m->get_string().empty())
        return bad("parameter \"method\" must be a non-empty string");
      for (char c : m->get_string())
        if (!std::isalpha(static_cast<unsigned char>(c)))
          return bad(fmt::format("parameter \"method\" is not an HTTP method: {}",
                                 quote_json(m->get_string())));
    }
    if (auto* h = get("headers"); h && !h->is_object())
      return bad("parameter \"headers\" must be an object of name to value");
    for (auto name : {"timeout", "connect_timeout"})
      if (auto* t = get(name); t && !t->is_number() && !t->is_string())
        return bad(fmt::format("parameter \"{}\" must be a number of seconds", name));
    if (auto err = http_common::check_number(params, "QueryREST", "retries", 0,
                                             http_common::max_retries, true))
      return err;
    if (auto* k = get("idempotency_key"); k && !k->is_string() && !k->is_number())
      return bad("parameter \"idempotency_key\" must be a string");
    return {};
  }

  void run(std::shared_ptr<step_context> ctx, step_done done) const override {
    http_request req;
    std::string method;
    std::string url;
    try {
      if (ctx->cancelled.load())
        return done(step_outcome::failure("QueryREST was cancelled before sending its request"));
      if (!ctx->services.http)
        return done(step_outcome::failure(
          "QueryREST cannot send requests: no HTTP client service is configured"));
      auto prefix = ctx->param_string("prefix_url");
      if (prefix.empty())
        return done(step_outcome::failure("QueryREST: parameter \"prefix_url\" is missing"));
      url = http_common::join_url(prefix, ctx->param_string("relative_url"));
      method = ctx->param_string("method", "GET");
      for (auto& c : method)
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      if (method.empty())
        method = "GET";
      req.method = method;
      req.url = url;

      if (auto* h = ctx->param("headers"); h && h->is_object())
        for (const auto& kv : h->get_object())
          if (!kv.value().is_null())
            req.headers.emplace_back(std::string(kv.key()), to_text(kv.value()));

      if (auto* p = ctx->param("payload"); p && !p->is_null()) {
        if (p->is_string()) {
          req.body = std::string(p->get_string());
        } else {
          req.body = to_json(*p);
          if (!find_header(req.headers, "Content-Type"))
            req.headers.emplace_back("Content-Type", "application/json");
        }
      }

      std::tie(req.user, req.password) = http_common::basic_credentials(*ctx);
      req.bearer_token = ctx->param_string("bearer_token");
      // Either spelling set to false turns verification off.
      req.verify_tls = ctx->param_bool("verify_ssl", true) && ctx->param_bool("verify", true);
      req.proxy = ctx->param_string("proxy");
      req.timeout = seconds_param(*ctx, "timeout", default_timeout_s);
      req.connect_timeout = seconds_param(*ctx, "connect_timeout", default_connect_timeout_s);
      req.retry.max_attempts = 1 + http_common::retries_param(*ctx, 0);
      req.idempotency_key = ctx->param_string("idempotency_key");
      ctx->log(log_level::debug, fmt::format("{} {}", method, url));
    } catch (const std::exception& e) {
      return done(step_outcome::failure(fmt::format("QueryREST: {}", e.what())));
    }

    auto* http = ctx->services.http;
    auto started = std::chrono::steady_clock::now();
    http->submit(std::move(req), [ctx = std::move(ctx), done = std::move(done),
                                  method = std::move(method), url = std::move(url),
                                  started](caf::expected<http_response> result) {
      step_outcome out;
      try {
        out = build_outcome(*ctx, method, url, started, result);
      } catch (const std::exception& e) {
        out = step_outcome::failure(fmt::format("{} {}: {}", method, url, e.what()));
      } catch (...) {
        out = step_outcome::failure(fmt::format("{} {}: unknown error", method, url));
      }
      done(std::move(out));
    });
  }

private:
  step_info info_;
};

} // namespace

std::shared_ptr<const step_type> make_query_rest_step() {
  return std::make_shared<const query_rest_step>();
}

} // namespace stepflow::connectors
