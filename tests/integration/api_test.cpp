// The real build/stepflow binary ($STEPFLOW_BINARY) as `stepflow serve`: the
// PowerFlow-compatible REST API over HTTP on 127.0.0.1, one server process
// per test case with its own data directory. Covers authentication,
// applications, runs, queues, revoke, back-pressure, replay, task queries,
// encrypted configuration values (never leaked), the cache, the documents,
// and a restart on the same data directory.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <curl/curl.h>
#include <doctest/doctest.h>
#include <fmt/format.h>

#include "stepflow/runtime/json.hpp"
#include "stepflow/runtime/histogram.hpp"
#include "support/http_test_server.hpp"
#include "support/server_process.hpp"
#include "support/temp_dir.hpp"

using namespace stepflow;
using namespace std::chrono_literals;
using stepflow::test::http_test_server;
using stepflow::test::temp_dir;
using stepflow::test::test_request;
using stepflow::test::test_response;

namespace {

constexpr const char* admin_password = "api-test-Pa55word";
constexpr const char* secret_text = "S3cr3t-Do-Not-Leak";

std::string slurp(const std::string& path) {
  return stepflow::test::read_text(path);
}

json::value parse(std::string_view text) {
  auto v = parse_json(text, "test");
  REQUIRE_MESSAGE(v, message_of(v.error()) << "\n--- text ---\n" << text);
  return std::move(*v);
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string str(const json::value& v) {
  return v.is_string() ? std::string(v.get_string()) : to_json(v);
}

bool contains(std::string_view hay, std::string_view needle) {
  return hay.find(needle) != std::string_view::npos;
}

// -- HTTP client (libcurl easy API) -------------------------------------------------

struct curl_global {
  curl_global() { curl_global_init(CURL_GLOBAL_DEFAULT); }
  ~curl_global() { curl_global_cleanup(); }
};
curl_global g_curl_global;

struct reply {
  long status = 0;
  std::map<std::string, std::string> headers; ///< lower-case names
  std::string body;

  std::string header(const std::string& name) const {
    auto it = headers.find(lower(name));
    return it == headers.end() ? std::string{} : it->second;
  }
  /// The body parsed (once); lives as long as this reply.
  const json::value& json() const {
    if (!parsed)
      parsed = parse(body);
    return *parsed;
  }
  mutable std::optional<json::value> parsed;
};

struct credentials {
  std::string user;
  std::string password;
};

size_t on_body(char* p, size_t size, size_t n, void* ud) {
  static_cast<std::string*>(ud)->append(p, size * n);
  return size * n;
}

size_t on_header(char* p, size_t size, size_t n, void* ud) {
  std::string line(p, size * n);
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    auto name = lower(line.substr(0, colon));
    auto value = line.substr(colon + 1);
    auto b = value.find_first_not_of(" \t");
    auto e = value.find_last_not_of(" \t\r\n");
    value = b == std::string::npos ? std::string{} : value.substr(b, e - b + 1);
    static_cast<reply*>(ud)->headers[name] = value;
  } else if (line.rfind("HTTP/", 0) == 0) {
    static_cast<reply*>(ud)->headers.clear(); // a new response (after 100 Continue)
  }
  return size * n;
}

/// One request. `body` nullopt sends none; `content_type` "" sends the default
/// application/json with a body.
reply http(const std::string& method, const std::string& url, std::optional<std::string> body,
           std::optional<credentials> auth, std::vector<std::string> extra_headers = {}) {
  CURL* h = curl_easy_init();
  REQUIRE(h);
  reply r;
  curl_slist* hdrs = nullptr;
  bool has_ct = false;
  for (auto& x : extra_headers) {
    has_ct = has_ct || lower(x).rfind("content-type:", 0) == 0;
    hdrs = curl_slist_append(hdrs, x.c_str());
  }
  if (body && !has_ct)
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(h, CURLOPT_TIMEOUT, 90L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &r);
  if (body) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size()));
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body->data());
  }
  if (method == "GET" && !body)
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  else if (method != "POST" || !body)
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method.c_str());
  std::string userpwd;
  if (auth) {
    userpwd = auth->user + ":" + auth->password;
    curl_easy_setopt(h, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(h, CURLOPT_USERPWD, userpwd.c_str());
  }
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  auto rc = curl_easy_perform(h);
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(h);
  // A server that answers early (413) and closes may make the upload fail
  // after the response arrived; the response is what counts.
  INFO(method << " " << url << ": " << curl_easy_strerror(rc));
  REQUIRE((rc == CURLE_OK || r.status != 0));
  return r;
}

// -- the server process -----------------------------------------------------------------

/// `stepflow serve` (tests/support/server_process) with its own data
/// directory, the admin password and the bundled SyncPacks, and requests to
/// it. stdout and stderr go to files (appended over restarts). Stopped with
/// SIGTERM in the destructor (SIGKILL after 10 s).
class server_process {
public:
  explicit server_process(std::vector<std::string> extra_args = {})
      : proc_(dir_, test::admin_server(admin_password, std::move(extra_args))) {}
  ~server_process() {
    if (proc_.running())
      (void) terminate();
  }
  server_process(const server_process&) = delete;
  server_process& operator=(const server_process&) = delete;

  std::string data_dir() const { return proc_.data_dir(); }
  std::string output() const { return proc_.out() + proc_.err(); }
  std::string url(const std::string& path) const { return proc_.url() + "/api/v1" + path; }
  std::string dump() const {
    return fmt::format("--- server stdout ---\n{}\n--- server stderr ---\n{}", proc_.out(),
                       proc_.err());
  }

  /// Starts it again after terminate(): the same data directory.
  void start() { proc_.start(); }

