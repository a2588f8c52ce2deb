#include "stepflow/runtime/http_client.hpp"

#include <array>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <string>

#include <doctest/doctest.h>

#include "stepflow/runtime/json.hpp"
#include "support/http_test_server.hpp"

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
