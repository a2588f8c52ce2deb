#include "stepflow/runtime/http_client.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "stepflow/runtime/http_server.hpp"
#include "stepflow/runtime/json.hpp"
#include "support/http_test_server.hpp"
#include "support/temp_dir.hpp"

using namespace stepflow;
using stepflow::test::http_test_server;
using stepflow::test::test_request;
using stepflow::test::test_response;

namespace {

constexpr auto safety_bound = std::chrono::seconds(30);

/// Answers with {"method", "target", "body", "headers": {lower-case name: value}}.
test_response echo(const test_request& req) {
  json::object headers;
  for (const auto& [name, value] : req.headers) {
    std::string lower;
    for (char c : name)
      lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    headers[lower] = value;
  }
  test_response res;
  res.body = to_json(json::object{{"method", req.method},
                                  {"target", req.target},
                                  {"body", req.body},
                                  {"headers", std::move(headers)}});
  return res;
}

/// Submits `req` and waits for its single result.
caf::expected<http_response> fetch(http_client& client, http_request req) {
  auto promise = std::make_shared<std::promise<caf::expected<http_response>>>();
  auto future = promise->get_future();
  client.submit(std::move(req), [promise](caf::expected<http_response> r) {
    promise->set_value(std::move(r));
  });
  REQUIRE(future.wait_for(safety_bound) == std::future_status::ready);
  return future.get();
}

json::object echoed(const http_response& res) {
  auto parsed = parse_json(res.body, "echo");
  REQUIRE(parsed);
  REQUIRE(parsed->is_object());
  return parsed->as_object();
}

std::string header_of(const http_response& res, std::string_view name) {
  for (const auto& [n, v] : res.headers) {
    if (n.size() != name.size())
      continue;
    bool same = true;
    for (size_t i = 0; i < n.size(); ++i)
      same = same && std::tolower(static_cast<unsigned char>(n[i]))
                       == std::tolower(static_cast<unsigned char>(name[i]));
    if (same)
      return v;
  }
  return {};
}

} // namespace

TEST_CASE("GET returns status, headers and body") {
  http_test_server server{echo};
  http_client client;
  http_request req;
  req.url = server.url() + "/api/things?limit=5";
  req.headers = {{"X-Trace", "abc"}};
  auto res = fetch(client, req);
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(header_of(*res, "content-type") == "application/json");
  auto e = echoed(*res);
  CHECK(e["method"] == "GET");
  CHECK(e["target"] == "/api/things?limit=5");
  CHECK(e["body"] == "");
  CHECK(e["headers"].as_object()["x-trace"] == "abc");
}

TEST_CASE("POST sends the body and headers as given") {
  http_test_server server{echo};
  http_client client;
  http_request req;
  req.method = "POST";
  req.url = server.url() + "/api/things";
  req.headers = {{"Content-Type", "application/json"}, {"X-One", "1"}};
  req.body = R"({"name":"x"})";
  auto res = fetch(client, req);
  REQUIRE(res);
  CHECK(res->status == 200);
  auto e = echoed(*res);
  CHECK(e["method"] == "POST");
  CHECK(e["body"] == R"({"name":"x"})");
  auto& h = e["headers"].as_object();
  CHECK(h["content-type"] == "application/json");
  CHECK(h["x-one"] == "1");
  CHECK(h.find("expect") == h.end());
}

TEST_CASE("other methods and a body without a content type") {
  http_test_server server{echo};
  http_client client;
  for (std::string method : {"PUT", "PATCH", "DELETE"}) {
    http_request req;
    req.method = method;
    req.url = server.url() + "/x";
    req.body = "plain";
    auto res = fetch(client, req);
    REQUIRE(res);
    auto e = echoed(*res);
    CHECK(e["method"] == json::value(method));
    CHECK(e["body"] == "plain");
    // curl's default form content type is not added
    CHECK(e["headers"].as_object().find("content-type") == e["headers"].as_object().end());
  }
  http_request req;
  req.method = "delete";
  req.url = server.url() + "/y";
  auto res = fetch(client, req);
  REQUIRE(res);
  CHECK(echoed(*res)["method"] == "DELETE");
}