  /// SIGTERM, wait (SIGKILL after 10 s). The exit code, or -signal.
  int terminate() { return proc_.terminate(10s); }

  // -- requests (as the admin unless told otherwise) --
  reply get(const std::string& path) const { return http("GET", url(path), std::nullopt, admin()); }
  reply del(const std::string& path) const { return http("DELETE", url(path), std::nullopt, admin()); }
  reply post(const std::string& path, const std::string& body,
             std::vector<std::string> headers = {}) const {
    return http("POST", url(path), body, admin(), std::move(headers));
  }
  reply post(const std::string& path, const json::value& body) const {
    return post(path, to_json(body));
  }
  static credentials admin() { return {"isadmin", admin_password}; }

  /// POST /applications/run; requires 202 and returns the task id.
  std::string run(const json::object& body) const {
    auto r = post("/applications/run", json::value(body));
    INFO("body: " << r.body);
    REQUIRE(r.status == 202);
    auto j = r.json();
    auto id = str(j.at("task_id"));
    CHECK(id.rfind("isapp-", 0) == 0);
    CHECK(j.at("href") == json::value(fmt::format("/api/v1/tasks/{}", id)));
    return id;
  }

  /// GET /tasks/{id} until `pred` holds (bounded); returns the last task.
  json::value task_until(const std::string& id, const std::function<bool(const json::value&)>& pred,
                         std::chrono::seconds limit = 30s) const {
    auto deadline = std::chrono::steady_clock::now() + limit;
    json::value last;
    while (true) {
      auto r = get("/tasks/" + id);
      INFO("body: " << r.body);
      REQUIRE(r.status == 200);
      last = r.json();
      if (pred(last))
        return last;
      if (std::chrono::steady_clock::now() > deadline)
        FAIL("task " << id << " did not reach the expected state: " << r.body);
      std::this_thread::sleep_for(25ms);
    }
  }
  /// GET /tasks/{id} until it ends (success, failed or revoked).
  json::value finished(const std::string& id) const {
    return task_until(id, [](const json::value& t) {
      auto s = str(t.at("status"));
      return s == "success" || s == "failed" || s == "revoked";
    });
  }

  void put_app(const std::string& text) const {
    auto r = post("/applications", text);
    INFO("body: " << r.body);
    REQUIRE((r.status == 201 || r.status == 200));
  }

private:
  temp_dir dir_;
  test::server_process proc_;
};

const json::object& step_json(const json::value& task, std::string_view name) {
  for (const auto& s : task.at("steps").as_array())
    if (s.at("name").as_string() == name)
      return s.as_object();
  FAIL("no step named " << name << " in " << to_json(task));
  throw std::logic_error("unreachable");
}

std::string status_of(const json::value& task) {
  return str(task.at("status"));
}

/// Answers /slow after delay_ms and everything else at once; records requests.
struct recorder {
  std::mutex mtx;
  std::vector<test_request> seen;
  int slow_ms = 5000;

  test_response operator()(const test_request& req) {
    {
      std::lock_guard<std::mutex> g{mtx};
      seen.push_back(req);
    }
    test_response res;
    if (req.target.rfind("/slow", 0) == 0) {
      res.delay_ms = slow_ms;
      res.body = R"({"slow": true})";
    } else {
      res.body = R"({"ok": true, "items": [1, 2, 3]})";
    }
    return res;
  }
  std::vector<test_request> requests() {
    std::lock_guard<std::mutex> g{mtx};
    return seen;
  }
};

struct upstream {
  std::shared_ptr<recorder> rec = std::make_shared<recorder>();
  http_test_server server{[r = rec](const test_request& q) { return (*r)(q); }};
};

const char* const simple_app = R"({
  "name": "api_simple",
  "app_variables": [{"name": "who", "value": "world"}],
  "steps": [
    {"name": "Make", "file": "StaticData", "data": {"greeting": "hello ${who}"},
     "output_to": ["Say"]},
    {"name": "Say", "file": "Log", "message": "said ${Make.greeting}"}
  ]})";

} // namespace

TEST_CASE("only the status endpoint answers without credentials") {
  server_process srv;
  auto st = http("GET", srv.url("/status"), std::nullopt, std::nullopt);
  CHECK(st.status == 200);
  CHECK(st.json().at("status") == json::value("ok"));

  for (auto path : {"/applications", "/tasks", "/configurations", "/about", "/openapi.json",
                    "/cache/x", "/steps"}) {
    CAPTURE(path);
    auto r = http("GET", srv.url(path), std::nullopt, std::nullopt);
    CHECK(r.status == 401);
    CHECK(!r.header("WWW-Authenticate").empty());
    CHECK(contains(lower(r.header("WWW-Authenticate")), "basic"));
  }
  // The store's and the HTTP server's own timings: the 8 requests above are
  // counted (the last one's count may land just after its answer was sent).
  auto timings = http("GET", srv.url("/status"), std::nullopt, std::nullopt).json();
  uint64_t answered = 0;
  for (auto& kv : timings.at("http").at("latency_ms_histogram").as_object())
    answered += kv.value().to_number<uint64_t>();
  CHECK(answered >= 7);
  CHECK(timings.at("store").at("commit_ms_histogram").as_object().size()
        == duration_buckets_ms.size());
  CHECK(timings.at("store").at("commit_ms").at("window") == json::value(1024));
  auto run = http("POST", srv.url("/applications/run"), R"({"name": "api_simple"})", std::nullopt);
  CHECK(run.status == 401);
  CHECK(!run.header("WWW-Authenticate").empty());

  auto wrong = http("GET", srv.url("/applications"), std::nullopt,
                    credentials{"isadmin", "not-the-password"});
  CHECK(wrong.status == 401);
  CHECK(!wrong.header("WWW-Authenticate").empty());
  auto wrong_user = http("GET", srv.url("/applications"), std::nullopt,
                         credentials{"someone", admin_password});
  CHECK(wrong_user.status == 401);
  // The right password after wrong ones still works.
  CHECK(srv.get("/applications").status == 200);
}

