// stepflow-sim: ServiceNow and SL1 simulators for tests, benchmarks and for
// trying stepflow without an SL1 or a ServiceNow.
//
//   stepflow-sim snow|sl1 [--port N] [--port-file F] [--latency-ms L]
//                [--error-rate R] [--devices N] [--events N] [--http-threads T]
//                [--auth USER:PASSWORD] [--oauth-client ID:SECRET]
//                [--oauth-refresh TOKEN]
//
// ServiceNow (Table API subset): POST/GET/PUT/PATCH/DELETE
//   /api/now/table/{table}[/{sys_id}], list with sysparm_query (a=b^c=d),
//   sysparm_fields, sysparm_limit, sysparm_offset (X-Total-Count, and Link
//   first/prev/next/last when sysparm_limit is given); generated sys_id, INC
//   numbers for incident; sys_user and core_company seeded; POST
//   /oauth_token.do (password and refresh_token grants).
// SL1: GET /api/device[/{id}] (filter.*, extended_fetch), /api/organization
//   [/{id}] (result_set lists), GET /api/event[/{id}] (seeded with
//   --events), GET/PUT/POST/PATCH /api/event/{id} (ext_ticket_ref and its
//   aliases), GET/POST /api/alert[/{id}], POST /gql (devices / events
//   connections, cursor paging; first/after literal or $variables).
// Both: GET /_stats, POST /_reset, GET /_health (the peers' mock contract);
//   POST /_fail {"status", "count", "retry_after"} answers the next `count`
//   API requests with `status`. --auth makes API requests need Basic auth (or,
//   ServiceNow, a token from /oauth_token.do); others get 401.
// Loopback only. Latency is added without blocking the I/O threads.
#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <fmt/format.h>

#include "stepflow/runtime/clock.hpp"
#include "stepflow/runtime/http_server.hpp"
#include "stepflow/runtime/json.hpp"

using namespace stepflow;

namespace {

std::atomic<bool> g_stop{false};
extern "C" void on_signal(int) {
  g_stop = true;
}

http_reply reply(int status, const json::value& v) {
  http_reply r;
  r.status = status;
  r.body = to_json(v);
  return r;
}

http_reply error(int status, std::string msg) {
  return reply(status, json::object{{"error", json::object{{"message", msg}}}, {"status", "failure"}});
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    auto p = s.find(sep, start);
    auto part = s.substr(start, p == std::string_view::npos ? std::string_view::npos : p - start);
    if (!part.empty())
      out.emplace_back(part);
    if (p == std::string_view::npos)
      break;
    start = p + 1;
  }
  return out;
}

/// A query parameter as a count; `fallback` when absent or not a number.
size_t count_param(const http_request_data& req, std::string_view name, size_t fallback) {
  auto v = req.query_param(name);
  if (!v || v->empty() || !std::all_of(v->begin(), v->end(), [](char c) { return c >= '0' && c <= '9'; }))
    return fallback;
  try {
    return std::stoul(*v);
  } catch (...) {
    return fallback;
  }
}

/// Decodes an application/x-www-form-urlencoded body.
std::map<std::string, std::string> form_fields(std::string_view body) {
  std::map<std::string, std::string> out;
  for (const auto& pair : split(body, '&')) {
    auto eq = pair.find('=');
    auto key = pair.substr(0, eq);
    auto value = eq == std::string::npos ? std::string() : pair.substr(eq + 1);
    std::replace(key.begin(), key.end(), '+', ' ');
    std::replace(value.begin(), value.end(), '+', ' ');
    out[percent_decode(key)] = percent_decode(value);
  }
  return out;
}

std::string base64(std::string_view in) {
  static constexpr char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out += {tbl[v >> 18], tbl[(v >> 12) & 63], tbl[(v >> 6) & 63], tbl[v & 63]};
  }
  if (i + 1 == in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    out += {tbl[v >> 18], tbl[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == in.size()) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += {tbl[v >> 18], tbl[(v >> 12) & 63], tbl[(v >> 6) & 63], '='};
  }
  return out;
}