TEST_CASE("basic auth arrives as an Authorization header") {
  http_test_server server{echo};
  http_client client;
  http_request req;
  req.url = server.url() + "/secure";
  req.user = "alice";
  req.password = "s3cret";
  auto res = fetch(client, req);
  REQUIRE(res);
  CHECK(echoed(*res)["headers"].as_object()["authorization"] == "Basic YWxpY2U6czNjcmV0");
}

TEST_CASE("bearer token arrives as an Authorization header") {
  http_test_server server{echo};
  http_client client;
  http_request req;
  req.url = server.url() + "/secure";
  req.bearer_token = "tok.en";
  auto res = fetch(client, req);
  REQUIRE(res);
  CHECK(echoed(*res)["headers"].as_object()["authorization"] == "Bearer tok.en");
}

TEST_CASE("a non-2xx status is a response, not an error") {
  http_test_server server{[](const test_request&) {
    test_response r;
    r.status = 404;
    r.headers = {{"Content-Type", "application/json"}, {"Set-Cookie", "a=1"}, {"Set-Cookie", "b=2"}};
    r.body = R"({"detail":"no such thing"})";
    return r;
  }};
  http_client client;
  http_request req;
  req.url = server.url() + "/missing";
  auto res = fetch(client, req);
  REQUIRE(res);
  CHECK(res->status == 404);
  CHECK(res->body == R"({"detail":"no such thing"})");
  std::vector<std::string> cookies;
  for (auto& [n, v] : res->headers)
    if (n == "Set-Cookie")
      cookies.push_back(v);
  CHECK(cookies == std::vector<std::string>{"a=1", "b=2"});
}

TEST_CASE("a redirect is returned, not followed") {
  http_test_server server{[](const test_request&) {
    test_response r;
    r.status = 302;
    r.headers = {{"Location", "/elsewhere"}};
    return r;
  }};
  http_client client;
  http_request req;
  req.url = server.url() + "/old";
  auto res = fetch(client, req);
  REQUIRE(res);
  CHECK(res->status == 302);
  CHECK(header_of(*res, "Location") == "/elsewhere");
  CHECK(server.request_count() == 1);
}

TEST_CASE("connection refused is errc::http_error naming the URL") {
  std::string url;
  {
    http_test_server gone{echo};
    url = gone.url() + "/nothing";
  }
  http_client client;
  http_request req;
  req.method = "POST";
  req.url = url;
  auto res = fetch(client, req);
  REQUIRE(!res);
  CHECK(code_of(res.error()) == errc::http_error);
  auto what = message_of(res.error());
  CHECK(what.find("POST " + url + ": ") == 0);
}

TEST_CASE("a slow server gives errc::timeout") {
  http_test_server server{[](const test_request&) {
    test_response r;
    r.delay_ms = 2000;
    r.body = "{}";
    return r;
  }};
  http_client client;
  http_request req;
  req.url = server.url() + "/slow";
  req.timeout = std::chrono::milliseconds(200);
  auto res = fetch(client, req);
  REQUIRE(!res);
  CHECK(code_of(res.error()) == errc::timeout);
  CHECK(message_of(res.error()).find("GET " + req.url + ": ") == 0);
}

TEST_CASE("200 concurrent requests all complete exactly once") {
  http_test_server server{echo};
  constexpr int n = 200;
  std::array<std::atomic<int>, n> calls{};
  std::array<std::atomic<long>, n> statuses{};
  std::atomic<int> finished{0};
  std::promise<void> all_done;
  auto all_done_future = all_done.get_future();
  {
    http_client client{http_client_options{64, 16}};
    for (int i = 0; i < n; ++i) {
      http_request req;
      req.url = server.url() + "/item/" + std::to_string(i);
      client.submit(std::move(req), [&, i](caf::expected<http_response> r) {
        statuses[i] = r ? r->status : -1;
        calls[i]++;
        if (++finished == n)
          all_done.set_value();
      });
    }
    REQUIRE(all_done_future.wait_for(safety_bound) == std::future_status::ready);
  } // the destructor guarantees no further callbacks
  for (int i = 0; i < n; ++i) {
    CHECK(calls[i] == 1);
    CHECK(statuses[i] == 200);
  }
  CHECK(server.request_count() == n);
}