TEST_CASE("applications are created, read, listed, overwritten, validated and deleted") {
  server_process srv;
  auto app = R"({
    "name": "api_crud",
    "friendly_name": "CRUD test",
    "x_custom": {"nested": [1, "two", null]},
    "steps": [{"name": "A", "file": "StaticData", "data": 1, "x_step_custom": "kept"}]
  })";
  auto created = srv.post("/applications", std::string(app));
  INFO("body: " << created.body);
  CHECK(created.status == 201);

  auto got = srv.get("/applications/api_crud");
  REQUIRE(got.status == 200);
  auto g = got.json();
  CHECK(g.at("name") == json::value("api_crud"));
  CHECK(g.at("x_custom") == parse(R"({"nested": [1, "two", null]})"));
  CHECK(g.at("steps").as_array().at(0).at("x_step_custom") == json::value("kept"));

  auto list = srv.get("/applications");
  REQUIRE(list.status == 200);
  bool listed = false;
  for (auto& a : list.json().as_array())
    listed = listed || a.at("name") == json::value("api_crud");
  CHECK(listed);

  auto again = srv.post("/applications", std::string(R"({
    "name": "api_crud", "friendly_name": "CRUD v2",
    "steps": [{"name": "A", "file": "StaticData", "data": 2}]})"));
  CHECK(again.status == 200);
  CHECK(srv.get("/applications/api_crud").json().at("friendly_name") == json::value("CRUD v2"));

  SUBCASE("a cycle is a 400 naming the steps") {
    auto r = srv.post("/applications", std::string(R"({"name": "api_cycle", "steps": [
      {"name": "A", "file": "StaticData", "output_to": ["B"]},
      {"name": "B", "file": "StaticData", "output_to": ["A"]}]})"));
    INFO("body: " << r.body);
    CHECK(r.status == 400);
    auto e = r.json();
    CHECK(contains(str(e.at("error")), "cycle"));
    CHECK(contains(str(e.at("error")), "steps"));
    CHECK(srv.get("/applications/api_cycle").status == 404);
  }
  SUBCASE("an unknown step type is a 400 naming steps[i].file") {
    auto r = srv.post("/applications", std::string(R"({"name": "api_unknown", "steps": [
      {"name": "A", "file": "StaticData"}, {"name": "B", "file": "NoSuchStepType"}]})"));
    INFO("body: " << r.body);
    CHECK(r.status == 400);
    auto e = r.json();
    CHECK(e.at("detail").at("field") == json::value("steps[1].file"));
    CHECK(contains(str(e.at("error")), "NoSuchStepType"));
  }
  SUBCASE("no name is a 400 naming name") {
    auto r = srv.post("/applications", std::string(R"({"steps": [{"name": "A", "file": "StaticData"}]})"));
    INFO("body: " << r.body);
    CHECK(r.status == 400);
    CHECK(r.json().at("detail").at("field") == json::value("name"));
  }
  SUBCASE("an unknown application is 404") {
    CHECK(srv.get("/applications/no_such_app").status == 404);
    CHECK(srv.del("/applications/no_such_app").status == 404);
  }
  SUBCASE("delete, then 404") {
    auto d = srv.del("/applications/api_crud");
    CHECK(d.status == 200);
    CHECK(srv.get("/applications/api_crud").status == 404);
    CHECK(srv.del("/applications/api_crud").status == 404);
    bool still = false;
    auto remaining = srv.get("/applications");
    for (auto& a : remaining.json().as_array())
      still = still || a.at("name") == json::value("api_crud");
    CHECK(!still);
  }
  SUBCASE("PUT on the collection is 405 with Allow") {
    auto r = http("PUT", srv.url("/applications"), std::string(app), server_process::admin());
    CHECK(r.status == 405);
    auto allow = r.header("Allow");
    CHECK(contains(allow, "GET"));
    CHECK(contains(allow, "POST"));
  }
}

