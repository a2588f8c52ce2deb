// GraphQL steps: SL1GraphQL (SL1's /gql, optionally following cursor
// pagination over one connection) and QueryGQL (PowerFlow's Base Step "Query
// GraphQL": one POST {query, variables} to any endpoint).
#include <algorithm>
#include <cctype>
#include <cmath>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>

#include <fmt/format.h>

#include "sl1/sl1.hpp"
#include "sl1/sl1_http.hpp"
#include "stepflow/runtime/log_level.hpp"

namespace stepflow::connectors {

namespace {

using namespace http_common;
using namespace sl1_detail;

/// "variables" must be an object or a string holding one.
caf::error check_variables(const json::object& params, std::string_view step) {
  auto* v = present(params, "variables");
  if (!v || v->is_object())
    return {};
  if (v->is_string()) {
    auto text = std::string_view(v->get_string());
    if (text.find_first_not_of(" \t\r\n") == std::string_view::npos)
      return {};
    auto parsed = parse_json(text, "variables");
    if (parsed && parsed->is_object())
      return {};
  }
  return make_error(errc::invalid_definition,
                    fmt::format("{}: parameter \"variables\" must be an object (or a JSON object "
                                "as text)",
                                step));
}

caf::error check_query(const json::object& params, std::string_view step) {
  auto* q = present(params, "query");
  if (!q || !q->is_string() || q->get_string().find_first_not_of(" \t\r\n") == json::string::npos)
    return make_error(errc::invalid_definition,
                      fmt::format("{}: parameter \"query\" must be a non-empty string", step));
  return check_variables(params, step);
}

/// The GraphQL request body.
json::object gql_body(const step_context& ctx, json::object variables) {
  json::object body{{"query", ctx.param_string("query")}, {"variables", std::move(variables)}};
  if (auto op = ctx.param_string("operation_name"); !op.empty())
    body["operationName"] = op;
  return body;
}

/// Fails on errors without data; logs errors beside data. True when `fin`
/// has been completed.
bool graphql_failed(step_context& ctx, const json::value& body, const completion_ptr& fin) {
  auto err = graphql_error(body);
  if (!err)
    return false;
  const json::value* data = body.is_object() ? body.get_object().if_contains("data") : nullptr;
  if (!data || data->is_null()) {
    (*fin)(step_outcome::failure(fmt::format("GraphQL error: {}", *err), body));
    return true;
  }
  ctx.log(log_level::warning, fmt::format("GraphQL returned data with errors: {}", *err));
  return false;
}

// -- SL1GraphQL -------------------------------------------------------------------

/// A paginated GraphQL query in progress.
struct gql_state {
  std::shared_ptr<step_context> ctx;
  endpoint ep;
  completion_ptr fin;
  json::object vars;
  std::string connection; ///< dot path inside data
  std::string page_var;
  std::string cursor_var;
  size_t page = 100;
  size_t max = 10000;
  size_t pages = 0;
  json::array nodes;
  std::optional<std::string> cursor;
  json::value match_count;
};

void gql_page(const std::shared_ptr<gql_state>& st);

void on_gql_page(const std::shared_ptr<gql_state>& st, http_response&& res) {
  auto body = body_json(res);
  if (!body.is_object())
    return (*st->fin)(step_outcome::failure(
      fmt::format("POST /gql returned no JSON object (HTTP {})", res.status), failure_data(res)));
  if (graphql_failed(*st->ctx, body, st->fin))
    return;
  const json::value* data = body.get_object().if_contains("data");
  const json::value* conn = data ? at_path(*data, st->connection) : nullptr;
  const json::value* edges = conn && conn->is_object() ? conn->get_object().if_contains("edges") : nullptr;
  if (!edges || !edges->is_array())
    return (*st->fin)(step_outcome::failure(
      fmt::format("POST /gql: data.{} is not a connection (no edges)", st->connection), body));
  ++st->pages;
  std::optional<std::string> last;
  for (const auto& edge : edges->get_array()) {
    if (!edge.is_object())
      continue;
    if (auto* c = edge.get_object().if_contains("cursor"); c && !c->is_null())
      last = to_text(*c);
    if (st->nodes.size() < st->max)
      if (auto* n = edge.get_object().if_contains("node"))
        st->nodes.push_back(*n);
  }
  bool has_next = false;
  if (auto* pi = conn->get_object().if_contains("pageInfo"); pi && pi->is_object()) {
    if (auto* h = pi->get_object().if_contains("hasNextPage"); h && h->is_bool())
      has_next = h->get_bool();
    if (auto* e = pi->get_object().if_contains("endCursor"); e && !e->is_null())
      last = to_text(*e);
    if (auto* m = pi->get_object().if_contains("matchCount"); m && !m->is_null())
      st->match_count = *m;
  }
  bool stuck = !last || edges->get_array().empty() || (st->cursor && *st->cursor == *last);
  if (has_next && !stuck && st->nodes.size() < st->max) {
    st->cursor = last;
    return gql_page(st);
  }
  if (has_next && st->nodes.size() >= st->max)
    st->ctx->log(log_level::warning,
                 fmt::format("POST /gql: stopped at max_items {}; more nodes remain", st->max));
  st->ctx->log(log_level::info, fmt::format("POST /gql: {} nodes of {} in {} page{}",
                                            st->nodes.size(), st->connection, st->pages,
                                            st->pages == 1 ? "" : "s"));
  json::object out{{"nodes", std::move(st->nodes)}, {"count", 0}, {"has_next_page", has_next}};
  out["count"] = out["nodes"].as_array().size();
  if (!st->match_count.is_null())
    out["match_count"] = st->match_count;
  (*st->fin)(step_outcome::success(std::move(out)));
}

void gql_page(const std::shared_ptr<gql_state>& st) {
  auto vars = st->vars;
  vars[st->page_var] = std::min(st->page, st->max - st->nodes.size());
  if (st->cursor)
    vars[st->cursor_var] = *st->cursor;
  call c;
  c.method = "POST";
  c.path = "/gql";
  c.body = gql_body(*st->ctx, std::move(vars));
  c.idempotency_key = idempotency_key(*st->ctx, fmt::format("page-{}", st->pages + 1));
  send(st->ctx, st->ep, std::move(c), st->fin,
       [st](http_response&& res) { on_gql_page(st, std::move(res)); });
}

class sl1_graphql_step final : public step_type {
public:
  explicit sl1_graphql_step(const sl1_connector_options& o) : opts_(o) {
    info_.name = "SL1GraphQL";
    info_.friendly_name = "SL1 GraphQL";
    info_.description =
      "Sends a GraphQL query to SL1 (POST /gql) and outputs its data. With \"connection\", "
      "follows cursor pagination over that connection (edges { cursor node }, pageInfo { "
      "hasNextPage }) and outputs {nodes, count, has_next_page[, match_count]}.";
    info_.version = "1.0.0";
    info_.syncpack = "sl1";
    auto add = [&](std::string name, std::string type, json::value def, std::string d,
                   bool required = false) {
      add_param(info_.params, std::move(name), std::move(type), std::move(def), std::move(d),
                required);
    };
    add("query", "string", nullptr,
        "The GraphQL document. To paginate, take the page size and the cursor as variables, "
        "e.g. devices(first: $first, after: $after).",
        true);
    add("variables", "object", json::object{}, "The query's variables (an object, or JSON text).");
    add("operation_name", "string", "", "operationName, for documents with several operations.");
    add("connection", "string", "",
        "Dot path inside data of the connection to page through, e.g. \"devices\"; empty: one "
        "request, output data.");
    add("page_size", "number", o.page_size, "Nodes asked for per page (1 to 10000).");
    add("page_size_variable", "string", "first", "Variable that carries the page size.");
    add("cursor_variable", "string", "after", "Variable that carries the cursor.");
    add("max_items", "number", o.max_items, "Most nodes collected over all pages.");
    add_sl1_params(info_.params, o);
  }

