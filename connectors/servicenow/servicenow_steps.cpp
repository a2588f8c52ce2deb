// The ServiceNow Table API steps. run() opens a session (which may first
// exchange OAuth credentials for a token) and returns; the http_client's
// callbacks carry on, page after page for ServiceNowQueryRecords.
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

#include "servicenow/servicenow.hpp"
#include "servicenow/servicenow_http.hpp"
#include "stepflow/runtime/log_level.hpp"

namespace stepflow::connectors {

namespace {

using namespace http_common;
using namespace snow_detail;

/// Query parameters passed through to the Table API when set.
constexpr const char* passthrough[] = {"sysparm_fields", "sysparm_display_value",
                                       "sysparm_exclude_reference_link",
                                       "sysparm_input_display_value"};

/// The record(s) inside {"result": ...}; a failure outcome when absent.
std::optional<json::value> take_result(http_response& res, std::string_view method,
                                       std::string_view path, bool want_array,
                                       const completion_ptr& fin) {
  auto body = body_json(res);
  json::value* r = body.is_object() ? body.get_object().if_contains("result") : nullptr;
  if (!r || (want_array ? !r->is_array() : !r->is_object())) {
    (*fin)(step_outcome::failure(fmt::format("{} {} returned no result {} (HTTP {})", method, path,
                                             want_array ? "list" : "record", res.status),
                                 failure_data(res)));
    return std::nullopt;
  }
  return std::move(*r);
}

/// What every ServiceNow step shares.
class snow_step : public step_type {
public:
  snow_step(const servicenow_connector_options& o, std::shared_ptr<token_cache> cache,
            std::string name, std::string friendly, std::string description)
    : opts_(o), cache_(std::move(cache)) {
    info_.name = std::move(name);
    info_.friendly_name = std::move(friendly);
    info_.description = std::move(description);
    info_.version = "1.0.0";
    info_.syncpack = "servicenow";
    add("table", "string", nullptr, "The table, e.g. \"incident\" or \"cmdb_ci_server\".", true);
  }

  const step_info& info() const noexcept override { return info_; }

  caf::error check(const json::object& params) const override {
    if (auto err = step_type::check(params))
      return err;
    auto* t = present(params, "table");
    if (!t || !t->is_string() || t->get_string().empty()
        || !std::all_of(t->get_string().begin(), t->get_string().end(), [](char c) {
             return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
           }))
      return bad("parameter \"table\" must be a table name (letters, digits, _)");
    if (auto err = check_connection_params(params, info_.name))
      return err;
    for (auto name : passthrough)
      if (auto* v = present(params, name); v && !v->is_string() && !v->is_bool() && !v->is_number())
        return bad(fmt::format("parameter \"{}\" must be a string", name));
    return check_own(params);
  }

  void run(std::shared_ptr<step_context> ctx, step_done done) const override {
    auto fin = std::make_shared<completion>(std::move(done));
    try {
      auto self = this; // step types outlive every run
      open_session(ctx, opts_, *cache_, fin, [self, ctx, fin](session_ptr s) {
        try {
          self->start(ctx, s, fin);
        } catch (const std::exception& e) {
          (*fin)(step_outcome::failure(fmt::format("{}: {}", self->info_.name, e.what())));
        }
      });
    } catch (const std::exception& e) {
      (*fin)(step_outcome::failure(fmt::format("{}: {}", info_.name, e.what())));
    }
  }

protected:
  virtual caf::error check_own(const json::object&) const { return {}; }
  virtual void start(const std::shared_ptr<step_context>& ctx, const session_ptr& s,
                     completion_ptr fin) const = 0;

