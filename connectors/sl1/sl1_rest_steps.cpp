// The SL1 REST steps: lists that follow SL1's limit/offset paging, single
// objects by id, an event's external ticket, and alerts. run() builds the
// request and returns; the http_client's callbacks carry on from there.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "sl1/sl1.hpp"
#include "sl1/sl1_http.hpp"
#include "stepflow/runtime/log_level.hpp"

namespace stepflow::connectors {

namespace {

using namespace http_common;
using namespace sl1_detail;

/// What every SL1 REST step shares: its info, the connector's options, the
/// connection parameters and their checks.
class sl1_step : public step_type {
public:
  sl1_step(const sl1_connector_options& o, std::string name, std::string friendly,
           std::string description)
    : opts_(o) {
    info_.name = std::move(name);
    info_.friendly_name = std::move(friendly);
    info_.description = std::move(description);
    info_.version = "1.0.0";
    info_.syncpack = "sl1";
  }

  const step_info& info() const noexcept override { return info_; }

  caf::error check(const json::object& params) const override {
    if (auto err = step_type::check(params))
      return err;
    if (auto err = check_sl1_params(params, info_.name))
      return err;
    return check_own(params);
  }

  void run(std::shared_ptr<step_context> ctx, step_done done) const override {
    auto fin = std::make_shared<completion>(std::move(done));
    try {
      auto ep = sl1_endpoint(*ctx, opts_);
      if (!ep)
        return (*fin)(step_outcome::failure(fmt::format("{}: {}", info_.name, message_of(ep.error()))));
      start(ctx, *ep, fin);
    } catch (const std::exception& e) {
      (*fin)(step_outcome::failure(fmt::format("{}: {}", info_.name, e.what())));
    }
  }

protected:
  virtual caf::error check_own(const json::object&) const { return {}; }
  virtual void start(const std::shared_ptr<step_context>& ctx, const endpoint& ep,
                     completion_ptr fin) const = 0;

  caf::error bad(std::string what) const {
    return make_error(errc::invalid_definition, fmt::format("{}: {}", info_.name, what));
  }
  /// Requires an id-like parameter (number, digits or a URI).
  caf::error check_id(const json::object& params, std::string_view name) const {
    auto it = params.find(name);
    if (it == params.end() || id_of(&it->value()).empty())
      return bad(fmt::format("parameter \"{}\" must be an id (a number, or a URI such as "
                             "\"/api/device/12\")", name));
    return {};
  }
  void add(std::string name, std::string type, json::value def, std::string description,
           bool required = false) {
    add_param(info_.params, std::move(name), std::move(type), std::move(def),
              std::move(description), required);
  }