TEST_CASE("runs are accepted with 202, run, and report every step") {
  server_process srv;
  srv.put_app(simple_app);
  auto id = srv.run(json::object{{"name", "api_simple"}, {"params", json::object{{"who", "api"}}}});
  auto task = srv.finished(id);
  INFO("task: " << to_json(task));
  CHECK(status_of(task) == "success");
  CHECK(task.at("task_id") == json::value(id));
  CHECK(task.at("application") == json::value("api_simple"));
  CHECK(task.at("params") == parse(R"({"who": "api"})"));
  REQUIRE(task.at("steps").as_array().size() == 2);
  for (auto& s : task.at("steps").as_array()) {
    CAPTURE(to_json(s));
    CHECK(s.at("status") == json::value("success"));
  }
  CHECK(step_json(task, "Make").at("data") == parse(R"({"greeting": "hello api"})"));
  CHECK(step_json(task, "Say").at("data") == parse(R"({"greeting": "hello api"})"));

  SUBCASE("POST /applications/{name}/run works too") {
    auto r = srv.post("/applications/api_simple/run", std::string(R"({"params": {"who": "path"}})"));
    INFO("body: " << r.body);
    REQUIRE(r.status == 202);
    auto t = srv.finished(str(r.json().at("task_id")));
    CHECK(status_of(t) == "success");
    CHECK(step_json(t, "Make").at("data") == parse(R"({"greeting": "hello path"})"));
    // An empty body is allowed on this form.
    auto empty = srv.post("/applications/api_simple/run", std::string{});
    INFO("body: " << empty.body);
    CHECK(empty.status == 202);
  }
  SUBCASE("?wait=10 answers 200 with the finished task") {
    auto r = srv.post("/applications/run?wait=10", std::string(R"({"name": "api_simple"})"));
    INFO("body: " << r.body);
    REQUIRE(r.status == 200);
    auto t = r.json();
    CHECK(status_of(t) == "success");
    CHECK(step_json(t, "Make").at("data") == parse(R"({"greeting": "hello world"})"));
  }
  SUBCASE("missing required variables are a 400 listing each") {
    srv.put_app(R"({"name": "api_needs", "app_variables": [
      {"name": "region", "required": true},
      {"name": "api_token", "required": true, "value": ""},
      {"name": "optional_one"},
      {"name": "given", "required": true, "value": "x"}],
      "steps": [{"name": "S", "file": "StaticData", "data": "${given}"}]})");
    auto r = srv.post("/applications/run", std::string(R"({"name": "api_needs"})"));
    INFO("body: " << r.body);
    REQUIRE(r.status == 400);
    auto names = r.json().at("detail").at("missing_variables");
    REQUIRE(names.is_array());
    std::vector<std::string> got;
    for (auto& n : names.as_array())
      got.push_back(str(n));
    std::sort(got.begin(), got.end());
    CHECK(got == std::vector<std::string>{"api_token", "region"});
    // Supplying them runs the app.
    auto ok = srv.post("/applications/run",
                       std::string(R"({"name": "api_needs", "params": {"region": "eu", "api_token": "t"}})"));
    CHECK(ok.status == 202);
  }
  SUBCASE("bad run requests") {
    auto unknown = srv.post("/applications/run", std::string(R"({"name": "no_such_app"})"));
    CHECK(unknown.status == 404);

    auto wrong_type = srv.post("/applications/run", std::string(R"({"name": 42})"));
    INFO("body: " << wrong_type.body);
    CHECK(wrong_type.status == 400);
    CHECK(wrong_type.json().at("detail").at("field") == json::value("name"));

    auto malformed = srv.post("/applications/run", std::string(R"({"name": "api_simple",)"));
    CHECK(malformed.status == 400);
    CHECK(malformed.json().at("error").is_string());

    auto not_object = srv.post("/applications/run", std::string(R"(["api_simple"])"));
    CHECK(not_object.status == 400);

    auto text = srv.post("/applications/run", std::string(R"({"name": "api_simple"})"),
                         {"Content-Type: text/plain"});
    CHECK(text.status == 415);

    auto prio = srv.post("/applications/run", std::string(R"({"name": "api_simple", "priority": 42})"));
    INFO("body: " << prio.body);
    CHECK(prio.status == 400);
    CHECK(prio.json().at("detail").at("field") == json::value("priority"));
    CHECK(contains(str(prio.json().at("error")), "priority"));

    auto bad_wait = srv.post("/applications/run?wait=soon", std::string(R"({"name": "api_simple"})"));
    CHECK(bad_wait.status == 400);
  }
  SUBCASE("a body above the server limit is 413") {
    std::string big = R"({"name": "api_simple", "pad": ")";
    big.append(20u << 20, 'a');
    big += "\"}";
    auto r = srv.post("/applications/run", big);
    CHECK(r.status == 413);
    // The server is still fine afterwards.
    CHECK(srv.get("/applications/api_simple").status == 200);
  }
}

TEST_CASE("a run on a queue without workers stays pending until revoked") {
  server_process srv({"--queue-workers", "parked=0"});
  srv.put_app(simple_app);
  auto id = srv.run(json::object{{"name", "api_simple"}, {"queue", "parked"}});
  // Give a dispatcher every chance to (wrongly) start it.
  for (int i = 0; i < 10; ++i) {
    auto t = srv.get("/tasks/" + id).json();
    REQUIRE(status_of(t) == "pending");
    std::this_thread::sleep_for(30ms);
  }
  auto t = srv.get("/tasks/" + id).json();
  CHECK(t.at("queue") == json::value("parked"));

  auto status = srv.get("/status").json();
  bool saw_queue = false;
  for (auto& q : status.at("queues").as_array())
    if (q.at("name") == json::value("parked")) {
      saw_queue = true;
      CHECK(q.at("workers") == json::value(0));
    }
  CHECK(saw_queue);

  auto rv = srv.post("/tasks/" + id + "/revoke", std::string("{}"));
  INFO("body: " << rv.body);
  CHECK(rv.status == 200);
  auto ended = srv.finished(id);
  CHECK(status_of(ended) == "revoked");
  for (auto& s : ended.at("steps").as_array()) {
    CAPTURE(to_json(s));
    CHECK(s.at("status") != json::value("success"));
    CHECK(s.at("started_ns") == json::value(0));
  }
  CHECK(ended.at("started_ns") == json::value(0));

  auto again = srv.post("/tasks/" + id + "/revoke", std::string("{}"));
  CHECK(again.status == 409);
  CHECK(srv.post("/tasks/isapp-00000000-0000-4000-8000-000000000000/revoke", std::string("{}")).status
        == 404);
}