  caf::error bad(std::string what) const {
    return make_error(errc::invalid_definition, fmt::format("{}: {}", info_.name, what));
  }
  caf::error check_sys_id(const json::object& params) const {
    auto* v = present(params, "sys_id");
    if (!v || !v->is_string() || v->get_string().empty()
        || v->get_string().find_first_of("/?# ") != json::string::npos)
      return bad("parameter \"sys_id\" must be a record's sys_id");
    return {};
  }
  caf::error check_data(const json::object& params) const {
    auto* v = present(params, "data");
    if (!v || !(v->is_object() || v->is_string()))
      return bad("parameter \"data\" must be an object of field to value");
    if (v->is_string()) {
      auto parsed = parse_json(v->get_string(), "data");
      if (!parsed || !parsed->is_object())
        return bad("parameter \"data\" must be an object of field to value");
    }
    return {};
  }
  void add(std::string name, std::string type, json::value def, std::string description,
           bool required = false) {
    add_param(info_.params, std::move(name), std::move(type), std::move(def),
              std::move(description), required);
  }
  void add_passthrough() {
    add("sysparm_fields", "string", "", "Comma-separated fields to return; empty: all.");
    add("sysparm_display_value", "string", "",
        "true, false or all: display values instead of (or beside) stored ones.");
    add("sysparm_exclude_reference_link", "boolean", nullptr,
        "Leave the links out of reference fields.");
    add("sysparm_input_display_value", "boolean", nullptr,
        "Treat the values sent as display values (create and update).");
  }

  /// "/api/now/table/<table>[/<sys_id>]" plus the passthrough parameters.
  static std::string record_path(const step_context& ctx, bool with_id,
                                 std::vector<std::pair<std::string, std::string>> extra = {}) {
    auto path = "/api/now/table/" + url_encode(ctx.param_string("table"));
    if (with_id)
      path += "/" + url_encode(ctx.param_string("sys_id"));
    std::vector<std::pair<std::string, std::string>> q;
    for (auto name : passthrough)
      if (auto* v = ctx.param(name); v && !v->is_null() && !to_text(*v).empty())
        q.emplace_back(name, to_text(*v));
    q.insert(q.end(), extra.begin(), extra.end());
    return path + query_string(q);
  }

  static json::value data_param(const step_context& ctx) {
    auto* v = ctx.param("data");
    if (v && v->is_string())
      if (auto parsed = parse_json(v->get_string(), "data"))
        return std::move(*parsed);
    return v ? *v : json::value(json::object{});
  }