/// Who may call the API (--auth, --oauth-client, --oauth-refresh) and the
/// OAuth tokens issued so far.
struct auth_state {
  std::string basic;         ///< expected Authorization value; empty: no auth
  std::string user, password;
  std::string client_id, client_secret, refresh_token;
  std::mutex m;
  std::set<std::string> tokens;
  std::mt19937_64 rng{777};

  bool allows(const http_request_data& req) {
    if (basic.empty())
      return true;
    auto h = req.header("Authorization");
    if (h == basic)
      return true;
    if (h.starts_with("Bearer ")) {
      std::lock_guard<std::mutex> g{m};
      return tokens.count(std::string(h.substr(7))) > 0;
    }
    return false;
  }

  /// ServiceNow's POST /oauth_token.do.
  http_reply token(const http_request_data& req) {
    auto f = form_fields(req.body);
    auto denied = [] {
      return reply(401, json::object{{"error_description", "access_denied"}, {"error", "server_error"}});
    };
    if (client_id.empty() || f["client_id"] != client_id || f["client_secret"] != client_secret)
      return denied();
    auto grant = f["grant_type"];
    bool ok = (grant == "password" && !user.empty() && f["username"] == user && f["password"] == password)
              || (grant == "refresh_token" && !refresh_token.empty() && f["refresh_token"] == refresh_token);
    if (!ok)
      return denied();
    std::lock_guard<std::mutex> g{m};
    auto tok = fmt::format("{:016x}{:016x}", rng(), rng());
    tokens.insert(tok);
    return reply(200, json::object{{"access_token", tok}, {"refresh_token", refresh_token.empty() ? "r-" + tok : refresh_token},
                                   {"scope", "useraccount"}, {"token_type", "Bearer"}, {"expires_in", 1799}});
  }
};

int64_t now_ms() {
  return system_clock().now_ns() / 1'000'000;
}

