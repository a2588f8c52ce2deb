// stepflow-sim: ServiceNow and SL1 simulators for tests, benchmarks and for
// trying stepflow without an SL1 or a ServiceNow.
//
//   stepflow-sim snow|sl1 [--port N] [--port-file F] [--latency-ms L]
//                [--error-rate R] [--devices N] [--http-threads T]
//
// ServiceNow (Table API subset): POST/GET/PUT/PATCH/DELETE
//   /api/now/table/{table}[/{sys_id}], list with sysparm_query (a=b^c=d),
//   sysparm_fields, sysparm_limit, sysparm_offset; generated sys_id, INC
//   numbers for incident; sys_user and core_company seeded.
// SL1: GET /api/device[/{id}], /api/organization[/{id}] (result_set lists),
//   GET/PUT/POST/PATCH /api/event/{id} (ext_ticket_ref and its aliases),
//   POST /api/alert, POST /gql (devices / events connections, cursor paging).
// Both: GET /_stats, POST /_reset, GET /_health (the peers' mock contract).
// Loopback only. Latency is added without blocking the I/O threads.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
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
      size_t limit = std::stoul(req.query_param("sysparm_limit").value_or("10000"));
      size_t offset = std::stoul(req.query_param("sysparm_offset").value_or("0"));
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
  std::map<std::string, json::object> events;
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
  void reset() {
    events.clear();
    ticket_writes.clear();
    tickets_written = distinct = dupes = event_gets = alerts = 0;
    first_write_ms = last_write_ms = last_new_event_ms = 0;
    reset_ms = now_ms();
  }
};

json::value list_result(const char* kind, int total, size_t limit, size_t offset,
                        const std::function<std::string(int)>& desc) {
  json::array rs;
  for (int i = static_cast<int>(offset); i < total && rs.size() < limit; ++i)
    rs.push_back(json::object{{"URI", fmt::format("/api/{}/{}", kind, i + 1)}, {"description", desc(i + 1)}});
  return json::object{{"searchspec", json::object{}}, {"total_matched", total},
                      {"total_returned", rs.size()}, {"result_set", std::move(rs)}};
}

http_reply sl1_handle(sl1_state& st, const http_request_data& req) {
  auto parts = split(req.path, '/');
  std::lock_guard<std::mutex> g{st.m};
  size_t limit = std::stoul(req.query_param("limit").value_or("100"));
  size_t offset = std::stoul(req.query_param("offset").value_or("0"));
  if (parts.size() == 1 && parts[0] == "gql" && req.method == "POST") {
    auto body = parse_json(req.body, "body");
    if (!body || !body->is_object() || !body->get_object().contains("query"))
      return error(400, "a GraphQL request needs a query");
    auto q = to_text(body->get_object().at("query"));
    int first = 25, after = 0;
    if (auto p = q.find("first:"); p != std::string::npos)
      first = std::atoi(q.c_str() + p + 6);
    if (auto p = q.find("after:"); p != std::string::npos) {
      auto s = q.find('"', p);
      if (s != std::string::npos)
        after = std::atoi(q.c_str() + s + 1);
    }
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
    ++st.alerts;
    http_reply r = reply(201, json::object{{"status", "created"}});
    r.headers.emplace_back("Location", fmt::format("/api/alert/{}", st.alerts));
    return r;
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
                         "[--error-rate R] [--devices N] [--http-threads T]\n");
    return 2;
  }
  bool snow = std::string(argv[1]) == "snow";
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
      if (snow) { std::lock_guard<std::mutex> g{sn.m}; sn.reset(); }
      else { std::lock_guard<std::mutex> g{sl.m}; sl.reset(); }
      return respond(reply(200, json::object{{"reset", true}}));
    }
    if (req->path == "/_stats") {
      if (snow) {
        std::lock_guard<std::mutex> g{sn.m};
        return respond(reply(200, json::object{{"created", sn.created}, {"gets", sn.gets},
                                               {"updates", sn.updates}}));
      }
      std::lock_guard<std::mutex> g{sl.m};
      json::object o{{"tickets_written", sl.tickets_written}, {"distinct_events", sl.distinct},
                     {"dupes", sl.dupes}, {"event_gets", sl.event_gets}, {"alerts", sl.alerts},
                     {"first_write_ms", sl.first_write_ms}, {"last_write_ms", sl.last_write_ms},
                     {"last_new_event_ms", sl.last_new_event_ms},
                     {"reset_ms", sl.reset_ms}};
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