  servicenow_connector_options opts_;
  std::shared_ptr<token_cache> cache_;
  step_info info_;
};

/// Sends one call and outputs the unwrapped record.
void record_call(const std::shared_ptr<step_context>& ctx, const session_ptr& s, call c,
                 completion_ptr fin) {
  auto method = c.method;
  auto path = std::string(path_only(c.path));
  send(ctx, s, std::move(c), fin, [fin, method, path](http_response&& res) {
    if (auto r = take_result(res, method, path, false, fin))
      (*fin)(step_outcome::success(std::move(*r)));
  });
}

class create_record_step final : public snow_step {
public:
  create_record_step(const servicenow_connector_options& o, std::shared_ptr<token_cache> cache)
    : snow_step(o, std::move(cache), "ServiceNowCreateRecord", "ServiceNow Create Record",
                "Creates a record (POST /api/now/table/{table}) and outputs it as ServiceNow "
                "answers (the \"result\" member), with its sys_id.") {
    add("data", "object", nullptr, "The new record's fields, name to value.", true);
    add_passthrough();
    add_connection_params(info_.params, opts_);
  }

protected:
  caf::error check_own(const json::object& params) const override { return check_data(params); }
  void start(const std::shared_ptr<step_context>& ctx, const session_ptr& s,
             completion_ptr fin) const override {
    call c;
    c.method = "POST";
    c.path = record_path(*ctx, false);
    c.body = data_param(*ctx);
    c.idempotency_key = idempotency_key(*ctx);
    record_call(ctx, s, std::move(c), std::move(fin));
  }
};

class get_record_step final : public snow_step {
public:
  get_record_step(const servicenow_connector_options& o, std::shared_ptr<token_cache> cache)
    : snow_step(o, std::move(cache), "ServiceNowGetRecord", "ServiceNow Get Record",
                "Reads one record by sys_id (GET /api/now/table/{table}/{sys_id}) and outputs it "
                "(the \"result\" member).") {
    add("sys_id", "string", nullptr, "The record's sys_id.", true);
    add_passthrough();
    add_connection_params(info_.params, opts_);
  }

protected:
  caf::error check_own(const json::object& params) const override { return check_sys_id(params); }
  void start(const std::shared_ptr<step_context>& ctx, const session_ptr& s,
             completion_ptr fin) const override {
    call c;
    c.path = record_path(*ctx, true);
    record_call(ctx, s, std::move(c), std::move(fin));
  }
};

class update_record_step final : public snow_step {
public:
  update_record_step(const servicenow_connector_options& o, std::shared_ptr<token_cache> cache)
    : snow_step(o, std::move(cache), "ServiceNowUpdateRecord", "ServiceNow Update Record",
                "Updates one record by sys_id (PATCH, or PUT, /api/now/table/{table}/{sys_id}) "
                "and outputs it as updated (the \"result\" member).") {
    add("sys_id", "string", nullptr, "The record's sys_id.", true);
    add("data", "object", nullptr, "The fields to change, name to value.", true);
    add("method", "string", "PATCH", "PATCH or PUT.");
    add_passthrough();
    add_connection_params(info_.params, opts_);
  }

protected:
  caf::error check_own(const json::object& params) const override {
    if (auto err = check_sys_id(params))
      return err;
    if (auto err = check_data(params))
      return err;
    if (auto* m = present(params, "method")) {
      auto s = m->is_string() ? std::string(m->get_string()) : std::string();
      for (auto& ch : s)
        ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      if (s != "PATCH" && s != "PUT")
        return bad("parameter \"method\" must be PATCH or PUT");
    }
    return {};
  }
  void start(const std::shared_ptr<step_context>& ctx, const session_ptr& s,
             completion_ptr fin) const override {
    call c;
    c.method = ctx->param_string("method", "PATCH");
    for (auto& ch : c.method)
      ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    c.path = record_path(*ctx, true);
    c.body = data_param(*ctx);
    c.idempotency_key = idempotency_key(*ctx);
    record_call(ctx, s, std::move(c), std::move(fin));
  }
};

// -- ServiceNowQueryRecords ---------------------------------------------------------

struct query_state {
  std::shared_ptr<step_context> ctx;
  session_ptr s;
  completion_ptr fin;
  std::string table_path; ///< "/api/now/table/incident"
  std::vector<std::pair<std::string, std::string>> query; ///< without limit and offset
  size_t page = 1000;
  size_t offset = 0;
  size_t max = 10000;
  size_t pages = 0;
  json::array records;
  std::string next_path; ///< from a Link header, when it gave one
};

void query_page(const std::shared_ptr<query_state>& st);

/// The count in an X-Total-Count header.
std::optional<size_t> total_count(const http_headers& headers) {
  const auto* v = find_header(headers, "X-Total-Count");
  if (!v || v->empty() || !std::all_of(v->begin(), v->end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  try {
    return static_cast<size_t>(std::stoull(*v));
  } catch (...) {
    return std::nullopt;
  }
}

void on_query_page(const std::shared_ptr<query_state>& st, size_t asked, std::string current,
                   http_response&& res) {
  auto result = take_result(res, "GET", st->table_path, true, st->fin);
  if (!result)
    return;
  ++st->pages;
  auto& rows = result->get_array();
  size_t n = rows.size();
  for (auto& row : rows)
    if (st->records.size() < st->max)
      st->records.push_back(std::move(row));
  st->offset += n;

  bool more = false;
  st->next_path.clear();
  bool has_link = find_header(res.headers, "Link") != nullptr;
  if (n > 0 && st->records.size() < st->max) {
    if (has_link) {
      // The Link header decides: a rel="next" on this instance, or the end.
      auto next = link_next(res.headers);
      if (!next.empty() && next.starts_with(st->s->base + "/")) {
        st->next_path = next.substr(st->s->base.size());
        more = st->next_path != current;
      } else if (!next.empty()) {
        st->ctx->log(log_level::warning,
                     "ignoring a Link rel=\"next\" to another host; paging by sysparm_offset");
        auto total = total_count(res.headers);
        more = total ? st->offset < *total : n >= asked;
      }
    } else if (auto total = total_count(res.headers)) {
      more = st->offset < *total;
    } else {
      more = n >= asked; // a short page is the last one
    }
  }
  if (more)
    return query_page(st);
  if (st->records.size() >= st->max && n > 0)
    st->ctx->log(log_level::info,
                 fmt::format("GET {}: stopped at max_records {}", st->table_path, st->max));
  st->ctx->log(log_level::info, fmt::format("GET {}: {} records in {} page{}", st->table_path,
                                            st->records.size(), st->pages,
                                            st->pages == 1 ? "" : "s"));
  (*st->fin)(step_outcome::success(std::move(st->records)));
}

void query_page(const std::shared_ptr<query_state>& st) {
  size_t asked = std::min(st->page, st->max - st->records.size());
  call c;
  if (!st->next_path.empty()) {
    c.path = st->next_path;
    asked = st->page;
  } else {
    auto q = st->query;
    q.emplace_back("sysparm_limit", std::to_string(asked));
    q.emplace_back("sysparm_offset", std::to_string(st->offset));
    c.path = st->table_path + query_string(q);
  }
  auto current = c.path;
  send(st->ctx, st->s, std::move(c), st->fin,
       [st, asked, current = std::move(current)](http_response&& res) mutable {
         on_query_page(st, asked, std::move(current), std::move(res));
       });
}

class query_records_step final : public snow_step {
public:
  query_records_step(const servicenow_connector_options& o, std::shared_ptr<token_cache> cache)
    : snow_step(o, std::move(cache), "ServiceNowQueryRecords", "ServiceNow Query Records",
                "Lists the records of a table that match sysparm_query (GET "
                "/api/now/table/{table}), page after page (Link and X-Total-Count headers when "
                "present, else until a short page) up to max_records; outputs the records as an "
                "array.") {
    add("sysparm_query", "string", "", "Encoded query, e.g. \"active=true^priority=1\".");
    add("sysparm_limit", "number", o.page_size, "Records per page (1 to 10000).");
    add("sysparm_offset", "number", 0, "Index of the first record.");
    add("max_records", "number", o.max_records, "Most records collected over all pages.");
    add_passthrough();
    add_connection_params(info_.params, opts_);
  }

protected:
  caf::error check_own(const json::object& params) const override {
    if (auto* q = present(params, "sysparm_query"); q && !q->is_string())
      return bad("parameter \"sysparm_query\" must be a string");
    if (auto err = check_number(params, info_.name, "sysparm_limit", 1, 10'000, true))
      return err;
    if (auto err = check_number(params, info_.name, "sysparm_offset", 0, 1e12, true))
      return err;
    return check_number(params, info_.name, "max_records", 1, 1e7, true);
  }
  void start(const std::shared_ptr<step_context>& ctx, const session_ptr& s,
             completion_ptr fin) const override {
    auto st = std::make_shared<query_state>();
    st->ctx = ctx;
    st->s = s;
    st->fin = std::move(fin);
    st->table_path = "/api/now/table/" + url_encode(ctx->param_string("table"));
    if (auto q = ctx->param_string("sysparm_query"); !q.empty())
      st->query.emplace_back("sysparm_query", std::move(q));
    for (auto name : passthrough)
      if (auto* v = ctx->param(name); v && !v->is_null() && !to_text(*v).empty())
        st->query.emplace_back(name, to_text(*v));
    st->page = static_cast<size_t>(std::clamp(ctx->param_number("sysparm_limit", opts_.page_size), 1.0, 10'000.0));
    st->offset = static_cast<size_t>(std::max(0.0, ctx->param_number("sysparm_offset", 0)));
    st->max = static_cast<size_t>(std::clamp(ctx->param_number("max_records", opts_.max_records), 1.0, 1e7));
    query_page(st);
  }
};

} // namespace

caf::error add_servicenow_steps(step_registry& registry, const servicenow_connector_options& o) {
  auto cache = std::make_shared<token_cache>();
  std::shared_ptr<const step_type> steps[] = {
    std::make_shared<create_record_step>(o, cache),
    std::make_shared<get_record_step>(o, cache),
    std::make_shared<update_record_step>(o, cache),
    std::make_shared<query_records_step>(o, cache),
  };
  for (auto& s : steps)
    if (auto err = registry.add(std::move(s)))
      return err;
  return {};
}

} // namespace stepflow::connectors
