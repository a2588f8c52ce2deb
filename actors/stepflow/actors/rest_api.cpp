#include "stepflow/actors/rest_api.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <vector>

#include <fmt/format.h>

#include "stepflow/actors/task_service.hpp"
#include "stepflow/runtime/cache.hpp"
#include "stepflow/runtime/clock.hpp"
#include "stepflow/runtime/log_level.hpp"

namespace stepflow::actors {

namespace {

// -- replies --------------------------------------------------------------------

http_reply json_reply(int status, const json::value& v) {
  http_reply r;
  r.status = status;
  r.body = to_display_json(v);
  return r;
}

http_reply error_reply(int status, std::string message, json::value detail = nullptr) {
  return json_reply(status, json::object{{"error", std::move(message)}, {"detail", std::move(detail)}});
}

int status_of(errc code) {
  switch (code) {
    case errc::not_found: return 404;
    case errc::bad_json:
    case errc::invalid_definition:
    case errc::missing_variables:
    case errc::bad_reference:
    case errc::invalid_argument: return 400;
    case errc::already_exists:
    case errc::conflict: return 409;
    case errc::unavailable: return 503;
    default: return 500;
  }
}

http_reply error_from(const caf::error& err) {
  auto code = code_of(err);
  auto r = error_reply(status_of(code), message_of(err), json::value(to_string(code)));
  if (code == errc::unavailable)
    r.headers.emplace_back("Retry-After", "1");
  return r;
}

/// 202 for an accepted run: {"task_id", "status": "pending", "href"}. Written
/// directly: it answers every accepted event.
http_reply accepted_reply(const std::string& task_id) {
  http_reply r;
  r.status = 202;
  r.body.reserve(96 + 2 * task_id.size());
  r.body += "{\"task_id\":";
  append_json_string(r.body, task_id);
  r.body += ",\"status\":\"pending\",\"href\":";
  append_json_string(r.body, "/api/v1/tasks/" + task_id);
  r.body += '}';
  return r;
}

/// Missing required variables: 400 with the names in "detail".
http_reply missing_reply(const caf::error& err) {
  auto msg = message_of(err);
  json::array names;
  auto colon = msg.rfind(": ");
  if (colon != std::string::npos) {
    std::string_view rest = std::string_view(msg).substr(colon + 2);
    while (!rest.empty()) {
      auto comma = rest.find(", ");
      names.emplace_back(json::string(rest.substr(0, comma)));
      rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 2);
    }
  }
  return error_reply(400, msg, json::object{{"missing_variables", std::move(names)}});
}

http_reply reply_for(const caf::error& err) {
  return code_of(err) == errc::missing_variables ? missing_reply(err) : error_from(err);
}

// -- request parsing ------------------------------------------------------------

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> out;
  while (!path.empty()) {
    if (path.front() == '/') {
      path.remove_prefix(1);
      continue;
    }
    auto slash = path.find('/');
    out.emplace_back(path.substr(0, slash));
    path = slash == std::string_view::npos ? std::string_view{} : path.substr(slash);
  }
  return out;
}

/// The body as a JSON object; "" body gives an empty object when allowed.
caf::expected<json::object> body_object(const http_request_data& req, bool allow_empty) {
  // JSON, or curl's default for -d (x-www-form-urlencoded) with a JSON body,
  // as the PowerFlow manual's curl examples send it.
  auto ct = req.header("Content-Type");
  if (!ct.empty() && ct.find("json") == std::string_view::npos
      && ct.find("x-www-form-urlencoded") == std::string_view::npos)
    return make_error(errc::invalid_argument, "415");
  if (req.body.find_first_not_of(" \t\r\n") == std::string::npos) {
    if (allow_empty)
      return json::object{};
    return make_error(errc::bad_json, "the request body is empty; a JSON object is required");
  }
  auto v = parse_json(req.body, "request body");
  if (!v)
    return v.error();
  if (!v->is_object())
    return make_error(errc::bad_json, "the request body must be a JSON object");
  return std::move(v->get_object());
}

http_reply body_error(const caf::error& err) {
  if (message_of(err) == "415")
    return error_reply(415, "Content-Type must be application/json",
                       json::object{{"field", "Content-Type"}});
  return error_reply(400, message_of(err), json::object{{"field", "body"}});
}

http_reply field_error(std::string_view field, std::string problem) {
  return error_reply(400, fmt::format("{}: {}", field, problem),
                     json::object{{"field", json::string(field)}});
}

