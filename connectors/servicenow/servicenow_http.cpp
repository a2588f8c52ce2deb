#include "servicenow/servicenow_http.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <exception>
#include <functional>

#include <fmt/format.h>

#include "stepflow/runtime/log_level.hpp"

namespace stepflow::connectors::snow_detail {

using namespace http_common;

namespace {

/// Posts the OAuth grant of `s` to /oauth_token.do; on success stores the
/// token in `s` and the cache and calls `ready`.
void exchange_token(const std::shared_ptr<step_context>& ctx, const session_ptr& s,
                    completion_ptr fin, std::function<void()> ready) {
  if (!ctx->services.http)
    return (*fin)(step_outcome::failure("no HTTP client service is configured"));
  http_request req = s->proto;
  req.bearer_token.clear();
  req.method = "POST";
  req.url = s->base + "/oauth_token.do";
  std::vector<std::pair<std::string, std::string>> form{{"client_id", s->client_id},
                                                        {"client_secret", s->client_secret}};
  if (!s->refresh_token.empty()) {
    form.emplace(form.begin(), "grant_type", "refresh_token");
    form.emplace_back("refresh_token", s->refresh_token);
  } else {
    form.emplace(form.begin(), "grant_type", "password");
    form.emplace_back("username", s->user);
    form.emplace_back("password", s->password);
  }
  req.body = query_string(form).substr(1);
  req.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
  req.idempotency_key = idempotency_key(*ctx, "oauth");
  ctx->log(log_level::debug, fmt::format("POST {} (OAuth token)", req.url));
  ctx->services.http->submit(std::move(req), [ctx, s, fin, ready = std::move(ready)](
                                               caf::expected<http_response> result) {
    try {
      if (!result)
        return (*fin)(step_outcome::failure(message_of(result.error())));
      auto& res = *result;
      if (res.status < 200 || res.status >= 300)
        return (*fin)(step_outcome::failure(
          fmt::format("POST /oauth_token.do returned HTTP {}{}", res.status, attempts_suffix(res)),
          failure_data(res)));
      auto body = body_json(res);
      const json::value* token = body.is_object() ? body.get_object().if_contains("access_token") : nullptr;
      if (!token || !token->is_string() || token->get_string().empty())
        return (*fin)(step_outcome::failure(
          fmt::format("POST /oauth_token.do returned no access_token (HTTP {})", res.status)));
      double expires = 1800;
      if (auto* e = body.get_object().if_contains("expires_in")) {
        double d = number_of(*e);
        if (std::isfinite(d) && d > 0)
          expires = d;
      }
      s->proto.bearer_token = std::string(token->get_string());
      s->token_from_cache = false;
      s->cache->put(s->cache_key, s->proto.bearer_token,
                    std::chrono::seconds(static_cast<int64_t>(expires)));
      ready();
    } catch (const std::exception& e) {
      (*fin)(step_outcome::failure(fmt::format("POST /oauth_token.do: {}", e.what())));
    }
  });
}

} // namespace

std::optional<std::string> token_cache::get(const std::string& key) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto it = tokens_.find(key);
  if (it == tokens_.end())
    return std::nullopt;
  if (std::chrono::steady_clock::now() >= it->second.until) {
    tokens_.erase(it);
    return std::nullopt;
  }
  return it->second.token;
}

void token_cache::put(const std::string& key, std::string token, std::chrono::seconds expires_in) {
  // Stop using a token a little before ServiceNow does.
  auto margin = std::min<std::chrono::seconds>(std::chrono::seconds(60), expires_in / 10);
  std::lock_guard<std::mutex> guard{mtx_};
  tokens_[key] = entry{std::move(token), std::chrono::steady_clock::now() + expires_in - margin};
}

void token_cache::drop(const std::string& key, const std::string& token) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (auto it = tokens_.find(key); it != tokens_.end() && it->second.token == token)
    tokens_.erase(it);
}

void add_connection_params(std::vector<param_info>& params, const servicenow_connector_options& o) {
  add_param(params, "snow_url", "string", nullptr,
            "Base URL of the instance, e.g. \"https://acme.service-now.com\". Either this or "
            "instance.");
  add_param(params, "instance", "string", nullptr,
            "Instance name: \"acme\" means https://acme.service-now.com (used when snow_url is "
            "not set).");
  add_basic_auth_params(params);
  add_param(params, "oauth_token", "string", "",
            "OAuth access token, sent as \"Authorization: Bearer <token>\" (wins over the rest).");
  add_param(params, "client_id", "string", "",
            "OAuth client id: with client_secret and refresh_token (or user and password), a "
            "token is obtained from /oauth_token.do and cached.");
  add_param(params, "client_secret", "string", "", "OAuth client secret.");
  add_param(params, "refresh_token", "string", "", "OAuth refresh token.");
  add_transport_params(params, o);
}