TEST_CASE("runs waiting for a queue's only worker start by priority, each with its own params") {
  upstream up;
  up.rec->slow_ms = 30000; // holds the worker until revoked below
  server_process srv({"--queue-workers", "one=1"});
  srv.put_app(simple_app);
  srv.put_app(fmt::format(R"({{
    "name": "api_hold",
    "steps": [{{"name": "Hold", "file": "QueryREST", "prefix_url": "{}", "relative_url": "slow"}}]}})",
                          up.server.url()));
  auto hold = srv.run(json::object{{"name", "api_hold"}, {"queue", "one"}});
  srv.task_until(hold, [](const json::value& t) { return status_of(t) == "running"; });
  // Queued behind it: they keep only their queue entry until the worker is free.
  auto a = srv.run(json::object{{"name", "api_simple"}, {"queue", "one"},
                                {"params", json::object{{"who", "a"}}}});
  auto b = srv.run(json::object{{"name", "api_simple"}, {"queue", "one"}, {"priority", 5},
                                {"params", json::object{{"who", "b"}}}});
  auto c = srv.run(json::object{{"name", "api_simple"}, {"queue", "one"},
                                {"params", json::object{{"who", "c"}}}});
  CHECK(status_of(srv.get("/tasks/" + a).json()) == "pending");
  REQUIRE(srv.post("/tasks/" + hold + "/revoke", std::string(R"({"terminate": true})")).status == 200);
  std::map<std::string, int64_t> started;
  for (auto [id, who] : {std::pair{a, "a"}, std::pair{b, "b"}, std::pair{c, "c"}}) {
    auto t = srv.finished(id);
    INFO("task: " << to_json(t));
    CHECK(status_of(t) == "success");
    CHECK(step_json(t, "Make").at("data") == json::value(json::object{{"greeting", fmt::format("hello {}", who)}}));
    CHECK(t.at("attempt") == json::value(1));
    started[who] = t.at("started_ns").as_int64();
  }
  CHECK(status_of(srv.finished(hold)) == "revoked");
  CHECK(started["b"] < started["a"]); // priority 5 first
  CHECK(started["a"] < started["c"]); // then arrival order
}

TEST_CASE("revoking a running task with terminate stops it without waiting for the step") {
  upstream up;
  up.rec->slow_ms = 5000;
  server_process srv;
  srv.put_app(fmt::format(R"({{
    "name": "api_slow",
    "steps": [
      {{"name": "Slow", "file": "QueryREST", "prefix_url": "{}", "relative_url": "slow",
        "output_to": ["After"]}},
      {{"name": "After", "file": "StaticData", "data": 1}}
    ]}})",
                          up.server.url()));
  auto id = srv.run(json::object{{"name", "api_slow"}});
  srv.task_until(id, [](const json::value& t) { return status_of(t) == "running"; });
  // The step has sent its request (the run is in the slow step).
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (up.rec->requests().empty() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  REQUIRE(up.rec->requests().size() == 1);

  auto rv = srv.post("/tasks/" + id + "/revoke", std::string(R"({"terminate": true})"));
  INFO("body: " << rv.body);
  CHECK(rv.status == 200);
  auto ended = srv.finished(id);
  INFO("task: " << to_json(ended));
  CHECK(status_of(ended) == "revoked");
  // Terminated: the slow step did not get its answer, the next never ran.
  CHECK(step_json(ended, "Slow").at("status") != json::value("success"));
  CHECK(step_json(ended, "Slow").at("data") != parse(R"({"slow": true})"));
  CHECK(step_json(ended, "After").at("status") != json::value("success"));
  CHECK(srv.post("/tasks/" + id + "/revoke", std::string("{}")).status == 409);
}

TEST_CASE("a full queue refuses runs with 503 and Retry-After") {
  server_process srv({"--queue-workers", "default=0", "--max-queue-depth", "3"});
  srv.put_app(simple_app);
  for (int i = 0; i < 3; ++i)
    srv.run(json::object{{"name", "api_simple"}});
  auto r = srv.post("/applications/run", std::string(R"({"name": "api_simple"})"));
  INFO("body: " << r.body);
  CHECK(r.status == 503);
  CHECK(!r.header("Retry-After").empty());
  CHECK(r.json().at("error").is_string());
}

TEST_CASE("replay runs a task again with the same params, configuration and queue") {
  server_process srv;
  CHECK(srv.post("/configurations", std::string(R"({"name": "api_replay_cfg",
    "configuration_data": [{"name": "suffix", "value": "!"}]})")).status == 201);
  srv.put_app(R"({"name": "api_replay",
    "app_variables": [{"name": "who", "value": "nobody"}],
    "steps": [{"name": "S", "file": "StaticData", "data": "${who}${config.suffix}"}]})");
  auto id = srv.run(json::object{{"name", "api_replay"},
                                 {"params", json::object{{"who", "again"}}},
                                 {"configuration", "api_replay_cfg"},
                                 {"queue", "replayq"}});
  auto first = srv.finished(id);
  INFO("first: " << to_json(first));
  REQUIRE(status_of(first) == "success");
  CHECK(step_json(first, "S").at("data") == json::value("again!"));

  auto r = srv.post("/tasks/" + id + "/replay", std::string{});
  INFO("body: " << r.body);
  REQUIRE(r.status == 202);
  auto new_id = str(r.json().at("task_id"));
  CHECK(new_id != id);
  CHECK(new_id.rfind("isapp-", 0) == 0);
  auto second = srv.finished(new_id);
  INFO("second: " << to_json(second));
  CHECK(status_of(second) == "success");
  CHECK(second.at("application") == json::value("api_replay"));
  CHECK(second.at("params") == first.at("params"));
  CHECK(second.at("configuration") == json::value("api_replay_cfg"));
  CHECK(second.at("queue") == json::value("replayq"));
  CHECK(second.at("replay_of") == json::value(json::string(id)));
  CHECK(first.at("replay_of").is_null());
  CHECK(step_json(second, "S").at("data") == json::value("again!"));

  CHECK(srv.post("/tasks/isapp-00000000-0000-4000-8000-000000000000/replay", std::string{}).status
        == 404);
}