  const step_info& info() const noexcept override { return info_; }

  caf::error check(const json::object& params) const override {
    if (auto err = step_type::check(params))
      return err;
    if (auto err = check_sl1_params(params, info_.name))
      return err;
    if (auto err = check_query(params, info_.name))
      return err;
    if (auto err = check_number(params, info_.name, "page_size", 1, 10'000, true))
      return err;
    return check_number(params, info_.name, "max_items", 1, 1e7, true);
  }

  void run(std::shared_ptr<step_context> ctx, step_done done) const override {
    auto fin = std::make_shared<completion>(std::move(done));
    try {
      auto ep = sl1_endpoint(*ctx, opts_);
      if (!ep)
        return (*fin)(step_outcome::failure(fmt::format("SL1GraphQL: {}", message_of(ep.error()))));
      auto vars = object_param(*ctx, "variables");
      if (!vars)
        return (*fin)(step_outcome::failure("SL1GraphQL: parameter \"variables\" must be an object"));
      auto connection = ctx->param_string("connection");
      if (connection.starts_with("data."))
        connection.erase(0, 5);
      if (connection.empty()) {
        call c;
        c.method = "POST";
        c.path = "/gql";
        c.body = gql_body(*ctx, std::move(*vars));
        c.idempotency_key = idempotency_key(*ctx);
        return send(ctx, *ep, std::move(c), fin, [ctx, fin](http_response&& res) {
          auto body = body_json(res);
          if (graphql_failed(*ctx, body, fin))
            return;
          const json::value* data = body.is_object() ? body.get_object().if_contains("data") : nullptr;
          if (!data)
            return (*fin)(step_outcome::failure(
              fmt::format("POST /gql returned no data (HTTP {})", res.status), failure_data(res)));
          (*fin)(step_outcome::success(*data));
        });
      }
      auto st = std::make_shared<gql_state>();
      st->ctx = ctx;
      st->ep = std::move(*ep);
      st->fin = fin;
      st->vars = std::move(*vars);
      st->connection = std::move(connection);
      st->page_var = ctx->param_string("page_size_variable", "first");
      st->cursor_var = ctx->param_string("cursor_variable", "after");
      st->page = static_cast<size_t>(std::clamp(ctx->param_number("page_size", opts_.page_size), 1.0, 10'000.0));
      st->max = static_cast<size_t>(std::clamp(ctx->param_number("max_items", opts_.max_items), 1.0, 1e7));
      if (auto it = st->vars.find(st->cursor_var); it != st->vars.end() && !it->value().is_null())
        st->cursor = to_text(it->value()); // resume after a given cursor
      gql_page(st);
    } catch (const std::exception& e) {
      (*fin)(step_outcome::failure(fmt::format("SL1GraphQL: {}", e.what())));
    }
  }

private:
  sl1_connector_options opts_;
  step_info info_;
};

// -- QueryGQL ---------------------------------------------------------------------

class query_gql_step final : public step_type {
public:
  explicit query_gql_step(const sl1_connector_options& o) : opts_(o) {
    info_.name = "QueryGQL";
    info_.friendly_name = "Query GraphQL";
    info_.description =
      "Sends one GraphQL request (POST {query, variables}) to prefix_url + relative_url and "
      "saves the whole response body. Errors without data fail the step; errors next to data "
      "are logged as warnings. A non-2xx status fails with {http_code, headers, body}.";
    info_.version = "1.0.0";
    info_.syncpack = "base_steps";
    auto add = [&](std::string name, std::string type, json::value def, std::string d,
                   bool required = false) {
      add_param(info_.params, std::move(name), std::move(type), std::move(def), std::move(d),
                required);
    };
    add("prefix_url", "string", nullptr, "Base URL, e.g. \"https://sl1.example.com\".", true);
    add("relative_url", "string", "/gql", "Path appended to prefix_url.");
    add("query", "string", nullptr, "The GraphQL document.", true);
    add("variables", "object", json::object{}, "The query's variables (an object, or JSON text).");
    add("operation_name", "string", "", "operationName, when the document has several.");
    add("headers", "object", json::object{}, "Request headers, name to value.");
    add("user", "string", "", "User for basic authentication (alias: username).");
    add("username", "string", "", "Alias of user.");
    add("password", "string", "", "Password for basic authentication.");
    add("bearer_token", "string", "", "Sent as \"Authorization: Bearer <token>\" when not empty.");
    add("verify_ssl", "boolean", true, "Verify the server's TLS certificate (alias: verify).");
    add("verify", "boolean", nullptr, "Alias of verify_ssl.");
    add("ca_file", "string", "", "PEM file of CA certificates to trust.");
    add("proxy", "string", "", "Proxy URL; empty: the HTTP client's default.");
    add("timeout", "number", 60, "Whole-request timeout in seconds.");
    add("retries", "number", 0,
        "Times to retry a failed request (0 to 10); the POST carries an Idempotency-Key.");
    add("idempotency_key", "string", "",
        "Idempotency-Key sent on every attempt; default with retries: \"<run id>:<step name>\".");
  }

  const step_info& info() const noexcept override { return info_; }

  caf::error check(const json::object& params) const override {
    if (auto err = step_type::check(params))
      return err;
    auto* prefix = present(params, "prefix_url");
    if (!prefix || !prefix->is_string() || prefix->get_string().empty())
      return make_error(errc::invalid_definition,
                        "QueryGQL: parameter \"prefix_url\" must be a non-empty string");
    if (auto* h = present(params, "headers"); h && !h->is_object())
      return make_error(errc::invalid_definition,
                        "QueryGQL: parameter \"headers\" must be an object of name to value");
    if (auto err = check_query(params, "QueryGQL"))
      return err;
    return check_transport_params(params, "QueryGQL");
  }

  void run(std::shared_ptr<step_context> ctx, step_done done) const override {
    auto fin = std::make_shared<completion>(std::move(done));
    try {
      auto vars = object_param(*ctx, "variables");
      if (!vars)
        return (*fin)(step_outcome::failure("QueryGQL: parameter \"variables\" must be an object"));
      endpoint ep; // base stays empty: the call's path is the whole URL
      auto& r = ep.proto;
      if (auto* h = ctx->param("headers"); h && h->is_object())
        for (const auto& kv : h->get_object())
          if (!kv.value().is_null())
            r.headers.emplace_back(std::string(kv.key()), to_text(kv.value()));
      std::tie(r.user, r.password) = basic_credentials(*ctx);
      r.bearer_token = ctx->param_string("bearer_token");
      http_defaults d = opts_; // QueryGQL's own defaults, the connector's retry delays
      d.retries = 0;
      d.timeout_s = 60;
      apply_transport_params(*ctx, d, r);
      int retries = retries_param(*ctx, 0);
      call c;
      c.method = "POST";
      c.path = join_url(ctx->param_string("prefix_url"), ctx->param_string("relative_url", "/gql"));
      c.body = gql_body(*ctx, std::move(*vars));
      c.idempotency_key = ctx->param_string("idempotency_key");
      if (c.idempotency_key.empty() && retries > 0)
        c.idempotency_key = idempotency_key(*ctx);
      send(ctx, ep, std::move(c), fin, [ctx, fin](http_response&& res) {
        auto body = body_json(res);
        if (graphql_failed(*ctx, body, fin))
          return;
        (*fin)(step_outcome::success(std::move(body)));
      });
    } catch (const std::exception& e) {
      (*fin)(step_outcome::failure(fmt::format("QueryGQL: {}", e.what())));
    }
  }

private:
  sl1_connector_options opts_;
  step_info info_;
};

} // namespace

caf::error sl1_detail::add_graphql_steps(step_registry& registry, const sl1_connector_options& o) {
  if (auto err = registry.add(std::make_shared<sl1_graphql_step>(o)))
    return err;
  return registry.add(std::make_shared<query_gql_step>(o));
}

} // namespace stepflow::connectors