caf::error check_connection_params(const json::object& params, std::string_view step) {
  auto bad = [&](std::string what) {
    return make_error(errc::invalid_definition, fmt::format("{}: {}", step, what));
  };
  auto text = [&](std::string_view name) -> std::string {
    auto* v = present(params, name);
    return v && v->is_string() ? std::string(v->get_string()) : std::string();
  };
  for (auto name : {"snow_url", "instance", "user", "username", "password", "oauth_token",
                    "client_id", "client_secret", "refresh_token", "ca_file", "proxy"})
    if (auto* v = present(params, name); v && !v->is_string())
      return bad(fmt::format("parameter \"{}\" must be a string", name));
  auto url = text("snow_url");
  auto instance = text("instance");
  if (!url.empty()) {
    if (!url.starts_with("http://") && !url.starts_with("https://"))
      return bad("parameter \"snow_url\" must start with http:// or https://");
    if (has_userinfo(url))
      return bad("parameter \"snow_url\" must not carry credentials; use user and password");
  } else if (!instance.empty()) {
    if (!std::all_of(instance.begin(), instance.end(), [](char c) {
          return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.';
        }))
      return bad("parameter \"instance\" must be an instance name such as \"acme\"");
  } else {
    return bad("parameter \"snow_url\" (or \"instance\") is required");
  }
  if (!text("client_id").empty()) {
    if (text("client_secret").empty())
      return bad("parameter \"client_secret\" is required with client_id");
    bool has_user = !text("user").empty() || !text("username").empty();
    if (text("refresh_token").empty() && !has_user && text("oauth_token").empty())
      return bad("OAuth needs a refresh_token (or user and password) with client_id");
  }
  return check_transport_params(params, step);
}

void open_session(const std::shared_ptr<step_context>& ctx, const servicenow_connector_options& o,
                  token_cache& cache, completion_ptr fin, std::function<void(session_ptr)> ready) {
  auto s = std::make_shared<session>();
  s->cache = &cache;
  auto url = ctx->param_string("snow_url");
  if (!url.empty()) {
    while (!url.empty() && url.back() == '/')
      url.pop_back();
    s->base = std::move(url);
  } else {
    auto instance = ctx->param_string("instance");
    if (instance.empty())
      return (*fin)(step_outcome::failure("parameter \"snow_url\" (or \"instance\") is required"));
    s->base = instance.find('.') == std::string::npos
                ? fmt::format("https://{}.service-now.com", instance)
                : fmt::format("https://{}", instance);
  }
  auto& r = s->proto;
  apply_transport_params(*ctx, o, r);
  r.headers.emplace_back("Accept", "application/json");

  auto [user, password] = basic_credentials(*ctx);
  if (auto token = ctx->param_string("oauth_token"); !token.empty()) {
    r.bearer_token = std::move(token);
    return ready(std::move(s));
  }
  if (auto id = ctx->param_string("client_id"); !id.empty()) {
    s->client_id = std::move(id);
    s->client_secret = ctx->param_string("client_secret");
    s->refresh_token = ctx->param_string("refresh_token");
    s->user = std::move(user);
    s->password = std::move(password);
    // The key identifies the grant without holding its secrets.
    auto secret = s->client_secret + '\n'
                  + (s->refresh_token.empty() ? s->user + '\n' + s->password : s->refresh_token);
    s->cache_key = fmt::format("{}\n{}\n{:x}", s->base, s->client_id, std::hash<std::string>{}(secret));
    if (auto cached = cache.get(s->cache_key)) {
      r.bearer_token = std::move(*cached);
      s->token_from_cache = true;
      return ready(std::move(s));
    }
    return exchange_token(ctx, s, std::move(fin), [s, ready = std::move(ready)] { ready(s); });
  }
  if (!user.empty()) {
    r.user = std::move(user);
    r.password = std::move(password);
  }
  ready(std::move(s));
}

void send(const std::shared_ptr<step_context>& ctx, const session_ptr& s, call c,
          completion_ptr fin, ok_handler ok) {
  auto retry_on_401 = [ctx, s, fin](const http_response& res, call& c, ok_handler& ok) {
    if (res.status != 401 || !s->token_from_cache)
      return false;
    // The cached token was revoked or expired early: one fresh token, one more try.
    ctx->log(log_level::info, "HTTP 401 with a cached OAuth token; getting a new one");
    s->cache->drop(s->cache_key, s->proto.bearer_token);
    s->token_from_cache = false;
    exchange_token(ctx, s, fin, [ctx, s, fin, ok = std::move(ok), c = std::move(c)]() mutable {
      send(ctx, s, std::move(c), fin, std::move(ok));
    });
    return true;
  };
  http_common::send(ctx, *s, std::move(c), std::move(fin), std::move(ok), std::move(retry_on_401));
}

std::string link_next(const http_headers& headers) {
  for (const auto& [name, value] : headers) {
    if (!iequals(name, "Link"))
      continue;
    // <url>;rel="first",<url>;rel="next",... (a URL may itself hold commas)
    std::string_view v = value;
    size_t pos = 0;
    while ((pos = v.find('<', pos)) != std::string_view::npos) {
      auto gt = v.find('>', pos);
      if (gt == std::string_view::npos)
        break;
      auto target = v.substr(pos + 1, gt - pos - 1);
      auto next = v.find('<', gt);
      auto params = v.substr(gt + 1, next == std::string_view::npos ? v.npos : next - gt - 1);
      std::string lower(params);
      for (auto& ch : lower)
        ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      lower.erase(std::remove(lower.begin(), lower.end(), ' '), lower.end());
      if (lower.find("rel=\"next\"") != std::string::npos || lower.find("rel=next") != std::string::npos)
        return std::string(target);
      pos = gt;
    }
  }
  return {};
}

} // namespace stepflow::connectors::snow_detail