TEST_CASE("destroying the client cancels in-flight and queued requests") {
  std::mutex mtx;
  std::condition_variable cv;
  int arrived = 0;
  http_test_server server{[&](const test_request&) {
    {
      std::lock_guard<std::mutex> guard{mtx};
      ++arrived;
    }
    cv.notify_all();
    test_response r;
    r.delay_ms = 20'000; // interrupted when the server stops
    return r;
  }};
  constexpr int n = 5;
  std::array<std::atomic<int>, n> calls{};
  std::array<std::atomic<int>, n> codes{};
  auto client = std::make_unique<http_client>(http_client_options{2, 2});
  for (int i = 0; i < n; ++i) {
    http_request req;
    req.url = server.url() + "/hang/" + std::to_string(i);
    client->submit(std::move(req), [&, i](caf::expected<http_response> r) {
      codes[i] = static_cast<int>(r ? errc::none : code_of(r.error()));
      calls[i]++;
    });
  }
  {
    // two are in flight (max_in_flight = 2), three wait in the queue
    std::unique_lock<std::mutex> lock{mtx};
    REQUIRE(cv.wait_for(lock, safety_bound, [&] { return arrived == 2; }));
  }
  client.reset();
  for (int i = 0; i < n; ++i) {
    CHECK(calls[i] == 1);
    CHECK(codes[i] == static_cast<int>(errc::cancelled));
  }
}

TEST_CASE("a callback may submit another request") {
  http_test_server server{echo};
  http_client client;
  std::promise<long> second;
  auto second_future = second.get_future();
  http_request first;
  first.url = server.url() + "/first";
  client.submit(first, [&](caf::expected<http_response>) {
    http_request next;
    next.url = server.url() + "/second";
    client.submit(next, [&](caf::expected<http_response> r) { second.set_value(r ? r->status : -1); });
  });
  REQUIRE(second_future.wait_for(safety_bound) == std::future_status::ready);
  CHECK(second_future.get() == 200);
}


// -- retries ---------------------------------------------------------------------

