// QueryREST against the local test server through a real http_client.
#include <atomic>
#include <cctype>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "stepflow/runtime/http_client.hpp"
#include "stepflow/runtime/json.hpp"
#include "stepflow/runtime/step.hpp"
#include "support/http_test_server.hpp"
#include "support/step_fixture.hpp"

namespace stepflow::connectors {
std::shared_ptr<const step_type> make_query_rest_step();
} // namespace stepflow::connectors

using namespace stepflow;
using stepflow::test::http_test_server;
using stepflow::test::test_request;
using stepflow::test::test_response;

namespace {

constexpr auto safety_bound = std::chrono::seconds(30);

std::shared_ptr<step_context> make_context(http_client* http, json::object params) {
  auto ctx = test::make_step_context("QueryREST", std::move(params), "query");
  ctx->services.http = http;
  return ctx;
}

/// Runs `step` with `ctx`; the outcome of its one done() call.
step_outcome run_step(const step_type& step, std::shared_ptr<step_context> ctx) {
  return test::run_step(step, std::move(ctx), safety_bound);
}

/// Records the last request and answers with a fixed response.
struct recorder {
  std::mutex mtx;
  test_request last;
  test_response answer;

  test_response operator()(const test_request& req) {
    std::lock_guard<std::mutex> guard{mtx};
    last = req;
    return answer;
  }
};

} // namespace

TEST_CASE("QueryREST GET returns the parsed JSON body") {
  auto rec = std::make_shared<recorder>();
  rec->answer.body = R"({"devices":[{"id":1},{"id":2}]})";
  http_test_server server{[rec](const test_request& r) { return (*rec)(r); }};
  http_client client;
  auto step = connectors::make_query_rest_step();
  auto ctx = make_context(&client, json::object{{"prefix_url", server.url() + "/api/"},
                                                {"relative_url", "/device?limit=2"},
                                                {"headers", json::object{{"X-Trace", "t1"}}}});
  auto out = run_step(*step, ctx);
  REQUIRE(out.ok);
  CHECK(out.data == parse_json(R"({"devices":[{"id":1},{"id":2}]})", "expected").value());
  CHECK(rec->last.method == "GET");
  CHECK(rec->last.target == "/api/device?limit=2");
  CHECK(rec->last.header("X-Trace") == "t1");
  CHECK(rec->last.body.empty());

  bool saw_request = false;
  bool saw_status = false;
  for (auto& line : ctx->take_logs()) {
    saw_request = saw_request || (line.level == 10 && line.message == "GET " + server.url() + "/api/device?limit=2");
    saw_status = saw_status || (line.level == 20 && line.message.starts_with("HTTP 200 in "));
  }
  CHECK(saw_request);
  CHECK(saw_status);
}

TEST_CASE("QueryREST returns a non-JSON body as text") {
  http_test_server server{[](const test_request&) {
    test_response r;
    r.headers = {{"Content-Type", "text/plain"}};
    r.body = "hello there";
    return r;
  }};
  http_client client;
  auto step = connectors::make_query_rest_step();
  auto out = run_step(*step, make_context(&client, json::object{{"prefix_url", server.url()},
                                                                {"relative_url", "greeting"}}));
  REQUIRE(out.ok);
  CHECK(out.data == json::value("hello there"));
}

TEST_CASE("QueryREST POST sends an object payload as JSON with basic auth") {
  auto rec = std::make_shared<recorder>();
  rec->answer.status = 201;
  rec->answer.body = R"({"created":true})";
  http_test_server server{[rec](const test_request& r) { return (*rec)(r); }};
  http_client client;
  auto step = connectors::make_query_rest_step();
  json::object payload{{"name", "dev-1"}, {"tags", json::array{"a", "b"}}};
  auto out = run_step(*step, make_context(&client, json::object{{"prefix_url", server.url()},
                                                                {"relative_url", "api/device"},
                                                                {"method", "post"},
                                                                {"payload", payload},
                                                                {"username", "alice"},
                                                                {"password", "s3cret"}}));
  REQUIRE(out.ok);
  CHECK(out.data == parse_json(R"({"created":true})", "expected").value());
  CHECK(rec->last.method == "POST");
  CHECK(rec->last.target == "/api/device");
  CHECK(rec->last.header("Content-Type") == "application/json");
  CHECK(rec->last.header("Authorization") == "Basic YWxpY2U6czNjcmV0");
  auto sent = parse_json(rec->last.body, "sent body");
  REQUIRE(sent);
  CHECK(*sent == json::value(payload));
}