bool valid_queue_name(std::string_view q) {
  if (q.empty() || q.size() > 128)
    return false;
  return std::all_of(q.begin(), q.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '_' || c == '-' || c == '.';
  });
}

/// Reads the run options shared by both run endpoints. Returns a reply on error.
std::optional<http_reply> read_run_options(const json::object& body, run_request& req) {
  if (auto it = body.find("params"); it != body.end() && !it->value().is_null()) {
    if (!it->value().is_object())
      return field_error("params", "must be an object of variable names to values");
    req.params = it->value().get_object();
  }
  if (auto it = body.find("configuration"); it != body.end() && !it->value().is_null()) {
    if (!it->value().is_string())
      return field_error("configuration", "must be the name of a configuration object");
    req.configuration = std::string(it->value().get_string());
  }
  if (auto it = body.find("queue"); it != body.end() && !it->value().is_null()) {
    if (!it->value().is_string() || !valid_queue_name(it->value().get_string()))
      return field_error("queue", "must be a queue name (letters, digits, '_', '-', '.')");
    req.queue = std::string(it->value().get_string());
  }
  if (auto it = body.find("priority"); it != body.end() && !it->value().is_null()) {
    if (!it->value().is_int64() || it->value().get_int64() < 0 || it->value().get_int64() > 9)
      return field_error("priority", "must be an integer from 0 (lowest) to 9 (highest)");
    req.priority = static_cast<int>(it->value().get_int64());
  }
  for (auto key : {"log_level", "loglevel"})
    if (auto it = body.find(key); it != body.end() && !it->value().is_null()) {
      std::optional<int> lvl;
      if (it->value().is_int64())
        lvl = static_cast<int>(it->value().get_int64());
      else if (it->value().is_string())
        lvl = parse_log_level(it->value().get_string());
      if (!lvl || *lvl < 0 || *lvl > 50)
        return field_error(key, "must be 10, 20, 30, 40 or debug, info, warning, error");
      req.log_level = *lvl;
    }
  return std::nullopt;
}

/// ?wait=N (seconds, capped at max). Returns -1 when absent.
std::optional<int> read_wait(const http_request_data& req, int max_wait, http_reply& err) {
  auto w = req.query_param("wait");
  if (!w)
    return -1;
  int n = 0;
  auto [p, ec] = std::from_chars(w->data(), w->data() + w->size(), n);
  if (ec != std::errc{} || p != w->data() + w->size() || n < 0) {
    err = field_error("wait", "must be a whole number of seconds");
    return std::nullopt;
  }
  return std::min(n, max_wait);
}

json::value app_summary(const application& a) {
  return json::object{{"name", a.id},
                      {"friendly_name", a.friendly_name},
                      {"description", a.description},
                      {"author", a.author},
                      {"version", a.version},
                      {"configuration", a.configuration},
                      {"steps", a.steps.size()},
                      {"href", fmt::format("/api/v1/applications/{}", a.id)}};
}

std::optional<run_status> parse_status(std::string_view s) {
  for (auto st : {run_status::pending, run_status::running, run_status::success,
                  run_status::failed, run_status::revoked})
    if (to_string(st) == s)
      return st;
  if (s == "failure")
    return run_status::failed;
  return std::nullopt;
}

/// ISO-8601 ("2026-11-22T03:00:00Z", fractional seconds allowed) or Unix
/// seconds to ns.
std::optional<int64_t> parse_time(const std::string& s) {
  if (s.empty())
    return std::nullopt;
  bool digits = std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c) || c == '.'; });
  if (digits)
    return static_cast<int64_t>(std::stod(s) * 1e9);
  std::tm tm{};
  double frac = 0;
  int y, mo, d, h = 0, mi = 0;
  double sec = 0;
  if (std::sscanf(s.c_str(), "%d-%d-%dT%d:%d:%lf", &y, &mo, &d, &h, &mi, &sec) < 3)
    return std::nullopt;
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = static_cast<int>(sec);
  frac = sec - static_cast<int>(sec);
  return (static_cast<int64_t>(timegm(&tm)) * 1'000'000'000) + static_cast<int64_t>(frac * 1e9);
}

} // namespace

rest_api::rest_api(rest_api_context ctx) : ctx_(std::move(ctx)) {
}