namespace {

/// A policy with short waits, so retried tests stay quick.
retry_policy quick_retries(int attempts) {
  retry_policy p;
  p.max_attempts = attempts;
  p.base_delay = std::chrono::milliseconds(5);
  p.max_delay = std::chrono::milliseconds(5'000);
  return p;
}

test_response status_response(int status, http_headers extra = {}) {
  test_response r;
  r.status = status;
  r.headers.insert(r.headers.end(), extra.begin(), extra.end());
  r.body = "{\"status\":" + std::to_string(status) + "}";
  return r;
}

/// Answers the n-th request (1-based) with script[n-1], and with the last
/// entry once the script runs out; records every request.
class scripted {
public:
  explicit scripted(std::vector<test_response> script) : script_(std::move(script)) {}

  test_response operator()(const test_request& req) {
    std::lock_guard<std::mutex> guard{mtx_};
    seen_.push_back(req);
    return script_[std::min(seen_.size(), script_.size()) - 1];
  }
  std::vector<test_request> seen() {
    std::lock_guard<std::mutex> guard{mtx_};
    return seen_;
  }

private:
  std::mutex mtx_;
  std::vector<test_response> script_;
  std::vector<test_request> seen_;
};

/// A test server answering from `script`.
struct scripted_server {
  std::shared_ptr<scripted> script;
  http_test_server server;
  explicit scripted_server(std::vector<test_response> s)
    : script(std::make_shared<scripted>(std::move(s))),
      server([sc = script](const test_request& r) { return (*sc)(r); }) {}
};

/// A URL on 127.0.0.1 where nothing listens.
std::string closed_url(const std::string& path) {
  http_test_server gone{echo};
  return gone.url() + path;
}

} // namespace

TEST_CASE("the raw client does not retry by default") {
  scripted_server s{{status_response(503)}};
  http_client client;
  http_request req;
  req.url = s.server.url() + "/flaky";
  auto res = fetch(client, req);
  REQUIRE(res);
  CHECK(res->status == 503);
  CHECK(res->attempts == 1);
  CHECK(s.script->seen().size() == 1);
}

TEST_CASE("a 503 is retried and the success reports two attempts") {
  test_response ok;
  ok.body = R"({"ok":true})";
  scripted_server s{{status_response(503), ok}};
  http_client client;
  http_request req;
  req.url = s.server.url() + "/flaky";
  req.retry = quick_retries(4);
  auto res = fetch(client, req);
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(res->body == R"({"ok":true})");
  CHECK(res->attempts == 2);
  CHECK(s.script->seen().size() == 2);
}

TEST_CASE("Retry-After in seconds is honoured") {
  scripted_server s{{status_response(503, {{"Retry-After", "1"}}), test_response{}}};
  http_client client;
  http_request req;
  req.url = s.server.url() + "/busy";
  req.retry = quick_retries(2);
  auto res = fetch(client, req);
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(res->attempts == 2);
  auto seen = s.script->seen();
  REQUIRE(seen.size() == 2);
  CHECK(seen[1].target == "/busy");
}

TEST_CASE("a 429 with an HTTP-date Retry-After is retried") {
  // A date in the past asks for no wait at all.
  scripted_server s{{status_response(429, {{"Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT"}}),
                     status_response(429), test_response{}}};
  http_client client;
  http_request req;
  req.url = s.server.url() + "/limited";
  req.retry = quick_retries(5);
  auto res = fetch(client, req);
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(res->attempts == 3);
  CHECK(s.script->seen().size() == 3);
}

TEST_CASE("parse_retry_after reads delta seconds and HTTP dates") {
  CHECK(parse_retry_after("120") == std::chrono::milliseconds(120'000));
  CHECK(parse_retry_after(" 0 ") == std::chrono::milliseconds(0));
  CHECK(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == std::chrono::milliseconds(0));
  auto future = parse_retry_after("Fri, 01 Jan 2100 00:00:00 GMT");
  REQUIRE(future);
  CHECK(*future > std::chrono::hours(24 * 365));
  CHECK(!parse_retry_after("soon"));
  CHECK(!parse_retry_after(""));
  CHECK(!parse_retry_after("-5"));
}

TEST_CASE("max_attempts is respected and the last answer is returned") {
  scripted_server s{{status_response(502)}};
  http_client client;
  http_request req;
  req.url = s.server.url() + "/down";
  req.retry = quick_retries(3);
  auto res = fetch(client, req);
  REQUIRE(res);
  CHECK(res->status == 502);
  CHECK(res->attempts == 3);
  CHECK(s.script->seen().size() == 3);
}

TEST_CASE("statuses outside the retry set are not retried") {
  scripted_server s{{status_response(404)}};
  http_client client;
  http_request req;
  req.url = s.server.url() + "/missing";
  req.retry = quick_retries(4);
  auto res = fetch(client, req);
  REQUIRE(res);
  CHECK(res->status == 404);
  CHECK(res->attempts == 1);
  CHECK(s.script->seen().size() == 1);
}

TEST_CASE("a 500 is retried for GET unless retry_500 is off") {
  scripted_server s{{status_response(500), status_response(500), test_response{}}};
  http_client client;
  http_request req;
  req.url = s.server.url() + "/err";
  req.retry = quick_retries(3);
  req.retry.retry_500 = false;
  auto res = fetch(client, req);
  REQUIRE(res);
  CHECK(res->status == 500);
  CHECK(res->attempts == 1);
  req.retry.retry_500 = true;
  res = fetch(client, req);
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(res->attempts == 2);
  CHECK(s.script->seen().size() == 3);
}

TEST_CASE("POST is not retried on 500 without an idempotency key, and is with one") {
  // 500 until a request carries a key it has seen before.
  std::mutex mtx;
  std::vector<std::pair<std::string, std::string>> seen; // (method, key)
  http_test_server server{[&](const test_request& r) {
    std::lock_guard<std::mutex> guard{mtx};
    auto key = r.header("Idempotency-Key");
    bool repeat = !key.empty() && std::any_of(seen.begin(), seen.end(),
                                              [&](const auto& e) { return e.second == key; });
    seen.emplace_back(r.method, key);
    return repeat ? test_response{} : status_response(500);
  }};
  http_client client;
  http_request req;
  req.method = "POST";
  req.url = server.url() + "/alerts";
  req.body = R"({"message":"disk full"})";
  req.retry = quick_retries(4);

  auto res = fetch(client, req);
  REQUIRE(res);
  CHECK(res->status == 500);
  CHECK(res->attempts == 1);
  {
    std::lock_guard<std::mutex> guard{mtx};
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].second.empty());
  }

  req.idempotency_key = "run-7:Post Alert";
  res = fetch(client, req);
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(res->attempts == 2);
  std::lock_guard<std::mutex> guard{mtx};
  REQUIRE(seen.size() == 3);
  CHECK(seen[1] == std::pair<std::string, std::string>{"POST", "run-7:Post Alert"});
  CHECK(seen[2] == std::pair<std::string, std::string>{"POST", "run-7:Post Alert"});
}

TEST_CASE("PATCH is not retried on 503 without a key; the key header name is configurable") {
  scripted_server s{{status_response(503), status_response(503), test_response{}}};
  http_client client;
  http_request req;
  req.method = "PATCH";
  req.url = s.server.url() + "/record/1";
  req.body = "{}";
  req.retry = quick_retries(4);
  auto res = fetch(client, req);
  REQUIRE(res);
  CHECK(res->status == 503);
  CHECK(res->attempts == 1);

  req.idempotency_key = "k-42";
  req.retry.idempotency_header = "X-Request-Key";
  res = fetch(client, req);
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(res->attempts == 2);
  auto seen = s.script->seen();
  REQUIRE(seen.size() == 3);
  CHECK(seen[1].header("X-Request-Key") == "k-42");
  CHECK(seen[2].header("X-Request-Key") == "k-42");
  CHECK(seen[2].header("Idempotency-Key").empty());
}

TEST_CASE("a refused connection is retried, for POST too, and the error counts the attempts") {
  http_client client;
  for (std::string method : {"GET", "POST"}) {
    http_request req;
    req.method = method;
    req.url = closed_url("/nothing");
    req.retry = quick_retries(3);
    auto res = fetch(client, req);
    REQUIRE(!res);
    CHECK(code_of(res.error()) == errc::http_error);
    auto what = message_of(res.error());
    CHECK(what.find(method + " " + req.url + ": ") == 0);
    CHECK(what.ends_with("(after 3 attempts)"));
  }
}

TEST_CASE("a timeout before any response is retried for GET but not for POST") {
  // The first request hangs past the timeout; later ones answer at once.
  std::atomic<int> calls{0};
  http_test_server server{[&](const test_request&) {
    test_response r;
    if (++calls == 1)
      r.delay_ms = 5'000;
    return r;
  }};
  http_client client;
  http_request req;
  req.url = server.url() + "/slow-once";
  req.timeout = std::chrono::milliseconds(300);
  req.retry = quick_retries(2);
  auto res = fetch(client, req);
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(res->attempts == 2);

  calls = 0;
  req.method = "POST";
  req.body = "{}";
  res = fetch(client, req);
  REQUIRE(!res);
  CHECK(code_of(res.error()) == errc::timeout);
  CHECK(message_of(res.error()).ends_with("(after 1 attempt)"));
  CHECK(calls == 1);
}

TEST_CASE("the retry budget stops retries once it is spent") {
  scripted_server s{{status_response(503)}};
  http_client_options opts;
  opts.budget.ratio = 0;       // no share of traffic,
  opts.budget.min_retries = 2; // two retries per minute
  opts.budget.window = std::chrono::minutes(1);
  http_client client{opts};
  http_request req;
  req.url = s.server.url() + "/dead";
  req.retry = quick_retries(5);

  auto first = fetch(client, req);
  REQUIRE(first);
  CHECK(first->status == 503);
  CHECK(first->attempts == 3); // two retries, then the budget says no
  auto second = fetch(client, req);
  REQUIRE(second);
  CHECK(second->attempts == 1);
  CHECK(s.script->seen().size() == 4);

  http_request gone;
  gone.url = closed_url("/x");
  gone.retry = quick_retries(5);
  auto err = fetch(client, gone);
  REQUIRE(!err);
  CHECK(message_of(err.error()).ends_with("(after 1 attempt; retry budget exhausted)"));
}

TEST_CASE("the budget grows with traffic") {
  scripted_server s{{test_response{}}};
  http_client_options opts;
  opts.budget.ratio = 0.5;
  opts.budget.min_retries = 0;
  opts.budget.window = std::chrono::minutes(1);
  http_client client{opts};
  http_request ok;
  ok.url = s.server.url() + "/ok";
  for (int i = 0; i < 4; ++i)
    REQUIRE(fetch(client, ok));
  // 4 requests + 1 now: 2.5 retries allowed, so 2 are made.
  http_request gone;
  gone.url = closed_url("/x");
  gone.retry = quick_retries(10);
  auto err = fetch(client, gone);
  REQUIRE(!err);
  CHECK(message_of(err.error()).ends_with("(after 3 attempts; retry budget exhausted)"));
}

TEST_CASE("destroying the client cancels a retry that waits for its time") {
  scripted_server s{{status_response(503, {{"Retry-After", "60"}})}};
  auto client = std::make_unique<http_client>();
  std::promise<caf::expected<http_response>> result;
  auto future = result.get_future();
  http_request req;
  req.url = s.server.url() + "/later";
  req.retry = quick_retries(2);
  req.retry.max_delay = std::chrono::minutes(2);
  client->submit(req, [&](caf::expected<http_response> r) { result.set_value(std::move(r)); });
  for (int i = 0; i < 3000 && s.script->seen().empty(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  REQUIRE(s.script->seen().size() == 1);
  client.reset();
  REQUIRE(future.wait_for(safety_bound) == std::future_status::ready);
  auto res = future.get();
  REQUIRE(!res);
  CHECK(code_of(res.error()) == errc::cancelled);
  CHECK(s.script->seen().size() == 1);
}

// -- proxy -------------------------------------------------------------------------

namespace {

/// Sets environment variables for the scope, restoring what was there.
class env_guard {
public:
  env_guard(std::initializer_list<std::pair<const char*, const char*>> vars) {
    for (auto name : {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                      "ALL_PROXY", "no_proxy", "NO_PROXY"}) {
      const char* old = std::getenv(name);
      saved_.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
      unsetenv(name);
    }
    for (auto [name, value] : vars)
      setenv(name, value, 1);
  }
  ~env_guard() {
    for (auto& [name, value] : saved_) {
      if (value)
        setenv(name.c_str(), value->c_str(), 1);
      else
        unsetenv(name.c_str());
    }
  }
  env_guard(const env_guard&) = delete;
  env_guard& operator=(const env_guard&) = delete;

private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

/// A forward proxy stand-in: answers every request itself with its target.
test_response proxy_echo(const test_request& req) {
  test_response r;
  r.body = to_json(json::object{{"proxied", req.target}});
  return r;
}

} // namespace

TEST_CASE("the default proxy option carries requests; no_proxy and a per-request proxy bypass it") {
  env_guard env{};
  http_test_server proxy{proxy_echo};
  http_test_server other_proxy{proxy_echo};
  auto target = closed_url("/via/proxy?x=1"); // reachable only through a proxy

  http_client_options opts;
  opts.proxy = proxy.url();
  http_client client{opts};
  http_request req;
  req.url = target;
  auto res = fetch(client, req);
  REQUIRE(res);
  CHECK(echoed(*res)["proxied"] == json::value(target));
  CHECK(proxy.request_count() == 1);

  req.proxy = other_proxy.url();
  res = fetch(client, req);
  REQUIRE(res);
  CHECK(other_proxy.request_count() == 1);

  http_client_options direct = opts;
  direct.no_proxy = "example.org, 127.0.0.1";
  http_client bypassing{direct};
  req.proxy.clear();
  res = fetch(bypassing, req);
  REQUIRE(!res); // went straight to the closed port
  CHECK(proxy.request_count() == 1);
}

TEST_CASE("HTTP_PROXY and NO_PROXY from the environment apply unless the options say otherwise") {
  http_test_server proxy{proxy_echo};
  auto target = closed_url("/env");
  http_request req;
  req.url = target;
  {
    env_guard env{{"HTTP_PROXY", proxy.url().c_str()}};
    http_client client;
    auto res = fetch(client, req);
    REQUIRE(res);
    CHECK(echoed(*res)["proxied"] == json::value(target));
    CHECK(proxy.request_count() == 1);

    http_client_options no_env;
    no_env.use_environment_proxy = false;
    http_client ignoring{no_env};
    CHECK(!fetch(ignoring, req));
    CHECK(proxy.request_count() == 1);
  }
  {
    env_guard env{{"HTTP_PROXY", proxy.url().c_str()}, {"NO_PROXY", "127.0.0.1"}};
    http_client client;
    CHECK(!fetch(client, req));
    CHECK(proxy.request_count() == 1);

    http_client_options own;
    own.no_proxy = "example.org"; // the option wins over NO_PROXY
    http_client overriding{own};
    REQUIRE(fetch(overriding, req));
    CHECK(proxy.request_count() == 2);
  }
  {
    // The environment is read once, when the client is made.
    env_guard env{};
    http_client client;
    setenv("HTTP_PROXY", proxy.url().c_str(), 1);
    CHECK(!fetch(client, req));
    CHECK(proxy.request_count() == 2);
  }
}

// -- TLS ---------------------------------------------------------------------------

namespace {

// A self-signed certificate for 127.0.0.1 (valid until 2126), test use only.
constexpr const char* test_cert = R"(-----BEGIN CERTIFICATE-----
MIIBmjCCAUGgAwIBAgIURHw+inFeafgbfjd3hC2yo4xMQWgwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJMTI3LjAuMC4xMCAXDTI2MTIwMTIxNDk1M1oYDzIxMjYxMTA3
MjE0OTUzWjAUMRIwEAYDVQQDDAkxMjcuMC4wLjEwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAATF4Xyuexfb9ON0RavBQpz+ZdJdkkXUsPLQfUf5/NcYh9spWchki6eC
KdyURNVSdRcNZrhKeW0IHCcFVGY6TOc5o28wbTAdBgNVHQ4EFgQUDGCSjna2AUmm
4z+U0oZS+kweMIcwHwYDVR0jBBgwFoAUDGCSjna2AUmm4z+U0oZS+kweMIcwDwYD
VR0TAQH/BAUwAwEB/zAaBgNVHREEEzARhwR/AAABgglsb2NhbGhvc3QwCgYIKoZI
zj0EAwIDRwAwRAIgWWdf2D1Eu3z2cp03tEvTK+lkUzCADsBcemvpDfrxnIkCIE2F
+IAb8NlIK64yJ/SWBTUIHJbUdeWJtaMuTrfhyHVV
-----END CERTIFICATE-----
)";
constexpr const char* test_key = R"(-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgi/i+khzi3glfF6iH
d51nYhASurB4eieLnnV4M756bzmhRANCAATF4Xyuexfb9ON0RavBQpz+ZdJdkkXU
sPLQfUf5/NcYh9spWchki6eCKdyURNVSdRcNZrhKeW0IHCcFVGY6TOc5
-----END PRIVATE KEY-----
)";

} // namespace

TEST_CASE("TLS is verified by default; ca_file (request or option) trusts a private CA") {
  stepflow::test::temp_dir dir;
  http_server_options sopts;
  sopts.port = 0;
  sopts.tls_cert_file = dir.write("cert.pem", test_cert);
  sopts.tls_key_file = dir.write("key.pem", test_key);
  auto server = http_server::start(sopts, [](std::shared_ptr<const http_request_data>,
                                             http_responder respond) {
    http_reply r;
    r.body = R"({"secure":true})";
    respond(std::move(r));
  });
  REQUIRE_MESSAGE(server, (server ? "" : message_of(server.error())));
  auto url = "https://127.0.0.1:" + std::to_string((*server)->port()) + "/tls";

  http_client client;
  http_request req;
  req.url = url;
  auto res = fetch(client, req);
  REQUIRE(!res); // self-signed: not trusted by the system bundle
  CHECK(code_of(res.error()) == errc::http_error);

  req.ca_file = dir.file("cert.pem");
  res = fetch(client, req);
  REQUIRE_MESSAGE(res, (res ? "" : message_of(res.error())));
  CHECK(res->body == R"({"secure":true})");

  http_client_options opts;
  opts.ca_file = dir.file("cert.pem");
  http_client trusting{opts};
  req.ca_file.clear();
  res = fetch(trusting, req);
  REQUIRE(res);
  CHECK(res->status == 200);

  req.verify_tls = false;
  res = fetch(client, req);
  REQUIRE(res);
  CHECK(res->status == 200);
  (*server)->stop(std::chrono::milliseconds(500));
}