TEST_CASE("tasks are filtered by application and status and expose step logs and data") {
  upstream up;
  server_process srv;
  srv.put_app(simple_app);
  srv.put_app(fmt::format(R"({{"name": "api_failing", "steps": [
    {{"name": "Missing", "file": "QueryREST", "prefix_url": "{}", "relative_url": "nothing",
      "expected_status": 201}}]}})",
                          up.server.url()));
  auto ok_id = srv.run(json::object{{"name", "api_simple"}, {"params", json::object{{"who", "logs"}}}});
  auto bad_id = srv.run(json::object{{"name", "api_failing"}});
  CHECK(status_of(srv.finished(ok_id)) == "success");
  CHECK(status_of(srv.finished(bad_id)) == "failed");

  auto ids_of = [&](const std::string& query) {
    auto r = srv.get("/tasks" + query);
    INFO("body: " << r.body);
    REQUIRE(r.status == 200);
    std::vector<std::string> ids;
    for (auto& t : r.json().as_array())
      ids.push_back(str(t.at("task_id")));
    return ids;
  };
  auto has = [](const std::vector<std::string>& v, const std::string& id) {
    return std::find(v.begin(), v.end(), id) != v.end();
  };
  auto simple_ok = ids_of("?app=api_simple&status=success");
  CHECK(has(simple_ok, ok_id));
  CHECK(!has(simple_ok, bad_id));
  auto simple_failed = ids_of("?app=api_simple&status=failed");
  CHECK(simple_failed.empty());
  auto failing = ids_of("?app=api_failing&status=failed");
  CHECK(failing == std::vector<std::string>{bad_id});
  auto all = ids_of("");
  CHECK(has(all, ok_id));
  CHECK(has(all, bad_id));
  auto successes = srv.get("/tasks?status=success");
  for (auto& t : successes.json().as_array())
    CHECK(t.at("status") == json::value("success"));
  CHECK(srv.get("/tasks?status=bogus").status == 400);

  auto logs = srv.get("/tasks/" + ok_id + "/steps/1/logs");
  INFO("logs: " << logs.body);
  REQUIRE(logs.status == 200);
  bool saw = false;
  for (auto& l : logs.json().as_array())
    saw = saw || contains(str(l.at("message")), "said hello logs");
  CHECK(saw);
  auto logs0 = srv.get("/tasks/" + ok_id + "/steps/0/logs");
  CHECK(logs0.status == 200);
  CHECK(logs0.json().is_array());

  auto data = srv.get("/tasks/" + ok_id + "/steps/0/data");
  REQUIRE(data.status == 200);
  CHECK(data.json() == parse(R"({"greeting": "hello logs"})"));
  auto by_name = srv.get("/tasks/" + ok_id + "/steps/Make/data");
  CHECK(by_name.status == 200);
  CHECK(srv.get("/tasks/" + ok_id + "/steps/7/data").status == 404);
  CHECK(srv.get("/tasks/isapp-00000000-0000-4000-8000-000000000000").status == 404);

  auto app_logs = srv.get("/applications/api_simple/logs");
  REQUIRE(app_logs.status == 200);
  CHECK(contains(app_logs.body, ok_id));
}

TEST_CASE("an encrypted configuration value is used by steps and shown nowhere") {
  upstream up;
  {
    server_process srv;
    auto cfg = srv.post("/configurations", std::string(fmt::format(R"({{"name": "api_secret_cfg",
      "configuration_data": [
        {{"name": "pw", "value": "{}", "encrypted": true}},
        {{"name": "user", "value": "svc-user"}},
        {{"name": "base", "value": "{}"}}]}})",
                                                                    secret_text, up.server.url())));
    INFO("body: " << cfg.body);
    REQUIRE(cfg.status == 201);
    CHECK(!contains(cfg.body, secret_text));
    auto shown = srv.get("/configurations/api_secret_cfg");
    REQUIRE(shown.status == 200);
    bool masked = false;
    for (auto& e : shown.json().at("configuration_data").as_array())
      if (e.at("name") == json::value("pw"))
        masked = e.at("value") == json::value("********");
    CHECK(masked);

    srv.put_app(R"({"name": "api_secret_app", "configuration": "api_secret_cfg", "steps": [
      {"name": "Call", "file": "QueryREST", "prefix_url": "${config.base}", "relative_url": "secured",
       "user": "${config.user}", "password": "${config.pw}", "output_to": ["Note"]},
      {"name": "Note", "file": "Log", "message": "called with user ${config.user}"}]})");
    auto id = srv.run(json::object{{"name", "api_secret_app"}, {"log_level", "debug"}});
    auto task = srv.finished(id);
    INFO("task: " << to_json(task));
    CHECK(status_of(task) == "success");

    // Decryption works: the upstream got svc-user:S3cr3t-Do-Not-Leak.
    auto reqs = up.rec->requests();
    REQUIRE(reqs.size() == 1);
    CHECK(reqs[0].target == "/secured");
    CHECK(reqs[0].header("Authorization") == "Basic c3ZjLXVzZXI6UzNjcjN0LURvLU5vdC1MZWFr");

    // Not in any API answer.
    std::vector<std::string> paths{"/configurations/api_secret_cfg",
                                   "/configurations",
                                   "/tasks/" + id,
                                   "/tasks",
                                   "/tasks?app=api_secret_app",
                                   "/tasks/" + id + "/steps/0/logs",
                                   "/tasks/" + id + "/steps/1/logs",
                                   "/tasks/" + id + "/steps/0/data",
                                   "/tasks/" + id + "/steps/1/data",
                                   "/applications/api_secret_app",
                                   "/applications/api_secret_app/logs",
                                   "/applications",
                                   "/status"};
    for (auto& p : paths) {
      CAPTURE(p);
      auto r = srv.get(p);
      CHECK(r.status == 200);
      CHECK(!contains(r.body, secret_text));
    }
    // A replay and a ?wait= answer neither.
    auto waited = srv.post("/applications/run?wait=10", std::string(R"({"name": "api_secret_app"})"));
    CHECK(waited.status == 200);
    CHECK(!contains(waited.body, secret_text));
    auto replay = srv.post("/tasks/" + id + "/replay", std::string{});
    CHECK(replay.status == 202);
    CHECK(!contains(replay.body, secret_text));
    CHECK(status_of(srv.finished(str(replay.json().at("task_id")))) == "success");
    // Overwriting the configuration answers masked too.
    auto over = srv.post("/configurations", std::string(fmt::format(R"({{"name": "api_secret_cfg",
      "configuration_data": [
        {{"name": "pw", "value": "{}", "encrypted": true}},
        {{"name": "user", "value": "svc-user"}},
        {{"name": "base", "value": "{}"}}]}})",
                                                                     secret_text, up.server.url())));
    CHECK(over.status == 200);
    CHECK(!contains(over.body, secret_text));

    CHECK(srv.terminate() == 0);
    // Not in the store's bytes nor in anything the server printed.
    auto dir = srv.data_dir();
    for (auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
      if (!entry.is_regular_file())
        continue;
      CAPTURE(entry.path().string());
      auto bytes = slurp(entry.path().string());
      CHECK(!contains(bytes, secret_text));
    }
    REQUIRE(std::filesystem::exists(dir + "/data.mdb"));
    // The scan sees stored content: the clear-text entry next to the secret is there.
    CHECK(contains(slurp(dir + "/data.mdb"), "svc-user"));
    auto output = srv.output();
    INFO("output: " << output);
    CHECK(contains(output, "serving on"));
    CHECK(!contains(output, secret_text));
  }
}