void rest_api::handle(std::shared_ptr<const http_request_data> reqp, http_responder respond) {
  const auto& req = *reqp;
  auto parts = split_path(req.path);
  if (parts.size() < 2 || parts[0] != "api" || parts[1] != "v1") {
    respond(error_reply(404, fmt::format("no such endpoint: {}", req.path)));
    return;
  }
  parts.erase(parts.begin(), parts.begin() + 2);
  const auto& m = req.method;
  auto& svc = *ctx_.service;
  auto not_allowed = [&](std::string allow) {
    auto r = error_reply(405, fmt::format("method {} is not allowed here", m),
                         json::object{{"allow", allow}});
    r.headers.emplace_back("Allow", std::move(allow));
    respond(std::move(r));
  };
  auto n = parts.size();
  auto is = [&](std::initializer_list<const char*> pat) {
    if (pat.size() != n)
      return false;
    size_t i = 0;
    for (auto p : pat) {
      if (std::string_view(p) != "*" && parts[i] != p)
        return false;
      ++i;
    }
    return true;
  };

  // -- unauthenticated ----------------------------------------------------------
  if (is({"status"})) {
    if (m != "GET")
      return not_allowed("GET");
    json::array queues;
    for (auto& q : svc.queues())
      queues.push_back(json::object{{"name", q.name}, {"workers", q.workers},
                                    {"queued", q.queued}, {"running", q.running}});
    json::object o{{"status", "ok"}, {"queued_and_running", svc.depth()},
                   {"running", svc.running()}, {"queues", std::move(queues)}};
    if (ctx_.health)
      for (auto& kv : ctx_.health())
        o[kv.key()] = kv.value();
    respond(json_reply(200, o));
    return;
  }
  // -- authentication: one place --------------------------------------------------
  auto user = ctx_.authenticate ? ctx_.authenticate(req) : std::string("anonymous");
  if (user.empty()) {
    auto r = error_reply(401, "authentication required: HTTP Basic credentials of a stepflow user");
    r.headers.emplace_back("WWW-Authenticate", "Basic realm=\"stepflow\", charset=\"UTF-8\"");
    respond(std::move(r));
    return;
  }

  if (is({"openapi.json"})) {
    if (m != "GET")
      return not_allowed("GET");
    http_reply r;
    r.body = openapi_document();
    respond(std::move(r));
    return;
  }
  if (is({"about"})) {
    if (m != "GET")
      return not_allowed("GET");
    respond(json_reply(200, json::object{
      {"name", "stepflow"},
      {"version", ctx_.version},
      {"build", json::object{{"compiler", __VERSION__}, {"cplusplus", __cplusplus},
                             {"date", __DATE__}}},
      {"api", "PowerFlow-compatible /api/v1"},
      {"dependencies", json::object{{"caf", "0.17.6"}, {"boost", "1.81"}, {"lmdb", "0.9.24"},
                                    {"libcurl", "7.88"}, {"openssl", "3.0"}}}}));
    return;
  }

  // -- applications ---------------------------------------------------------------
  auto submit_and_answer = [this, reqp, respond, &svc](run_request rr) {
    http_reply werr;
    auto wait = read_wait(*reqp, 30, werr);
    if (!wait) {
      respond(std::move(werr));
      return;
    }
    int wait_s = *wait;
    svc.submit(std::move(rr), [respond, wait_s, &svc](caf::expected<std::string> id) {
      if (!id) {
        respond(reply_for(id.error()));
        return;
      }
      if (wait_s < 0) {
        respond(accepted_reply(*id));
        return;
      }
      svc.wait(*id, std::chrono::seconds(wait_s),
               [respond, id = *id, &svc](std::optional<run_record> r) {
                 if (!r) {
                   respond(error_reply(404, fmt::format("no task named {}", quote_json(id))));
                   return;
                 }
                 svc.refresh_status(*r);
                 bool ended = r->status == run_status::success || r->status == run_status::failed
                              || r->status == run_status::revoked;
                 respond(json_reply(ended ? 200 : 202, to_json(*r, true)));
               });
    });
  };

  if (is({"applications", "run"})) {
    if (m != "POST")
      return not_allowed("POST");
    auto body = body_object(req, false);
    if (!body)
      return respond(body_error(body.error()));
    run_request rr;
    auto it = body->find("name");
    if (it == body->end() || !it->value().is_string() || it->value().get_string().empty())
      return respond(field_error("name", "required: the name of the application to run"));
    rr.application = std::string(it->value().get_string());
    if (auto e = read_run_options(*body, rr))
      return respond(std::move(*e));
    submit_and_answer(std::move(rr));
    return;
  }
  if (is({"applications", "*", "run"})) {
    if (m != "POST")
      return not_allowed("POST");
    auto body = body_object(req, true);
    if (!body)
      return respond(body_error(body.error()));
    run_request rr;
    rr.application = parts[1];
    if (auto e = read_run_options(*body, rr))
      return respond(std::move(*e));
    submit_and_answer(std::move(rr));
    return;
  }
  if (is({"applications"})) {
    if (m == "GET") {
      json::array out;
      for (auto& a : svc.applications())
        out.push_back(app_summary(*a));
      return respond(json_reply(200, out));
    }
    if (m == "POST") {
      auto body = body_object(req, false);
      if (!body)
        return respond(body_error(body.error()));
      std::string id;
      if (auto it = body->find("name"); it != body->end() && it->value().is_string())
        id = std::string(it->value().get_string());
      if (id.empty())
        if (auto q = req.query_param("name"))
          id = *q;
      if (id.empty())
        return respond(field_error("name", "required: the application id"));
      auto app = parse_application(*body, fmt::format("application {}", quote_json(id)), id);
      if (!app)
        return respond(error_reply(400, message_of(app.error()), json::object{{"field", "body"}}));
      for (size_t i = 0; i < app->steps.size(); ++i)
        if (!svc.registry().find(app->steps[i].file))
          return respond(field_error(fmt::format("steps[{}].file", i),
                                     fmt::format("unknown step type {}",
                                                 quote_json(app->steps[i].file))));
      bool existed = svc.find_application(app->id) != nullptr;
      auto shown = to_json(*app);
      if (auto err = svc.put_application(std::move(*app)))
        return respond(error_from(err));
      return respond(json_reply(existed ? 200 : 201, shown));
    }
    return not_allowed("GET, POST");
  }
  if (is({"applications", "*"})) {
    if (m == "GET") {
      auto a = svc.find_application(parts[1]);
      if (!a)
        return respond(error_reply(404, fmt::format("no application named {}", quote_json(parts[1]))));
      return respond(json_reply(200, to_json(*a)));
    }
    if (m == "DELETE") {
      auto r = svc.erase_application(parts[1]);
      if (!r)
        return respond(error_from(r.error()));
      if (!*r)
        return respond(error_reply(404, fmt::format("no application named {}", quote_json(parts[1]))));
      return respond(json_reply(200, json::object{{"deleted", parts[1]}}));
    }
    return not_allowed("GET, DELETE");
  }
  if (is({"applications", "*", "logs"})) {
    if (m != "GET")
      return not_allowed("GET");
    if (!svc.find_application(parts[1]))
      return respond(error_reply(404, fmt::format("no application named {}", quote_json(parts[1]))));
    size_t limit = 10;
    if (auto l = req.query_param("limit"))
      limit = std::clamp<size_t>(std::strtoul(l->c_str(), nullptr, 10), 1, 100);
    auto runs = svc.runs().list(2000);
    if (!runs)
      return respond(error_from(runs.error()));
    json::array out;
    for (auto& r : *runs) {
      if (r.application != parts[1])
        continue;
      json::array steps;
      for (size_t i = 0; i < r.steps.size(); ++i) {
        auto lines = svc.runs().logs(r.task_id, i);
        json::array ls;
        if (lines)
          for (auto& l : *lines)
            ls.push_back(to_json(l));
        steps.push_back(json::object{{"name", r.steps[i].name}, {"logs", std::move(ls)}});
      }
      out.push_back(json::object{{"task_id", r.task_id}, {"status", to_string(r.status)},
                                 {"created", format_time(r.created_ns)}, {"steps", std::move(steps)}});
      if (out.size() >= limit)
        break;
    }
    return respond(json_reply(200, out));
  }

  // -- configurations -------------------------------------------------------------
  auto show = [this](const configuration& c) {
    return ctx_.show_config ? ctx_.show_config(c) : to_json(c);
  };
  if (is({"configurations"})) {
    if (m == "GET") {
      json::array out;
      for (auto& c : svc.configurations())
        out.push_back(show(*c));
      return respond(json_reply(200, out));
    }
    if (m == "POST") {
      auto body = body_object(req, false);
      if (!body)
        return respond(body_error(body.error()));
      std::string name;
      if (auto it = body->find("name"); it != body->end() && it->value().is_string())
        name = std::string(it->value().get_string());
      if (name.empty())
        return respond(field_error("name", "required: the configuration name"));
      auto cfg = parse_configuration(*body, fmt::format("configuration {}", quote_json(name)), name);
      if (!cfg)
        return respond(error_reply(400, message_of(cfg.error()), json::object{{"field", "body"}}));
      // A configuration fetched from the API and posted back carries masked
      // secrets: keep the stored (encrypted) value for those entries.
      {
        auto old = svc.find_configuration(cfg->name);
        auto& raw_data = cfg->raw["configuration_data"];
        for (size_t i = 0; i < cfg->data.size(); ++i) {
          auto& e = cfg->data[i];
          if (!e.encrypted || !e.value.is_string() || e.value.get_string() != "********")
            continue;
          const config_entry* prev = old ? old->find(e.name) : nullptr;
          if (!prev || !prev->encrypted)
            return respond(field_error(fmt::format("configuration_data[{}].value", i),
                                       "is the mask \"********\"; send the real value (there "
                                       "is no stored value to keep)"));
          e.value = prev->value;
          if (raw_data.is_array() && i < raw_data.get_array().size()
              && raw_data.get_array()[i].is_object())
            raw_data.get_array()[i].get_object()["value"] = prev->value;
        }
      }
      if (ctx_.encrypt_config) {
        auto enc = ctx_.encrypt_config(std::move(*cfg));
        if (!enc)
          return respond(error_from(enc.error()));
        cfg = std::move(*enc);
      }
      bool existed = svc.find_configuration(cfg->name) != nullptr;
      auto shown = show(*cfg);
      if (auto err = svc.put_configuration(std::move(*cfg)))
        return respond(error_from(err));
      return respond(json_reply(existed ? 200 : 201, shown));
    }
    return not_allowed("GET, POST");
  }
  if (is({"configurations", "*"})) {
    if (m == "GET") {
      auto c = svc.find_configuration(parts[1]);
      if (!c)
        return respond(error_reply(404, fmt::format("no configuration named {}", quote_json(parts[1]))));
      return respond(json_reply(200, show(*c)));
    }
    if (m == "DELETE") {
      auto r = svc.erase_configuration(parts[1]);
      if (!r)
        return respond(error_from(r.error()));
      if (!*r)
        return respond(error_reply(404, fmt::format("no configuration named {}", quote_json(parts[1]))));
      return respond(json_reply(200, json::object{{"deleted", parts[1]}}));
    }
    return not_allowed("GET, DELETE");
  }

  // -- steps ----------------------------------------------------------------------
  // Stored step definitions (uploaded code): kept in table::steps; they run
  // once a host for their language exists (Python: the step host of the
  // connectors milestone). Built-in step types cannot be replaced.
  auto stored_step = [&svc](const std::string& name) -> std::optional<json::value> {
    auto raw = svc.store().get(table::steps, name);
    if (!raw || !*raw)
      return std::nullopt;
    auto v = parse_json(**raw, "stored step");
    if (!v)
      return std::nullopt;
    return std::move(*v);
  };
  const auto& registry = svc.registry();
  auto show_stored = [&registry](json::value v) {
    auto& o = v.as_object();
    o["builtin"] = false;
    auto* n = o.if_contains("name");
    bool runnable = n && n->is_string() && registry.find(n->get_string()) != nullptr;
    o["runnable"] = runnable;
    if (!runnable)
      o["note"] = "stored, but it does not run: see the server's log for why";
    return v;
  };
  if (is({"steps"})) {
    if (m == "GET") {
      json::array out;
      for (const auto* t : registry.all()) {
        if (registry.find_fixed(t->info().name) != t)
          continue; // uploaded: listed from the store below
        auto v = to_json(t->info());
        v.as_object()["builtin"] = true;
        v.as_object()["runnable"] = true;
        out.push_back(std::move(v));
      }
      (void) svc.store().scan(table::steps, {}, {}, false, [&](std::string_view, std::string_view v) {
        if (auto d = parse_json(v, "stored step"))
          out.push_back(show_stored(std::move(*d)));
        return true;
      });
      return respond(json_reply(200, out));
    }
    if (m == "POST") {
      auto body = body_object(req, false);
      if (!body)
        return respond(body_error(body.error()));
      auto it = body->find("name");
      if (it == body->end() || !it->value().is_string() || it->value().get_string().empty())
        return respond(field_error("name", "required: the step's name (its class name)"));
      std::string name(it->value().get_string());
      if (name.find_first_of(" /\\") != std::string::npos)
        return respond(field_error("name", "must not contain spaces or slashes (PowerFlow: the "
                                           "file name is the class name)"));
      if (registry.find_fixed(name))
        return respond(error_reply(409, fmt::format("{} is a built-in step type and cannot be "
                                                    "replaced", quote_json(name)),
                                   json::object{{"field", "name"}}));
      auto code = body->find("code");
      if (code == body->end() || !code->value().is_string())
        return respond(field_error("code", "required: the step's source code as a string"));
      // Made runnable first: a definition the step host refuses is not stored.
      if (ctx_.install_step)
        if (auto err = ctx_.install_step(*body)) {
          auto why = message_of(err);
          auto colon = why.find(": ");
          std::string field = colon == std::string::npos ? "code" : why.substr(0, colon);
          if (code_of(err) != errc::invalid_argument)
            return respond(error_from(err));
          return respond(field_error(field, colon == std::string::npos ? why : why.substr(colon + 2)));
        }
      bool existed = stored_step(name).has_value();
      auto text = to_json(json::value(*body));
      if (auto err = svc.store().write({{write_op::put, table::steps, name, text}})) {
        if (ctx_.remove_step && !existed)
          ctx_.remove_step(name);
        return respond(error_from(err));
      }
      return respond(json_reply(existed ? 200 : 201, show_stored(json::value(*body))));
    }
    return not_allowed("GET, POST");
  }
  if (is({"steps", "run"})) {
    if (m != "POST")
      return not_allowed("POST");
    auto body = body_object(req, false);
    if (!body)
      return respond(body_error(body.error()));
    auto it = body->find("name");
    if (it == body->end() || !it->value().is_string())
      return respond(field_error("name", "required: the step type to run"));
    std::string type(it->value().get_string());
    if (!svc.registry().find(type))
      return respond(error_reply(404, fmt::format("no step type named {}", quote_json(type))));
    // An ad-hoc application: optional "input" data feeding the step.
    json::object step{{"name", type}, {"file", type}};
    if (auto pit = body->find("params"); pit != body->end() && !pit->value().is_null()) {
      if (!pit->value().is_object())
        return respond(field_error("params", "must be an object of step parameters"));
      for (auto& kv : pit->value().get_object())
        if (!is_reserved_step_key(kv.key()))
          step[kv.key()] = kv.value();
    }
    json::array steps;
    if (auto iit = body->find("input"); iit != body->end()) {
      steps.push_back(json::object{{"name", "input"}, {"file", "StaticData"},
                                   {"data", iit->value()}, {"output_to", json::array{json::string(type)}}});
      if (type == "input")
        return respond(field_error("name", "a step type named \"input\" cannot take input data"));
    }
    steps.push_back(std::move(step));
    auto app_id = fmt::format("step_run_{}", type);
    auto app = parse_application(json::object{{"name", app_id}, {"steps", std::move(steps)}},
                                 "step run", app_id);
    if (!app)
      return respond(error_reply(400, message_of(app.error()), json::object{{"field", "params"}}));
    run_request rr;
    rr.application = app_id;
    rr.adhoc = std::make_shared<const application>(std::move(*app));
    if (auto e = read_run_options(*body, rr))
      return respond(std::move(*e));
    rr.params.clear(); // "params" are the step's parameters here, not variables
    int wait_s = 30;
    if (auto w = req.query_param("wait")) {
      http_reply werr;
      auto ws = read_wait(req, 30, werr);
      if (!ws)
        return respond(std::move(werr));
      wait_s = *ws;
    }
    svc.submit(std::move(rr), [respond, wait_s, &svc](caf::expected<std::string> id) {
      if (!id)
        return respond(reply_for(id.error()));
      svc.wait(*id, std::chrono::seconds(wait_s),
               [respond, id = *id](std::optional<run_record> r) {
                 if (!r)
                   return respond(error_reply(404, fmt::format("no task named {}", quote_json(id))));
                 bool ended = r->status == run_status::success || r->status == run_status::failed
                              || r->status == run_status::revoked;
                 respond(json_reply(ended ? 200 : 202, to_json(*r, true)));
               });
    });
    return;
  }
  if (is({"steps", "*"})) {
    if (m == "GET") {
      if (auto* t = registry.find_fixed(parts[1])) {
        auto v = to_json(t->info());
        v.as_object()["builtin"] = true;
        v.as_object()["runnable"] = true;
        return respond(json_reply(200, v));
      }
      if (auto d = stored_step(parts[1]))
        return respond(json_reply(200, show_stored(std::move(*d))));
      return respond(error_reply(404, fmt::format("no step type named {}", quote_json(parts[1]))));
    }
    if (m == "DELETE") {
      if (registry.find_fixed(parts[1]))
        return respond(error_reply(409, fmt::format("{} is a built-in step type and cannot be deleted",
                                                    quote_json(parts[1]))));
      if (!stored_step(parts[1]))
        return respond(error_reply(404, fmt::format("no step type named {}", quote_json(parts[1]))));
      if (auto err = svc.store().write({{write_op::erase, table::steps, parts[1], {}}}))
        return respond(error_from(err));
      if (ctx_.remove_step)
        ctx_.remove_step(parts[1]);
      return respond(json_reply(200, json::object{{"deleted", parts[1]}}));
    }
    return not_allowed("GET, DELETE");
  }

  // -- tasks ----------------------------------------------------------------------
  if (is({"tasks"})) {
    if (m == "GET") {
      auto app = req.query_param("app");
      if (!app)
        app = req.query_param("application");
      auto status_s = req.query_param("status");
      auto queue = req.query_param("queue");
      auto configuration = req.query_param("configuration");
      std::optional<run_status> st;
      if (status_s && !status_s->empty() && *status_s != "all") {
        st = parse_status(*status_s);
        if (!st)
          return respond(field_error("status", "must be pending, running, success, failed or revoked"));
      }
      std::optional<int64_t> since, until;
      if (auto s = req.query_param("since")) {
        since = parse_time(*s);
        if (!since)
          return respond(field_error("since", "must be an ISO-8601 time or Unix seconds"));
      }
      if (auto u = req.query_param("until")) {
        until = parse_time(*u);
        if (!until)
          return respond(field_error("until", "must be an ISO-8601 time or Unix seconds"));
      }
      size_t limit = 100;
      if (auto l = req.query_param("limit"))
        limit = std::clamp<size_t>(std::strtoul(l->c_str(), nullptr, 10), 1, 10000);
      std::vector<std::string> ids;
      std::string from = until ? be64(static_cast<uint64_t>(*until)) + std::string(64, '\xff') : "";
      auto& store = svc.store();
      json::array out;
      auto err = store.scan(table::runs_by_time, {}, from, true, [&](std::string_view k, std::string_view) {
        auto created = static_cast<int64_t>(read_be64(k));
        if (since && created < *since)
          return false;
        auto raw = store.get(table::runs, k.substr(8));
        if (!raw || !*raw)
          return true;
        auto rec = parse_stored_run(**raw);
        if (!rec)
          return true;
        if (app && !app->empty() && rec->application != *app)
          return true;
        if (rec->status == run_status::pending && svc.is_running(rec->task_id))
          rec->status = run_status::running; // started; the stored record is rewritten only at the end
        if (st && rec->status != *st)
          return true;
        if (queue && !queue->empty() && rec->queue != *queue)
          return true;
        if (configuration && !configuration->empty() && rec->configuration != *configuration)
          return true;
        out.push_back(to_json(*rec, false));
        return out.size() < limit;
      });
      if (err)
        return respond(error_from(err));
      return respond(json_reply(200, out));
    }
    if (m == "DELETE") {
      auto n2 = svc.revoke_all({}, true);
      return respond(json_reply(200, json::object{{"terminated", n2}}));
    }
    return not_allowed("GET, DELETE");
  }
  if (is({"tasks", "*"})) {
    if (m == "GET") {
      auto rec = svc.runs().load(parts[1]);
      if (!rec)
        return respond(error_from(rec.error()));
      if (!*rec)
        return respond(error_reply(404, fmt::format("no task named {}", quote_json(parts[1]))));
      svc.refresh_status(**rec);
      auto task = to_json(**rec, true);
      json::array kids;
      for (const auto& c : svc.children(parts[1])) {
        auto cr = svc.runs().load(c);
        kids.push_back(json::object{
          {"task_id", c},
          {"status", cr && *cr ? json::value(to_string((*cr)->status)) : json::value(nullptr)},
          {"application", cr && *cr ? json::value((*cr)->application) : json::value(nullptr)},
          {"href", fmt::format("/api/v1/tasks/{}", c)}});
      }
      task.as_object()["children"] = std::move(kids);
      return respond(json_reply(200, task));
    }
    if (m == "DELETE") {
      auto r = svc.revoke(parts[1], true);
      if (!r)
        return respond(error_from(r.error()));
      if (!*r)
        return respond(error_reply(409, fmt::format("task {} already ended", quote_json(parts[1]))));
      return respond(json_reply(200, json::object{{"task_id", parts[1]}, {"terminated", true}}));
    }
    return not_allowed("GET, DELETE");
  }
  if (is({"tasks", "*", "steps", "*", "logs"}) || is({"tasks", "*", "steps", "*", "data"})) {
    if (m != "GET")
      return not_allowed("GET");
    auto rec = svc.runs().load(parts[1]);
    if (!rec)
      return respond(error_from(rec.error()));
    if (!*rec)
      return respond(error_reply(404, fmt::format("no task named {}", quote_json(parts[1]))));
    size_t idx = 0;
    auto [p, ec] = std::from_chars(parts[3].data(), parts[3].data() + parts[3].size(), idx);
    if (ec != std::errc{} || p != parts[3].data() + parts[3].size()) {
      // a step name instead of an index
      idx = (*rec)->steps.size();
      for (size_t i = 0; i < (*rec)->steps.size(); ++i)
        if ((*rec)->steps[i].name == parts[3])
          idx = i;
    }
    if (idx >= (*rec)->steps.size())
      return respond(error_reply(404, fmt::format("task has no step {}", quote_json(parts[3]))));
    if (parts[4] == "data") {
      auto& d = (*rec)->steps[idx].data;
      return respond(json_reply(200, d ? *d : json::value(nullptr)));
    }
    auto lines = svc.runs().logs(parts[1], idx);
    if (!lines)
      return respond(error_from(lines.error()));
    json::array out;
    for (auto& l : *lines)
      out.push_back(to_json(l));
    return respond(json_reply(200, out));
  }
  if (is({"tasks", "*", "replay"})) {
    if (m != "POST")
      return not_allowed("POST");
    svc.replay(parts[1], [respond](caf::expected<std::string> id) {
      if (!id)
        return respond(reply_for(id.error()));
      respond(accepted_reply(*id));
    });
    return;
  }
  if (is({"tasks", "*", "revoke"})) {
    if (m != "POST")
      return not_allowed("POST");
    auto body = body_object(req, true);
    if (!body)
      return respond(body_error(body.error()));
    bool terminate = false;
    if (auto it = body->find("terminate"); it != body->end() && !it->value().is_null()) {
      if (!it->value().is_bool())
        return respond(field_error("terminate", "must be true or false"));
      terminate = it->value().get_bool();
    }
    // PowerFlow: /tasks/{appId}/revoke revokes every task of an application.
    if (svc.find_application(parts[1])) {
      auto cnt = svc.revoke_all(parts[1], terminate);
      return respond(json_reply(200, json::object{{"application", parts[1]}, {"revoked", cnt}}));
    }
    auto r = svc.revoke(parts[1], terminate);
    if (!r)
      return respond(error_from(r.error()));
    if (!*r)
      return respond(error_reply(409, fmt::format("task {} already ended", quote_json(parts[1]))));
    return respond(json_reply(200, json::object{{"task_id", parts[1]}, {"revoked", true},
                                                {"terminate", terminate}}));
  }

  // -- cache ------------------------------------------------------------------------
  if (is({"cache", "*"})) {
    if (!ctx_.cache)
      return respond(error_reply(503, "no cache"));
    if (m == "GET") {
      auto v = ctx_.cache->get(parts[1]);
      if (!v)
        return respond(error_from(v.error()));
      if (!*v)
        return respond(error_reply(404, fmt::format("no cache entry named {}", quote_json(parts[1]))));
      return respond(json_reply(200, json::object{{"key", parts[1]}, {"cache_data", **v}}));
    }
    if (m == "DELETE") {
      auto v = ctx_.cache->get(parts[1]);
      if (!v)
        return respond(error_from(v.error()));
      if (!*v)
        return respond(error_reply(404, fmt::format("no cache entry named {}", quote_json(parts[1]))));
      auto key = parts[1];
      ctx_.cache->erase_async(key, [respond, key](caf::error err) {
        if (err)
          return respond(error_from(err));
        respond(json_reply(200, json::object{{"deleted", key}}));
      });
      return;
    }
    return not_allowed("GET, DELETE");
  }
  respond(error_reply(404, fmt::format("no such endpoint: {} {}", m, req.path)));
}

} // namespace stepflow::actors