TEST_CASE("QueryREST sends a string payload as-is with the given content type and bearer") {
  auto rec = std::make_shared<recorder>();
  http_test_server server{[rec](const test_request& r) { return (*rec)(r); }};
  http_client client;
  auto step = connectors::make_query_rest_step();
  auto out = run_step(
    *step, make_context(&client, json::object{{"prefix_url", server.url() + "/"},
                                              {"method", "PUT"},
                                              {"payload", "a=1&b=2"},
                                              {"bearer_token", "tok"},
                                              {"headers", json::object{{"content-type",
                                                                        "application/x-www-form-urlencoded"}}}}));
  REQUIRE(out.ok);
  CHECK(rec->last.method == "PUT");
  CHECK(rec->last.target == "/");
  CHECK(rec->last.body == "a=1&b=2");
  CHECK(rec->last.header("Content-Type") == "application/x-www-form-urlencoded");
  CHECK(rec->last.header("Authorization") == "Bearer tok");
}

TEST_CASE("QueryREST fails on 404 with http_code, headers and body") {
  http_test_server server{[](const test_request&) {
    test_response r;
    r.status = 404;
    r.headers = {{"Content-Type", "application/json"}, {"X-Request-Id", "r-9"}};
    r.body = R"({"message":"not found"})";
    return r;
  }};
  http_client client;
  auto step = connectors::make_query_rest_step();
  auto out = run_step(*step, make_context(&client, json::object{{"prefix_url", server.url()},
                                                                {"relative_url", "api/nothing"}}));
  REQUIRE_FALSE(out.ok);
  CHECK(out.error == "GET " + server.url() + "/api/nothing returned HTTP 404");
  REQUIRE(out.data.is_object());
  auto& d = out.data.as_object();
  CHECK(d["http_code"] == json::value(404));
  CHECK(d["body"] == parse_json(R"({"message":"not found"})", "expected").value());
  REQUIRE(d["headers"].is_object());
  CHECK(d["headers"].as_object()["X-Request-Id"] == "r-9");
}

TEST_CASE("QueryREST expected_status widens success") {
  http_test_server server{[](const test_request&) {
    test_response r;
    r.status = 404;
    r.body = R"({"message":"not found"})";
    return r;
  }};
  http_client client;
  auto step = connectors::make_query_rest_step();
  auto out = run_step(*step, make_context(&client, json::object{{"prefix_url", server.url()},
                                                                {"expected_status", json::array{200, 404}}}));
  CHECK(out.ok);
}

TEST_CASE("QueryREST saves the Location of an empty response") {
  http_test_server server{[](const test_request&) {
    test_response r;
    r.status = 201;
    r.headers = {{"Location", "/api/device/42"}};
    return r;
  }};
  http_client client;
  auto step = connectors::make_query_rest_step();
  auto out = run_step(*step, make_context(&client, json::object{{"prefix_url", server.url()},
                                                                {"relative_url", "api/device"},
                                                                {"method", "POST"},
                                                                {"payload", json::object{{"name", "x"}}}}));
  REQUIRE(out.ok);
  CHECK(out.data == parse_json(R"({"location":"/api/device/42"})", "expected").value());
}

TEST_CASE("QueryREST transport errors fail the step with the client's sentence") {
  std::string url;
  {
    http_test_server gone{[](const test_request&) { return test_response{}; }};
    url = gone.url();
  }
  http_client client;
  auto step = connectors::make_query_rest_step();
  auto out = run_step(*step, make_context(&client, json::object{{"prefix_url", url},
                                                                {"relative_url", "x"}}));
  REQUIRE_FALSE(out.ok);
  CHECK(out.error.starts_with("GET " + url + "/x: "));
}

TEST_CASE("QueryREST without an HTTP service or when cancelled fails at once") {
  auto step = connectors::make_query_rest_step();
  auto out = run_step(*step, make_context(nullptr, json::object{{"prefix_url", "http://127.0.0.1:1"}}));
  REQUIRE_FALSE(out.ok);
  CHECK(out.error.find("HTTP client") != std::string::npos);

  http_client client;
  auto ctx = make_context(&client, json::object{{"prefix_url", "http://127.0.0.1:1"}});
  ctx->cancelled = true;
  out = run_step(*step, ctx);
  REQUIRE_FALSE(out.ok);
  CHECK(out.error.find("cancelled") != std::string::npos);
}