TEST_CASE("cache entries saved by a run are read and deleted through the API") {
  server_process srv;
  srv.put_app(R"({"name": "api_cache", "steps": [
    {"name": "Save", "file": "CacheSave", "key": "api-test-key", "value": {"a": 1, "b": ["x"]}}]})");
  auto id = srv.run(json::object{{"name", "api_cache"}});
  REQUIRE(status_of(srv.finished(id)) == "success");
  auto got = srv.get("/cache/api-test-key");
  INFO("body: " << got.body);
  REQUIRE(got.status == 200);
  CHECK(got.json().at("cache_data") == parse(R"({"a": 1, "b": ["x"]})"));
  CHECK(srv.del("/cache/api-test-key").status == 200);
  CHECK(srv.get("/cache/api-test-key").status == 404);
  CHECK(srv.del("/cache/api-test-key").status == 404);
  CHECK(srv.get("/cache/never-saved").status == 404);
}

TEST_CASE("the OpenAPI document and the about endpoint") {
  server_process srv;
  auto doc = srv.get("/openapi.json");
  REQUIRE(doc.status == 200);
  auto j = doc.json();
  REQUIRE(j.is_object());
  CHECK(j.as_object().contains("openapi"));
  REQUIRE(j.as_object().contains("paths"));
  CHECK(j.at("paths").is_object());
  CHECK(!j.at("paths").as_object().empty());

  auto about = srv.get("/about");
  REQUIRE(about.status == 200);
  auto a = about.json();
  REQUIRE(a.as_object().contains("version"));
  CHECK(a.at("version").is_string());
  CHECK(!a.at("version").as_string().empty());
  CHECK(srv.get("/no/such/endpoint").status == 404);
}

TEST_CASE("a restart on the same data directory keeps tasks and applications") {
  server_process srv;
  srv.put_app(simple_app);
  auto id = srv.run(json::object{{"name", "api_simple"}, {"params", json::object{{"who", "before"}}}});
  auto before = srv.finished(id);
  REQUIRE(status_of(before) == "success");

  CHECK(srv.terminate() == 0);
  auto out = srv.output();
  CHECK(!contains(out, "terminate called"));
  srv.start();

  auto t = srv.get("/tasks/" + id);
  INFO("body: " << t.body);
  REQUIRE(t.status == 200);
  auto after = t.json();
  CHECK(status_of(after) == "success");
  CHECK(step_json(after, "Make").at("data") == parse(R"({"greeting": "hello before"})"));
  bool listed = false;
  auto apps = srv.get("/applications");
  for (auto& a : apps.json().as_array())
    listed = listed || a.at("name") == json::value("api_simple");
  CHECK(listed);
  // And it still runs things.
  auto id2 = srv.run(json::object{{"name", "api_simple"}});
  CHECK(status_of(srv.finished(id2)) == "success");
  CHECK(srv.terminate() == 0);
}