/// Delivers replies after a delay without blocking an I/O thread.
class delayer {
public:
  delayer() : thread_([this] { loop(); }) {}
  ~delayer() {
    {
      std::lock_guard<std::mutex> g{m_};
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void later(std::chrono::milliseconds d, http_responder r, http_reply rep) {
    std::lock_guard<std::mutex> g{m_};
    q_.emplace(std::chrono::steady_clock::now() + d, item{std::move(r), std::move(rep)});
    cv_.notify_all();
  }

private:
  struct item {
    http_responder r;
    http_reply rep;
  };
  void loop() {
    std::unique_lock<std::mutex> g{m_};
    while (!stop_) {
      if (q_.empty()) {
        cv_.wait(g);
        continue;
      }
      auto it = q_.begin();
      if (it->first > std::chrono::steady_clock::now()) {
        cv_.wait_until(g, it->first);
        continue;
      }
      auto x = std::move(it->second);
      q_.erase(it);
      g.unlock();
      x.r(std::move(x.rep));
      g.lock();
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::multimap<std::chrono::steady_clock::time_point, item> q_;
  bool stop_ = false;
  std::thread thread_;
};

// -- ServiceNow -----------------------------------------------------------------

struct snow_state {
  std::mutex m;
  std::map<std::string, std::map<std::string, json::object>> tables;
  std::map<std::string, std::vector<std::string>> order; // insertion order per table
  uint64_t inc = 10000, created = 0, gets = 0, updates = 0;
  std::mt19937_64 rng{12345};

  std::string new_sys_id() {
    return fmt::format("{:016x}{:016x}", rng(), rng());
  }
  void seed() {
    insert("sys_user", json::object{{"user_name", "admin"}, {"name", "System Administrator"}});
    insert("core_company", json::object{{"name", "ACME"}});
  }
  json::object insert(const std::string& table, json::object rec) {
    auto id = new_sys_id();
    rec["sys_id"] = id;
    rec["sys_created_on"] = format_time(system_clock().now_ns());
    if (table == "incident" && !rec.contains("number"))
      rec["number"] = fmt::format("INC{:07}", ++inc);
    tables[table][id] = rec;
    order[table].push_back(id);
    ++created;
    return rec;
  }
  void reset() {
    tables.clear();
    order.clear();
    inc = 10000;
    created = gets = updates = 0;
    seed();
  }
};

bool matches(const json::object& rec, const std::string& query) {
  for (const auto& cond : split(query, '^')) {
    auto eq = cond.find('=');
    if (eq == std::string::npos)
      continue;
    auto field = cond.substr(0, eq);
    auto want = cond.substr(eq + 1);
    auto it = rec.find(field);
    if (it == rec.end() || to_text(it->value()) != want)
      return false;
  }
  return true;
}

json::object pick(const json::object& rec, const std::optional<std::string>& fields) {
  if (!fields || fields->empty())
    return rec;
  json::object out;
  for (const auto& f : split(*fields, ','))
    if (auto it = rec.find(f); it != rec.end())
      out[f] = it->value();
  return out;
}

http_reply snow_handle(snow_state& st, const http_request_data& req) {
  auto parts = split(req.path, '/');
  // api now table {table} [{sys_id}]
  if (parts.size() < 4 || parts[0] != "api" || parts[1] != "now" || parts[2] != "table")
    return error(404, "no such endpoint");
  const auto& table = parts[3];
  std::lock_guard<std::mutex> g{st.m};
  if (parts.size() == 4) {
    if (req.method == "POST") {
      auto body = parse_json(req.body, "body");
      if (!body || !body->is_object())
        return error(400, "the body must be a JSON object");
      return reply(201, json::object{{"result", st.insert(table, body->get_object())}});
    }
    if (req.method == "GET") {
      ++st.gets;
      auto q = req.query_param("sysparm_query").value_or("");
      auto fields = req.query_param("sysparm_fields");
      bool paged = req.query_param("sysparm_limit").has_value();
      size_t limit = count_param(req, "sysparm_limit", 10000);
      size_t offset = count_param(req, "sysparm_offset", 0);
      json::array out;
      size_t matched = 0;
      for (const auto& id : st.order[table]) {
        const auto& rec = st.tables[table][id];
        if (!matches(rec, q))
          continue;
        if (matched++ >= offset && out.size() < limit)
          out.push_back(pick(rec, fields));
      }
      auto r = reply(200, json::object{{"result", std::move(out)}});
      r.headers.emplace_back("X-Total-Count", std::to_string(matched));
      if (paged && limit > 0) {
        // Like ServiceNow: the same query with another sysparm_offset.
        std::string rest;
        for (const auto& part : split(req.query, '&'))
          if (!part.starts_with("sysparm_offset="))
            rest += part + "&";
        auto link = [&](size_t at, const char* rel) {
          return fmt::format("<http://{}{}?{}sysparm_offset={}>;rel=\"{}\"", req.header("Host"),
                             req.path, rest, at, rel);
        };
        size_t last = matched == 0 ? 0 : (matched - 1) / limit * limit;
        std::string links = link(0, "first");
        if (offset > 0)
          links += "," + link(offset > limit ? offset - limit : 0, "prev");
        if (offset + limit < matched)
          links += "," + link(offset + limit, "next");
        links += "," + link(last, "last");
        r.headers.emplace_back("Link", std::move(links));
      }
      return r;
    }
    return error(405, "method not allowed");
  }
  auto& rows = st.tables[table];
  auto it = rows.find(parts[4]);
  if (it == rows.end())
    return error(404, "No Record found");
  if (req.method == "GET") {
    ++st.gets;
    return reply(200, json::object{{"result", pick(it->second, req.query_param("sysparm_fields"))}});
  }
  if (req.method == "PUT" || req.method == "PATCH") {
    auto body = parse_json(req.body, "body");
    if (!body || !body->is_object())
      return error(400, "the body must be a JSON object");
    for (const auto& kv : body->get_object())
      if (kv.key() != "sys_id")
        it->second[kv.key()] = kv.value();
    ++st.updates;
    return reply(200, json::object{{"result", it->second}});
  }
  if (req.method == "DELETE") {
    rows.erase(it);
    auto& ord = st.order[table];
    ord.erase(std::remove(ord.begin(), ord.end(), parts[4]), ord.end());
    http_reply r;
    r.status = 204;
    r.content_type.clear();
    return r;
  }
  return error(405, "method not allowed");
}

// -- SL1 ------------------------------------------------------------------------

struct sl1_state {
  std::mutex m;
  int devices = 100;
  int seeded_events = 0;
  std::map<std::string, json::object> events;
  std::vector<json::object> alert_log; ///< alert n is alert_log[n - 1]
  std::map<std::string, int> ticket_writes;
  uint64_t tickets_written = 0, distinct = 0, dupes = 0, event_gets = 0, alerts = 0;
  int64_t first_write_ms = 0, last_write_ms = 0, last_new_event_ms = 0, reset_ms = now_ms();

  json::object device(int id) const {
    return json::object{{"name", fmt::format("device-{}", id)},
                        {"ip", fmt::format("10.0.{}.{}", id / 256, id % 256)},
                        {"class_type/guid", "Linux | Server"},
                        {"organization", fmt::format("/api/organization/{}", id % 3)},
                        {"c-sys_id", ""}};
  }
  /// Events 1..seeded_events, as SL1's /api/event/{id} shows them.
  void seed() {
    for (int i = 1; i <= seeded_events; ++i) {
      int dev = (i - 1) % std::max(devices, 1) + 1;
      events[std::to_string(i)] = json::object{
        {"message", fmt::format("Event {} on device-{}", i, dev)},
        {"eseverity", i % 5},
        {"aligned_resource", fmt::format("/api/device/{}", dev)},
        {"aligned_resource_name", fmt::format("device-{}", dev)},
        {"event_policy", "/api/event_policy/1"},
        {"date_first", 1700000000 + i},
        {"date_last", 1700000000 + i},
        {"count", 1},
        {"ext_ticket_ref", ""}};
    }
  }
  void reset() {
    events.clear();
    alert_log.clear();
    ticket_writes.clear();
    tickets_written = distinct = dupes = event_gets = alerts = 0;
    first_write_ms = last_write_ms = last_new_event_ms = 0;
    reset_ms = now_ms();
    seed();
  }
};

/// SL1 list filters: filter.[N.]<field>[.<op>]=value on a device, with op
/// eq (default), not, contains, begins_with, ends_with.
bool device_matches(const json::object& dev, int id, const http_request_data& req) {
  for (const auto& part : split(req.query, '&')) {
    if (!part.starts_with("filter."))
      continue;
    auto eq = part.find('=');
    if (eq == std::string::npos)
      continue;
    auto key = split(percent_decode(part.substr(7, eq - 7)), '.');
    auto want = percent_decode(part.substr(eq + 1));
    std::replace(want.begin(), want.end(), '+', ' ');
    if (!key.empty() && std::all_of(key[0].begin(), key[0].end(), ::isdigit))
      key.erase(key.begin());
    if (key.empty())
      continue;
    std::string op = key.size() > 1 ? key[1] : "eq";
    std::string have = key[0] == "id" ? std::to_string(id)
                       : dev.contains(key[0]) ? to_text(dev.at(key[0])) : std::string();
    bool ok = op == "eq" ? have == want
              : op == "not" ? have != want
              : op == "contains" ? have.find(want) != std::string::npos
              : op == "begins_with" ? have.starts_with(want)
              : op == "ends_with" ? have.ends_with(want)
              : false;
    if (!ok)
      return false;
  }
  return true;
}

/// An integer argument of a GraphQL field ("first: 10" or "first: $n").
std::optional<int> gql_int_arg(const std::string& q, const json::object& vars, std::string_view name) {
  // The argument, not a "$first: Int" variable declaration.
  auto key = std::string(name) + ":";
  auto p = q.find(key);
  while (p != std::string::npos && p > 0
         && (q[p - 1] == '$' || std::isalnum(static_cast<unsigned char>(q[p - 1])) || q[p - 1] == '_'))
    p = q.find(key, p + 1);
  if (p == std::string::npos)
    return std::nullopt;
  p += name.size() + 1;
  while (p < q.size() && q[p] == ' ')
    ++p;
  if (p < q.size() && q[p] == '$') {
    size_t e = p + 1;
    while (e < q.size() && (std::isalnum(static_cast<unsigned char>(q[e])) || q[e] == '_'))
      ++e;
    auto it = vars.find(q.substr(p + 1, e - p - 1));
    if (it == vars.end() || it->value().is_null())
      return std::nullopt;
    return std::atoi(to_text(it->value()).c_str());
  }
  if (p < q.size() && q[p] == '"')
    ++p;
  return std::atoi(q.c_str() + p);
}

json::value list_result(const char* kind, int total, size_t limit, size_t offset,
                        const std::function<std::string(int)>& desc) {
  json::array rs;
  for (int i = static_cast<int>(offset); i < total && rs.size() < limit; ++i)
    rs.push_back(json::object{{"URI", fmt::format("/api/{}/{}", kind, i + 1)}, {"description", desc(i + 1)}});
  return json::object{{"searchspec", json::object{}}, {"total_matched", total},
                      {"total_returned", rs.size()}, {"result_set", std::move(rs)}};
}

/// A list of (URI, description, full object) as SL1 answers it: an array of
/// {URI, description}, or with extended_fetch=1 an object of URI -> object.
json::value list_of(const std::vector<std::tuple<std::string, std::string, json::object>>& rows,
                    size_t limit, size_t offset, bool extended) {
  json::array rs;
  json::object ext;
  size_t returned = 0;
  for (size_t i = offset; i < rows.size() && returned < limit; ++i, ++returned) {
    const auto& [uri, desc, obj] = rows[i];
    if (extended)
      ext[uri] = obj;
    else
      rs.push_back(json::object{{"URI", uri}, {"description", desc}});
  }
  json::value result_set = extended ? json::value(std::move(ext)) : json::value(std::move(rs));
  return json::object{{"searchspec", json::object{}}, {"total_matched", rows.size()},
                      {"total_returned", returned}, {"result_set", std::move(result_set)}};
}

http_reply sl1_handle(sl1_state& st, const http_request_data& req) {
  auto parts = split(req.path, '/');
  std::lock_guard<std::mutex> g{st.m};
  size_t limit = count_param(req, "limit", 100);
  size_t offset = count_param(req, "offset", 0);
  bool extended = req.query_param("extended_fetch") == std::optional<std::string>("1");
  if (parts.size() == 1 && parts[0] == "gql" && req.method == "POST") {
    auto body = parse_json(req.body, "body");
    if (!body || !body->is_object() || !body->get_object().contains("query"))
      return error(400, "a GraphQL request needs a query");
    auto q = to_text(body->get_object().at("query"));
    json::object vars;
    if (auto it = body->get_object().find("variables"); it != body->get_object().end() && it->value().is_object())
      vars = it->value().get_object();
    int first = gql_int_arg(q, vars, "first").value_or(25);
    int after = gql_int_arg(q, vars, "after").value_or(0);
    bool want_events = q.find("events") != std::string::npos;
    json::array edges;
    int total = want_events ? static_cast<int>(st.events.size()) : st.devices;
    for (int i = after; i < total && static_cast<int>(edges.size()) < first; ++i) {
      json::object node;
      if (want_events) {
        auto it = std::next(st.events.begin(), i);
        node = it->second;
        node["id"] = it->first;
      } else {
        node = st.device(i + 1);
        node["id"] = std::to_string(i + 1);
      }
      edges.push_back(json::object{{"node", std::move(node)}, {"cursor", std::to_string(i + 1)}});
    }
    bool more = after + static_cast<int>(edges.size()) < total;
    json::object conn{{"edges", std::move(edges)},
                      {"pageInfo", json::object{{"hasNextPage", more}, {"matchCount", total}}}};
    return reply(200, json::object{{"data", json::object{{want_events ? "events" : "devices", std::move(conn)}}}});
  }
  if (parts.size() < 2 || parts[0] != "api")
    return error(404, "no such endpoint");
  const auto& kind = parts[1];
  if (kind == "device" && parts.size() == 2 && req.method == "GET"
      && (extended || req.query.find("filter.") != std::string::npos)) {
    std::vector<std::tuple<std::string, std::string, json::object>> rows;
    for (int i = 1; i <= st.devices; ++i) {
      auto dev = st.device(i);
      if (device_matches(dev, i, req))
        rows.emplace_back(fmt::format("/api/device/{}", i), fmt::format("device-{}", i), std::move(dev));
    }
    return reply(200, list_of(rows, limit, offset, extended));
  }
  if (kind == "device" || kind == "organization") {
    int total = kind == "device" ? st.devices : 3;
    if (parts.size() == 2 && req.method == "GET")
      return reply(200, list_result(kind.c_str(), total, limit, offset, [&](int i) {
                     return kind == "device" ? fmt::format("device-{}", i) : fmt::format("Org {}", i);
                   }));
    if (parts.size() == 3 && req.method == "GET") {
      int id = std::atoi(parts[2].c_str());
      if (id < 1 || id > total)
        return error(404, "not found");
      return reply(200, kind == "device" ? st.device(id)
                                         : json::value(json::object{{"company", fmt::format("Org {}", id)}}));
    }
    return error(405, "method not allowed");
  }
  if (kind == "alert" && parts.size() == 2 && req.method == "POST") {
    auto body = parse_json(req.body, "body");
    if (!body || !body->is_object())
      return error(400, "the body must be a JSON object");
    ++st.alerts;
    auto alert = body->get_object();
    alert["date_received"] = now_ms() / 1000;
    st.alert_log.push_back(std::move(alert));
    http_reply r = reply(201, json::object{{"status", "created"}});
    r.headers.emplace_back("Location", fmt::format("/api/alert/{}", st.alerts));
    return r;
  }
  if (kind == "alert" && req.method == "GET") {
    if (parts.size() == 2) {
      std::vector<std::tuple<std::string, std::string, json::object>> rows;
      for (size_t i = 0; i < st.alert_log.size(); ++i)
        rows.emplace_back(fmt::format("/api/alert/{}", i + 1),
                          st.alert_log[i].contains("message") ? to_text(st.alert_log[i].at("message")) : "",
                          st.alert_log[i]);
      return reply(200, list_of(rows, limit, offset, extended));
    }
    size_t id = static_cast<size_t>(std::atoll(parts[2].c_str()));
    if (parts.size() != 3 || id < 1 || id > st.alert_log.size())
      return error(404, "not found");
    return reply(200, st.alert_log[id - 1]);
  }
  if (kind == "event" && parts.size() == 2 && req.method == "GET") {
    std::vector<std::tuple<std::string, std::string, json::object>> rows;
    for (const auto& [id, ev] : st.events)
      rows.emplace_back("/api/event/" + id, ev.contains("message") ? to_text(ev.at("message")) : "", ev);
    return reply(200, list_of(rows, limit, offset, extended));
  }
  if (kind == "event" && parts.size() == 3) {
    const auto& id = parts[2];
    if (req.method == "GET") {
      ++st.event_gets;
      auto it = st.events.find(id);
      if (it == st.events.end())
        return error(404, "not found");
      return reply(200, it->second);
    }
    if (req.method == "PUT" || req.method == "POST" || req.method == "PATCH") {
      auto body = parse_json(req.body, "body");
      if (!body || !body->is_object())
        return error(400, "the body must be a JSON object");
      std::string ticket;
      for (auto key : {"ext_ticket_ref", "external_ticket_id", "ext_ticket_id", "external_ticket",
                       "ticket_id", "force_ticket_uri"})
        if (auto it = body->get_object().find(key); it != body->get_object().end() && !it->value().is_null())
          ticket = to_text(it->value());
      if (ticket.empty())
        return error(400, "no external ticket field (ext_ticket_ref) in the body");
      auto& ev = st.events[id];
      ev["ext_ticket_ref"] = ticket;
      auto n = ++st.ticket_writes[id];
      ++st.tickets_written;
      st.last_write_ms = now_ms();
      if (n == 1) {
        ++st.distinct;
        st.last_new_event_ms = st.last_write_ms;
      } else {
        ++st.dupes;
      }
      if (!st.first_write_ms)
        st.first_write_ms = st.last_write_ms;
      return reply(200, ev);
    }
  }
  return error(404, "no such endpoint");
}

} // namespace

int main(int argc, char** argv) {
  if (argc < 2 || (std::string(argv[1]) != "snow" && std::string(argv[1]) != "sl1")) {
    std::fprintf(stderr, "usage: stepflow-sim snow|sl1 [--port N] [--port-file F] [--latency-ms L] "
                         "[--error-rate R] [--devices N] [--events N] [--http-threads T] "
                         "[--auth USER:PASSWORD] [--oauth-client ID:SECRET] [--oauth-refresh TOKEN]\n");
    return 2;
  }
  bool snow = std::string(argv[1]) == "snow";
  auth_state auth;
  int events = 0;
  http_server_options opts;
  opts.port = snow ? 18081 : 18082;
  std::string port_file;
  int latency_ms = 0;
  double error_rate = 0;
  int devices = 100;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--port") opts.port = static_cast<uint16_t>(std::stoi(v));
    else if (k == "--port-file") port_file = v;
    else if (k == "--latency-ms") latency_ms = std::stoi(v);
    else if (k == "--error-rate") error_rate = std::stod(v);
    else if (k == "--devices") devices = std::stoi(v);
    else if (k == "--http-threads") opts.threads = std::stoul(v);
    else if (k == "--events") events = std::stoi(v);
    else if (k == "--auth" || k == "--oauth-client") {
      auto colon = v.find(':');
      if (colon == std::string::npos) { std::fprintf(stderr, "stepflow-sim: %s needs A:B\n", k.c_str()); return 2; }
      (k == "--auth" ? auth.user : auth.client_id) = v.substr(0, colon);
      (k == "--auth" ? auth.password : auth.client_secret) = v.substr(colon + 1);
    }
    else if (k == "--oauth-refresh") auth.refresh_token = v;
    else { std::fprintf(stderr, "stepflow-sim: unknown option %s\n", k.c_str()); return 2; }
  }
  if (error_rate < 0 || error_rate > 1) {
    std::fprintf(stderr, "stepflow-sim: --error-rate must be within 0..1\n");
    return 2;
  }
  snow_state sn;
  sn.seed();
  sl1_state sl;
  sl.devices = devices;
  sl.seeded_events = events;
  sl.seed();
  if (!auth.user.empty())
    auth.basic = "Basic " + base64(auth.user + ":" + auth.password);
  // POST /_fail: the next `fail_left` API requests answer `fail_status`.
  std::atomic<int> fail_left{0};
  std::mutex fail_m;
  int fail_status = 503;
  std::string fail_retry_after;
  std::atomic<uint64_t> api_requests{0}, injected{0}, unauthorized{0};
  delayer delay;
  std::mt19937_64 rng{12345};
  std::mutex rng_m;
  auto server = http_server::start(opts, [&](std::shared_ptr<const http_request_data> req,
                                            http_responder respond) {
    http_reply r;
    if (req->path == "/_health") {
      r.content_type = "text/plain";
      r.body = "ok";
      return respond(std::move(r));
    }
    if (req->path == "/_reset" && req->method == "POST") {
      fail_left = 0;
      if (snow) { std::lock_guard<std::mutex> g{sn.m}; sn.reset(); }
      else { std::lock_guard<std::mutex> g{sl.m}; sl.reset(); }
      return respond(reply(200, json::object{{"reset", true}}));
    }
    if (req->path == "/_fail" && req->method == "POST") {
      auto body = parse_json(req->body, "body");
      if (!body || !body->is_object())
        return respond(error(400, "the body must be a JSON object"));
      auto& o = body->get_object();
      std::lock_guard<std::mutex> g{fail_m};
      fail_status = o.contains("status") ? std::atoi(to_text(o.at("status")).c_str()) : 503;
      fail_retry_after = o.contains("retry_after") ? to_text(o.at("retry_after")) : "";
      fail_left = o.contains("count") ? std::atoi(to_text(o.at("count")).c_str()) : 1;
      return respond(reply(200, json::object{{"failing", fail_left.load()}}));
    }
    if (req->path == "/_stats") {
      json::object common{{"requests", api_requests.load()}, {"injected", injected.load()},
                          {"unauthorized", unauthorized.load()}};
      if (snow) {
        std::lock_guard<std::mutex> g{sn.m};
        json::object o{{"created", sn.created}, {"gets", sn.gets}, {"updates", sn.updates}};
        for (auto& kv : common)
          o[kv.key()] = kv.value();
        return respond(reply(200, o));
      }
      std::lock_guard<std::mutex> g{sl.m};
      json::object o{{"tickets_written", sl.tickets_written}, {"distinct_events", sl.distinct},
                     {"dupes", sl.dupes}, {"event_gets", sl.event_gets}, {"alerts", sl.alerts},
                     {"first_write_ms", sl.first_write_ms}, {"last_write_ms", sl.last_write_ms},
                     {"last_new_event_ms", sl.last_new_event_ms},
                     {"reset_ms", sl.reset_ms}};
      for (auto& kv : common)
        o[kv.key()] = kv.value();
      if (req->query_param("ids") == std::optional<std::string>("1")) {
        json::array ids;
        for (auto& [id, _] : sl.ticket_writes)
          ids.push_back(std::atoll(id.c_str()));
        o["event_ids"] = std::move(ids);
      }
      if (req->query_param("dupes") == std::optional<std::string>("1")) {
        json::object d;
        for (auto& [id, n] : sl.ticket_writes)
          if (n > 1)
            d[id] = n;
        o["dupe_counts"] = std::move(d);
      }
      return respond(reply(200, o));
    }
    ++api_requests;
    if (fail_left.load() > 0) {
      std::unique_lock<std::mutex> g{fail_m};
      if (fail_left > 0) {
        --fail_left;
        ++injected;
        auto rep = error(fail_status, "injected failure");
        if (!fail_retry_after.empty())
          rep.headers.emplace_back("Retry-After", fail_retry_after);
        g.unlock();
        return respond(std::move(rep));
      }
    }
    if (snow && req->path == "/oauth_token.do" && req->method == "POST")
      return respond(auth.token(*req));
    if (!auth.allows(*req)) {
      ++unauthorized;
      auto rep = reply(401, json::object{{"error", json::object{{"message", "User Not Authenticated"},
                                                                {"detail", "Required to provide Auth information"}}},
                                         {"status", "failure"}});
      rep.headers.emplace_back("WWW-Authenticate", "Basic realm=\"stepflow-sim\"");
      return respond(std::move(rep));
    }
    if (error_rate > 0) {
      std::lock_guard<std::mutex> g{rng_m};
      if (std::uniform_real_distribution<double>(0, 1)(rng) < error_rate)
        return respond(error(503, "injected error"));
    }
    r = snow ? snow_handle(sn, *req) : sl1_handle(sl, *req);
    if (latency_ms > 0)
      delay.later(std::chrono::milliseconds(latency_ms), std::move(respond), std::move(r));
    else
      respond(std::move(r));
  });
  if (!server) {
    std::fprintf(stderr, "stepflow-sim: %s\n", message_of(server.error()).c_str());
    return 2;
  }
  if (!port_file.empty()) {
    std::ofstream(port_file + ".tmp") << (*server)->port() << "\n";
    std::rename((port_file + ".tmp").c_str(), port_file.c_str());
  }
  std::printf("stepflow-sim %s on http://127.0.0.1:%u\n", snow ? "snow" : "sl1", (*server)->port());
  std::fflush(stdout);
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  while (!g_stop)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  (*server)->stop(std::chrono::milliseconds(1000));
  return 0;
}