TEST_CASE("QueryREST check() rejects bad parameters") {
  auto step = connectors::make_query_rest_step();
  CHECK(step->info().name == "QueryREST");
  auto err = step->check(json::object{{"relative_url", "x"}});
  REQUIRE(err);
  CHECK(code_of(err) == errc::invalid_definition);
  CHECK(message_of(err).find("prefix_url") != std::string::npos);

  CHECK(step->check(json::object{{"prefix_url", "http://h"}, {"headers", "nope"}}));
  CHECK(step->check(json::object{{"prefix_url", "http://h"}, {"method", "GE T"}}));
  CHECK_FALSE(step->check(json::object{{"prefix_url", "http://h"}, {"method", "patch"}}));

  bool documented = false;
  for (const auto& p : step->info().params)
    documented = documented || (p.name == "prefix_url" && p.required);
  CHECK(documented);
}

TEST_CASE("QueryREST without retries sends once; with retries it rides out a 503") {
  std::atomic<int> calls{0};
  http_test_server server{[&](const test_request&) {
    test_response r;
    if (++calls % 2 == 1) {
      r.status = 503;
      r.headers.emplace_back("Retry-After", "0");
    }
    r.body = R"({"n":1})";
    return r;
  }};
  http_client client;
  auto step = connectors::make_query_rest_step();
  auto out = run_step(*step, make_context(&client, json::object{{"prefix_url", server.url()},
                                                                {"relative_url", "api/x"}}));
  REQUIRE_FALSE(out.ok);
  CHECK(out.error == "GET " + server.url() + "/api/x returned HTTP 503");
  CHECK(calls == 1);

  calls = 0;
  auto ctx = make_context(&client, json::object{{"prefix_url", server.url()},
                                                {"relative_url", "api/x"},
                                                {"retries", 3}});
  out = run_step(*step, ctx);
  REQUIRE(out.ok);
  CHECK(calls == 2);
  bool logged = false;
  for (auto& line : ctx->take_logs())
    logged = logged || (line.message.starts_with("HTTP 200 in ") && line.message.ends_with(" after 2 attempts"));
  CHECK(logged);
}

TEST_CASE("QueryREST retries a POST only with an idempotency_key, sending it on every attempt") {
  auto rec = std::make_shared<std::vector<test_request>>();
  auto mtx = std::make_shared<std::mutex>();
  http_test_server server{[rec, mtx](const test_request& r) {
    std::lock_guard<std::mutex> guard{*mtx};
    rec->push_back(r);
    test_response res;
    res.status = rec->size() % 2 == 1 ? 502 : 201;
    res.body = "{}";
    return res;
  }};
  http_client client;
  auto step = connectors::make_query_rest_step();
  json::object params{{"prefix_url", server.url()}, {"method", "POST"},
                      {"payload", json::object{{"a", 1}}}, {"retries", "2"}};
  auto out = run_step(*step, make_context(&client, params));
  REQUIRE_FALSE(out.ok);
  CHECK(out.error.ends_with("returned HTTP 502"));
  REQUIRE(out.data.is_object());
  CHECK(out.data.as_object()["http_code"] == json::value(502));

  params["idempotency_key"] = "run-1:query";
  {
    std::lock_guard<std::mutex> guard{*mtx};
    rec->clear();
  }
  out = run_step(*step, make_context(&client, params));
  REQUIRE(out.ok);
  std::lock_guard<std::mutex> guard{*mtx};
  REQUIRE(rec->size() == 2);
  CHECK((*rec)[0].header("Idempotency-Key") == "run-1:query");
  CHECK((*rec)[1].header("Idempotency-Key") == "run-1:query");
}

TEST_CASE("QueryREST check() rejects bad retries") {
  auto step = connectors::make_query_rest_step();
  CHECK(step->check(json::object{{"prefix_url", "http://h"}, {"retries", -1}}));
  CHECK(step->check(json::object{{"prefix_url", "http://h"}, {"retries", 1.5}}));
  CHECK(step->check(json::object{{"prefix_url", "http://h"}, {"retries", 11}}));
  CHECK(step->check(json::object{{"prefix_url", "http://h"}, {"retries", "many"}}));
  CHECK_FALSE(step->check(json::object{{"prefix_url", "http://h"}, {"retries", "3"}}));
  CHECK_FALSE(step->check(json::object{{"prefix_url", "http://h"}, {"retries", 0}}));
}