  sl1_connector_options opts_;
  step_info info_;
};

// -- lists -------------------------------------------------------------------------

/// One paged list request in progress.
struct list_state {
  std::shared_ptr<step_context> ctx;
  endpoint ep;
  completion_ptr fin;
  std::string path;                                     ///< "/api/device"
  std::vector<std::pair<std::string, std::string>> query; ///< filters and extras
  size_t page = 100;
  size_t offset = 0;
  size_t max = 10000;
  size_t count = 0;
  size_t pages = 0;
  json::object first; ///< the first page without its result_set
  json::array items;
  json::object by_uri; ///< extended_fetch results
  bool keyed = false;
};

void fetch_page(const std::shared_ptr<list_state>& st);

void on_page(const std::shared_ptr<list_state>& st, size_t asked, http_response&& res) {
  auto body = body_json(res);
  auto* rs = body.is_object() ? body.get_object().if_contains("result_set") : nullptr;
  if (!rs || !(rs->is_array() || rs->is_object()))
    return (*st->fin)(step_outcome::failure(
      fmt::format("GET {} returned no result_set (HTTP {})", st->path, res.status),
      failure_data(res)));
  ++st->pages;
  size_t returned = 0;
  if (rs->is_array()) {
    for (auto& item : rs->get_array()) {
      ++returned;
      if (st->count < st->max) {
        st->items.push_back(std::move(item));
        ++st->count;
      }
    }
  } else {
    st->keyed = true;
    for (auto& kv : rs->get_object()) {
      ++returned;
      if (st->count < st->max) {
        st->by_uri[kv.key()] = std::move(kv.value());
        ++st->count;
      }
    }
  }
  std::optional<double> total;
  if (auto* t = body.get_object().if_contains("total_matched"); t && t->is_number())
    total = t->to_number<double>();
  if (st->pages == 1) {
    st->first = std::move(body.get_object());
    st->first.erase("result_set");
  }
  st->offset += returned;
  bool exhausted = returned == 0 || returned < asked || (total && static_cast<double>(st->offset) >= *total);
  if (!exhausted && st->count < st->max)
    return fetch_page(st);
  if (!exhausted)
    st->ctx->log(log_level::warning,
                 fmt::format("GET {}: stopped at max_items {}; more results remain", st->path, st->max));
  st->ctx->log(log_level::info, fmt::format("GET {}: {} results in {} page{}", st->path, st->count,
                                            st->pages, st->pages == 1 ? "" : "s"));
  json::object out = std::move(st->first);
  out["total_returned"] = st->count;
  if (st->keyed) {
    // A keyed page may follow an empty array page; keep what both hold.
    for (auto& item : st->items)
      if (auto* uri = item.is_object() ? item.get_object().if_contains("URI") : nullptr)
        st->by_uri[to_text(*uri)] = std::move(item);
    out["result_set"] = std::move(st->by_uri);
  } else {
    out["result_set"] = std::move(st->items);
  }
  (*st->fin)(step_outcome::success(std::move(out)));
}

void fetch_page(const std::shared_ptr<list_state>& st) {
  size_t asked = std::min(st->page, st->max - st->count);
  auto q = st->query;
  q.emplace_back("limit", std::to_string(asked));
  q.emplace_back("offset", std::to_string(st->offset));
  call c;
  c.path = st->path + query_string(q);
  send(st->ctx, st->ep, std::move(c), st->fin,
       [st, asked](http_response&& res) { on_page(st, asked, std::move(res)); });
}

class sl1_list_step final : public sl1_step {
public:
  sl1_list_step(const sl1_connector_options& o, std::string name, std::string friendly,
                std::string resource, std::string what)
    : sl1_step(o, std::move(name), std::move(friendly),
               fmt::format("Lists {} (GET /api/{}), following SL1's limit/offset paging up to "
                           "max_items; outputs SL1's list object with every page's result_set.",
                           what, resource)),
      path_("/api/" + resource) {
    add_sl1_params(info_.params, o);
    add("limit", "number", o.page_size, "Page size: results asked for per request (1 to 10000).");
    add("offset", "number", 0, "Index of the first result.");
    add("max_items", "number", o.max_items, "Most results collected over all pages.");
    add("filters", "object", json::object{},
        "SL1 list filters, name to value, e.g. {\"filter.0.name.begins_with\": \"web\"}; a "
        "name without the \"filter.\" prefix gets it.");
    add("extended_fetch", "boolean", false,
        "Ask for whole objects (result_set keyed by URI) instead of {URI, description}.");
    add("query", "object", json::object{}, "Further query parameters, sent as given.");
  }

protected:
  caf::error check_own(const json::object& params) const override {
    if (auto err = check_number(params, info_.name, "limit", 1, 10'000, true))
      return err;
    if (auto err = check_number(params, info_.name, "offset", 0, 1e12, true))
      return err;
    if (auto err = check_number(params, info_.name, "max_items", 1, 1e7, true))
      return err;
    for (auto name : {"filters", "query"})
      if (auto it = params.find(name);
          it != params.end() && !it->value().is_null() && !it->value().is_object())
        return bad(fmt::format("parameter \"{}\" must be an object of name to value", name));
    return {};
  }

  void start(const std::shared_ptr<step_context>& ctx, const endpoint& ep,
             completion_ptr fin) const override {
    auto st = std::make_shared<list_state>();
    st->ctx = ctx;
    st->ep = ep;
    st->fin = std::move(fin);
    st->path = path_;
    st->page = static_cast<size_t>(std::clamp(ctx->param_number("limit", opts_.page_size), 1.0, 10'000.0));
    st->offset = static_cast<size_t>(std::max(0.0, ctx->param_number("offset", 0)));
    st->max = static_cast<size_t>(std::clamp(ctx->param_number("max_items", opts_.max_items), 1.0, 1e7));
    auto text_of = [](const json::value& v) { return to_text(v); };
    if (auto* f = ctx->param("filters"); f && f->is_object())
      for (const auto& kv : f->get_object()) {
        if (kv.value().is_null())
          continue;
        std::string name(kv.key());
        if (!name.starts_with("filter."))
          name = "filter." + name;
        st->query.emplace_back(std::move(name), text_of(kv.value()));
      }
    if (ctx->param_bool("extended_fetch", false))
      st->query.emplace_back("extended_fetch", "1");
    if (auto* q = ctx->param("query"); q && q->is_object())
      for (const auto& kv : q->get_object())
        if (!kv.value().is_null())
          st->query.emplace_back(std::string(kv.key()), text_of(kv.value()));
    fetch_page(st);
  }

private:
  std::string path_;
};

// -- single objects ----------------------------------------------------------------

class sl1_get_step final : public sl1_step {
public:
  sl1_get_step(const sl1_connector_options& o, std::string name, std::string friendly,
               std::string resource, std::string id_param, std::string what)
    : sl1_step(o, std::move(name), std::move(friendly),
               fmt::format("Reads one {} (GET /api/{}/{{{}}}) and outputs it.", what, resource,
                           id_param)),
      resource_(std::move(resource)), id_param_(std::move(id_param)) {
    add(id_param_, "any", nullptr,
        fmt::format("The {}'s id: a number, or its URI (\"/api/{}/12\").", what, resource_), true);
    add_sl1_params(info_.params, o);
  }

protected:
  caf::error check_own(const json::object& params) const override {
    return check_id(params, id_param_);
  }

  void start(const std::shared_ptr<step_context>& ctx, const endpoint& ep,
             completion_ptr fin) const override {
    call c;
    c.path = fmt::format("/api/{}/{}", resource_, url_encode(id_of(ctx->param(id_param_))));
    send(ctx, ep, std::move(c), fin,
         [fin](http_response&& res) { (*fin)(step_outcome::success(body_json(res))); });
  }

private:
  std::string resource_;
  std::string id_param_;
};

// -- event ticket ------------------------------------------------------------------

class sl1_update_event_ticket_step final : public sl1_step {
public:
  explicit sl1_update_event_ticket_step(const sl1_connector_options& o)
    : sl1_step(o, "SL1UpdateEventTicket", "Update SL1 Event Ticket",
               "Writes an external ticket reference on an SL1 event (POST /api/event/{event_id} "
               "with {\"ext_ticket_ref\": ticket}) and outputs the event SL1 answers with.") {
    add("event_id", "any", nullptr, "The event's id, or its URI (\"/api/event/12503\").", true);
    add("ticket", "string", nullptr,
        "The external ticket reference, e.g. a ServiceNow incident number (alias: "
        "ext_ticket_ref).");
    add("ext_ticket_ref", "string", nullptr, "Alias of ticket.");
    add("ticket_uri", "string", nullptr, "Also sent as force_ticket_uri when set.");
    add("method", "string", "POST", "POST (SL1's documented form) or PUT.");
    add_sl1_params(info_.params, o);
  }

protected:
  caf::error check_own(const json::object& params) const override {
    if (auto err = check_id(params, "event_id"))
      return err;
    auto text = [&](std::string_view name) -> const json::value* {
      auto it = params.find(name);
      return it == params.end() || it->value().is_null() ? nullptr : &it->value();
    };
    auto* t = text("ticket") ? text("ticket") : text("ext_ticket_ref");
    if (!t || (!t->is_string() && !t->is_number()) || to_text(*t).empty())
      return bad("parameter \"ticket\" (or \"ext_ticket_ref\") must be a non-empty string");
    if (auto* m = text("method")) {
      auto s = m->is_string() ? std::string(m->get_string()) : std::string();
      for (auto& ch : s)
        ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      if (s != "POST" && s != "PUT")
        return bad("parameter \"method\" must be POST or PUT");
    }
    return {};
  }

  void start(const std::shared_ptr<step_context>& ctx, const endpoint& ep,
             completion_ptr fin) const override {
    auto ticket = ctx->param_string("ticket");
    if (ticket.empty())
      ticket = ctx->param_string("ext_ticket_ref");
    json::object body{{"ext_ticket_ref", ticket}};
    if (auto uri = ctx->param_string("ticket_uri"); !uri.empty())
      body["force_ticket_uri"] = uri;
    call c;
    c.method = ctx->param_string("method", "POST");
    for (auto& ch : c.method)
      ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    c.path = "/api/event/" + url_encode(id_of(ctx->param("event_id")));
    c.body = std::move(body);
    c.idempotency_key = idempotency_key(*ctx);
    send(ctx, ep, std::move(c), fin,
         [fin](http_response&& res) { (*fin)(step_outcome::success(body_json(res))); });
  }
};

// -- alerts ------------------------------------------------------------------------

class sl1_post_alert_step final : public sl1_step {
public:
  explicit sl1_post_alert_step(const sl1_connector_options& o)
    : sl1_step(o, "SL1PostAlert", "Post SL1 Alert",
               "Sends an alert to SL1 (POST /api/alert) aligned to a device or another "
               "resource, and outputs SL1's answer with the new alert's \"location\".") {
    add("message", "string", nullptr, "The alert's message.", true);
    add("device_id", "any", nullptr,
        "The device the alert is aligned to (sets aligned_resource /api/device/{id}).");
    add("aligned_resource", "string", nullptr,
        "The aligned resource's URI, e.g. \"/api/device/12\" (instead of device_id).");
    add("value", "string", "", "The alert's value.");
    add("threshold", "string", "", "The alert's threshold.");
    add("message_time", "string", "", "When it happened (Unix seconds as text); empty: now.");
    add("force_ytype", "string", "0", "SL1's force_ytype.");
    add("force_yid", "string", "0", "SL1's force_yid.");
    add("force_yname", "string", "", "SL1's force_yname.");
    add_sl1_params(info_.params, o);
  }

protected:
  caf::error check_own(const json::object& params) const override {
    auto it = params.find("message");
    if (it == params.end() || !it->value().is_string() || it->value().get_string().empty())
      return bad("parameter \"message\" must be a non-empty string");
    auto ar = params.find("aligned_resource");
    bool has_ar = ar != params.end() && ar->value().is_string() && !ar->value().get_string().empty();
    if (!has_ar) {
      if (params.find("device_id") == params.end())
        return bad("parameter \"device_id\" (or \"aligned_resource\") is required");
      return check_id(params, "device_id");
    }
    return {};
  }

  void start(const std::shared_ptr<step_context>& ctx, const endpoint& ep,
             completion_ptr fin) const override {
    auto aligned = ctx->param_string("aligned_resource");
    if (aligned.empty())
      aligned = "/api/device/" + id_of(ctx->param("device_id"));
    json::object body{{"force_ytype", ctx->param_string("force_ytype", "0")},
                      {"force_yid", ctx->param_string("force_yid", "0")},
                      {"force_yname", ctx->param_string("force_yname")},
                      {"message", ctx->param_string("message")},
                      {"value", ctx->param_string("value")},
                      {"threshold", ctx->param_string("threshold")},
                      {"message_time", ctx->param_string("message_time")},
                      {"aligned_resource", aligned}};
    call c;
    c.method = "POST";
    c.path = "/api/alert";
    c.body = std::move(body);
    c.idempotency_key = idempotency_key(*ctx);
    send(ctx, ep, std::move(c), fin, [fin](http_response&& res) {
      auto out = body_json(res);
      const auto* location = find_header(res.headers, "Location");
      if (location && (out.is_object() || (out.is_string() && out.get_string().empty()))) {
        if (!out.is_object())
          out = json::object{};
        if (!out.get_object().contains("location"))
          out.get_object()["location"] = *location;
      }
      (*fin)(step_outcome::success(std::move(out)));
    });
  }
};

} // namespace

caf::error add_sl1_steps(step_registry& registry, const sl1_connector_options& o) {
  std::shared_ptr<const step_type> steps[] = {
    std::make_shared<sl1_list_step>(o, "SL1GetDevices", "Get SL1 Devices", "device", "devices"),
    std::make_shared<sl1_get_step>(o, "SL1GetDevice", "Get SL1 Device", "device", "device_id", "device"),
    std::make_shared<sl1_list_step>(o, "SL1GetOrganizations", "Get SL1 Organizations", "organization",
                                    "organizations"),
    std::make_shared<sl1_list_step>(o, "SL1GetEvents", "Get SL1 Events", "event", "events"),
    std::make_shared<sl1_get_step>(o, "SL1GetEvent", "Get SL1 Event", "event", "event_id", "event"),
    std::make_shared<sl1_update_event_ticket_step>(o),
    std::make_shared<sl1_list_step>(o, "SL1GetAlerts", "Get SL1 Alerts", "alert", "alerts"),
    std::make_shared<sl1_post_alert_step>(o),
  };
  for (auto& s : steps)
    if (auto err = registry.add(std::move(s)))
      return err;
  return sl1_detail::add_graphql_steps(registry, o);
}

} // namespace stepflow::connectors