TEST_CASE("nested conditions, a transform and blocking and non-blocking triggers work through the API") {
  server_process srv;
  srv.put_app(R"({"name": "api_child", "app_variables": [{"name": "n", "required": true}],
    "steps": [{"name": "Make", "file": "StaticData", "data": {"n": "${n}"}}]})");
  srv.put_app(R"({"name": "api_flow", "steps": [
    {"name": "A", "file": "StaticData", "data": {"count": 5, "kind": "router"}, "output_to": ["B"]},
    {"name": "B", "file": "StaticData", "data": {"extra": true}, "output_to": ["Merge"]},
    {"name": "Merge", "file": "Transform", "data_from": ["A"],
     "template": "{{ {'count': A.count * 2, 'kind': A.kind|upper, 'extra': B.extra}|tojson }}",
     "output_to": ["Check"]},
    {"name": "Check", "file": "Condition", "conditions": [
      {"step": "Big", "condition": {"type": "and", "conditions": [
        {"type": "numeric", "value": "${Merge.count}", "above": 8},
        {"type": "not", "condition": {"type": "equal", "value": "${Merge.extra}", "equal_to": false}}]}},
      {"step": "Small", "condition": {"type": "or", "conditions": [
        {"type": "numeric", "value": "${Merge.count}", "below": 8},
        {"type": "template", "value": "input.kind == 'SWITCH'"}]}}],
     "output_to": ["Big", "Small"]},
    {"name": "Big", "file": "TriggerApplication", "application": "api_child",
     "params": {"n": "${Merge.count}"}, "output_to": ["Fire"]},
    {"name": "Small", "file": "Log", "message": "small"},
    {"name": "Fire", "file": "TriggerApplication", "application": "api_child",
     "params": {"n": 1}, "blocking": false}]})");
  auto id = srv.run(json::object{{"name", "api_flow"}});
  auto task = srv.finished(id);
  INFO(srv.dump());
  REQUIRE(status_of(task) == "success");
  std::map<std::string, json::value> steps;
  for (auto& s : task.at("steps").as_array())
    steps[std::string(s.at("name").as_string())] = s;
  CHECK(steps["Merge"].at("data") == parse(R"({"count": 10, "kind": "ROUTER", "extra": true})"));
  CHECK(steps["Check"].at("status") == "success");
  CHECK(steps["Big"].at("status") == "success");
  CHECK(steps["Big"].at("data") == parse(R"({"n": 10})"));
  CHECK(steps["Small"].at("status") == "skipped");
  CHECK(steps["Fire"].at("status") == "success");
  auto child = std::string(steps["Fire"].at("data").at("task_id").as_string());
  CHECK(child.rfind("isapp-", 0) == 0);
  // The parent lists both children; each child records its parent.
  auto parent = srv.get("/tasks/" + id);
  REQUIRE(parent.status == 200);
  CHECK(parent.json().at("children").as_array().size() == 2);
  auto c = srv.finished(child);
  CHECK(status_of(c) == "success");
  CHECK(c.at("parent_task") == json::value(json::string(id)));
}

TEST_CASE("uploaded Python step code runs, is replaced, survives a restart and is deleted") {
  server_process srv;
  auto upload = [&](const char* word) {
    return srv.post("/steps", json::value(json::object{
      {"name", "UploadedStep"}, {"syncpack", "demo"},
      {"code", fmt::format("from ipaascore.BaseStep import BaseStep\n\n\n"
                           "class UploadedStep(BaseStep):\n"
                           "    def __init__(self):\n"
                           "        self.friendly_name = \"Uploaded\"\n\n"
                           "    def execute(self):\n"
                           "        self.save_data_for_next_step(\"{}\")\n", word)}}));
  };
  auto up = upload("foo");
  INFO(up.body);
  REQUIRE(up.status == 201);
  CHECK(up.json().at("runnable") == true);
  srv.put_app(R"({"name": "api_uploaded", "steps": [{"name": "U", "file": "UploadedStep"}]})");
  auto run_data = [&] {
    auto t = srv.finished(srv.run(json::object{{"name", "api_uploaded"}}));
    INFO(to_json(t));
    REQUIRE(status_of(t) == "success");
    return step_json(t, "U").at("data");
  };
  CHECK(run_data() == json::value("foo"));
  // The step's processes are visible in GET /status.
  auto status = srv.get("/status");
  INFO(status.body);
  auto status_json = status.json();
  const auto& procs = status_json.at("step_processes").at("UploadedStep");
  CHECK(procs.at("tasks").to_number<int>() == 1);
  CHECK(procs.at("started").to_number<int>() == 1);
  // New code replaces the old for the next runs.
  CHECK(upload("bar").status == 200);
  CHECK(run_data() == json::value("bar"));
  // A restart installs stored steps again.
  CHECK(srv.terminate() == 0);
  srv.start();
  CHECK(run_data() == json::value("bar"));
  auto one = srv.get("/steps/UploadedStep");
  REQUIRE(one.status == 200);
  CHECK(one.json().at("runnable") == true);
  bool listed = false;
  auto all = srv.get("/steps"); // keep the reply alive while iterating its JSON
  for (auto& s : all.json().as_array())
    listed = listed || s.at("name") == "UploadedStep";
  CHECK(listed);
  // Refusals name the field.
  CHECK(srv.post("/steps", std::string(R"({"name": "Log", "code": "x"})")).status == 409);
  CHECK(srv.post("/steps", std::string(R"({"name": "No Spaces", "code": "x"})")).status == 400);
  CHECK(srv.post("/steps", std::string(R"({"name": "NoCode"})")).status == 400);
  auto lang = srv.post("/steps", std::string(R"({"name": "Js", "code": "x", "language": "js"})"));
  CHECK(lang.status == 400);
  CHECK(lang.json().at("detail").at("field") == "language");
  // Deleted: gone from the API, and applications naming it are refused.
  CHECK(srv.del("/steps/UploadedStep").status == 200);
  CHECK(srv.get("/steps/UploadedStep").status == 404);
  auto refused = srv.post("/applications/run", std::string(R"({"name": "api_uploaded"})"));
  CHECK(refused.status == 404); // as for any unknown step type at run time
  CHECK(contains(refused.body, "unknown step type \\\"UploadedStep\\\""));
  CHECK(srv.del("/steps/Log").status == 409);
}
