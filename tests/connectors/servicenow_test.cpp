// The ServiceNow connector's steps against build/stepflow-sim (a real HTTP
// server in its own process) through a real http_client, plus a local test
// server where a request's exact shape or an unusual answer matters.
#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

#include "servicenow/servicenow.hpp"
#include "stepflow/runtime/http_client.hpp"
#include "stepflow/runtime/json.hpp"
#include "stepflow/runtime/step.hpp"
#include "support/http_test_server.hpp"
#include "support/sim_process.hpp"
#include "support/step_fixture.hpp"

using namespace stepflow;
using stepflow::test::fetch;
using stepflow::test::http_test_server;
using stepflow::test::logged;
using stepflow::test::sim_call;
using stepflow::test::sim_process;
using stepflow::test::sim_stat;
using stepflow::test::test_request;
using stepflow::test::test_response;

namespace {

using fixture = test::connector_fixture<connectors::servicenow_connector_options, connectors::add_servicenow_steps>;
using stepflow::test::obj;


/// Records every request; answers with `answer(request, index)`.
struct recording_server {
  std::mutex mtx;
  std::vector<test_request> seen;
  std::function<test_response(const test_request&, size_t)> answer;
  http_test_server server{[this](const test_request& r) {
    size_t n;
    {
      std::lock_guard<std::mutex> guard{mtx};
      seen.push_back(r);
      n = seen.size() - 1;
    }
    return answer(r, n);
  }};
  explicit recording_server(std::function<test_response(const test_request&, size_t)> a)
    : answer(std::move(a)) {}
  std::vector<test_request> requests() {
    std::lock_guard<std::mutex> guard{mtx};
    return seen;
  }
};

test_response json_response(int status, std::string body, http_headers extra = {}) {
  test_response r;
  r.status = status;
  r.body = std::move(body);
  r.headers.insert(r.headers.end(), extra.begin(), extra.end());
  return r;
}

/// "number" fields of a list of records.
std::vector<std::string> numbers(const json::value& records) {
  std::vector<std::string> out;
  for (const auto& r : records.as_array())
    out.emplace_back(r.at("number").as_string());
  return out;
}

} // namespace

TEST_CASE("the ServiceNow connector's options are validated once, naming the field") {
  // The options it shares with SL1 (http_defaults) are covered in sl1_test.
  auto ok = connectors::parse_servicenow_connector_options(
    {{"page_size", 50}, {"max_records", 10}, {"retries", 0}});
  REQUIRE(ok);
  CHECK(ok->page_size == 50);
  CHECK(ok->max_records == 10);
  CHECK(ok->retries == 0);
  const std::vector<std::pair<json::object, std::string>> bad{
    {{{"page_size", 0}}, "servicenow.page_size must be a whole number from 1 to 10000"},
    {{{"max_records", 0.5}}, "servicenow.max_records must be a whole number from 1 to 10000000"},
    {{{"timeout", "soon"}}, "servicenow.timeout must be a number"},
    {{{"pagesize", 1}}, "servicenow: unknown option \"pagesize\""},
  };
  for (const auto& [options, message] : bad) {
    auto r = connectors::parse_servicenow_connector_options(options);
    REQUIRE_FALSE(r);
    CHECK(message_of(r.error()) == message);
  }
}

TEST_CASE("the ServiceNow connector registers its steps") {
  fixture f;
  for (auto name : {"ServiceNowCreateRecord", "ServiceNowGetRecord", "ServiceNowUpdateRecord",
                    "ServiceNowQueryRecords"}) {
    auto* s = f.registry.find(name);
    REQUIRE_MESSAGE(s, name);
    CHECK(s->info().name == name);
    CHECK(s->info().params.front().name == "table");
  }
}

TEST_CASE("create, read, update (PATCH and PUT) a record; the result is unwrapped") {
  sim_process sim{"snow", {}};
  fixture f;
  auto out = f.run("ServiceNowCreateRecord",
                   {{"snow_url", sim.url() + "/"}, {"table", "incident"},
                    {"data", json::object{{"short_description", "Disk full"}, {"urgency", "2"}}}});
  REQUIRE_MESSAGE(out.ok, out.error);
  auto& created = obj(out.data);
  CHECK(created["number"] == "INC0010001");
  CHECK(created["short_description"] == "Disk full");
  std::string sys_id(created["sys_id"].as_string());
  REQUIRE(sys_id.size() == 32);

  out = f.run("ServiceNowGetRecord", {{"snow_url", sim.url()}, {"table", "incident"}, {"sys_id", sys_id},
                                      {"sysparm_fields", "number,urgency"}});
  REQUIRE_MESSAGE(out.ok, out.error);
  CHECK(out.data == parse_json(R"({"number":"INC0010001","urgency":"2"})", "want").value());

  out = f.run("ServiceNowUpdateRecord", {{"snow_url", sim.url()}, {"table", "incident"}, {"sys_id", sys_id},
                                         {"data", json::object{{"state", "6"}}}});
  REQUIRE_MESSAGE(out.ok, out.error);
  CHECK(obj(out.data)["state"] == "6");
  CHECK(obj(out.data)["short_description"] == "Disk full");

  out = f.run("ServiceNowUpdateRecord", {{"snow_url", sim.url()}, {"table", "incident"}, {"sys_id", sys_id},
                                         {"method", "put"}, {"data", R"({"urgency": "1"})"}});
  REQUIRE_MESSAGE(out.ok, out.error);
  CHECK(obj(out.data)["urgency"] == "1");
  CHECK(sim_stat(f.client, sim, "updates") == 2);
  CHECK(sim_stat(f.client, sim, "created") == 3); // two seeded records, one incident
}

TEST_CASE("a missing record fails with 404 and the HTTP data") {
  sim_process sim{"snow", {}};
  fixture f;
  auto out = f.run("ServiceNowGetRecord", {{"snow_url", sim.url()}, {"table", "incident"}, {"sys_id", "nope"}});
  REQUIRE_FALSE(out.ok);
  CHECK(out.error == "GET /api/now/table/incident/nope returned HTTP 404");
  auto& d = obj(out.data);
  CHECK(d["http_code"] == json::value(404));
  CHECK(d["body"].at("error").at("message") == "No Record found");
  CHECK(d["headers"].as_object().contains("Content-Type"));
}

TEST_CASE("ServiceNowQueryRecords pages through Link headers up to max_records") {
  sim_process sim{"snow", {}};
  fixture f;
  for (int i = 1; i <= 25; ++i) {
    http_request req;
    req.method = "POST";
    req.url = sim.url() + "/api/now/table/incident";
    req.body = to_json(json::object{{"short_description", "n" + std::to_string(i)},
                                    {"category", i % 5 == 0 ? "network" : "software"}});
    auto res = fetch(f.client, req);
    REQUIRE(res);
    REQUIRE(res->status == 201);
  }
  std::shared_ptr<step_context> ctx;
  auto out = f.run("ServiceNowQueryRecords", {{"snow_url", sim.url()}, {"table", "incident"},
                                              {"sysparm_limit", 10}, {"sysparm_fields", "number"}},
                   &ctx);
  REQUIRE_MESSAGE(out.ok, out.error);
  REQUIRE(out.data.is_array());
  auto all = numbers(out.data);
  REQUIRE(all.size() == 25);
  CHECK(std::set<std::string>(all.begin(), all.end()).size() == 25);
  CHECK(all.front() == "INC0010001");
  CHECK(all.back() == "INC0010025");
  CHECK(out.data.as_array()[0].as_object().size() == 1); // sysparm_fields kept on every page
  CHECK(logged(ctx, "25 records in 3 pages"));

  out = f.run("ServiceNowQueryRecords", {{"snow_url", sim.url()}, {"table", "incident"},
                                         {"sysparm_query", "category=network"}, {"sysparm_limit", 2}});
  REQUIRE_MESSAGE(out.ok, out.error);
  CHECK(numbers(out.data) == std::vector<std::string>{"INC0010005", "INC0010010", "INC0010015",
                                                      "INC0010020", "INC0010025"});

  out = f.run("ServiceNowQueryRecords", {{"snow_url", sim.url()}, {"table", "incident"},
                                         {"sysparm_limit", 5}, {"max_records", 12}, {"sysparm_offset", 3}});
  REQUIRE(out.ok);
  auto some = numbers(out.data);
  REQUIRE(some.size() == 12);
  CHECK(some.front() == "INC0010004");

  out = f.run("ServiceNowQueryRecords", {{"snow_url", sim.url()}, {"table", "problem"}});
  REQUIRE(out.ok);
  CHECK(out.data.as_array().empty());
}

TEST_CASE("without paging headers, pages are read until a short one; X-Total-Count alone also ends it") {
  recording_server plain{[](const test_request& r, size_t) {
    // 5 records in all, no Link, no X-Total-Count.
    auto q = r.target;
    auto offset = std::stoi(q.substr(q.find("sysparm_offset=") + 15));
    json::array rows;
    for (int i = offset; i < std::min(offset + 2, 5); ++i)
      rows.push_back(json::object{{"number", "N" + std::to_string(i)}});
    return json_response(200, to_json(json::object{{"result", rows}}));
  }};
  fixture f;
  auto out = f.run("ServiceNowQueryRecords", {{"snow_url", plain.server.url()}, {"table", "task"},
                                              {"sysparm_limit", 2}});
  REQUIRE_MESSAGE(out.ok, out.error);
  CHECK(numbers(out.data) == std::vector<std::string>{"N0", "N1", "N2", "N3", "N4"});
  auto seen = plain.requests();
  REQUIRE(seen.size() == 3);
  CHECK(seen[0].target == "/api/now/table/task?sysparm_limit=2&sysparm_offset=0");
  CHECK(seen[2].target == "/api/now/table/task?sysparm_limit=2&sysparm_offset=4");

  recording_server counted{[](const test_request&, size_t) {
    // Full pages, but the total says 4: two pages only.
    return json_response(200, R"({"result":[{"number":"A"},{"number":"B"}]})",
                         {{"X-Total-Count", "4"}});
  }};
  out = f.run("ServiceNowQueryRecords", {{"snow_url", counted.server.url()}, {"table", "task"},
                                         {"sysparm_limit", 2}});
  REQUIRE_MESSAGE(out.ok, out.error);
  CHECK(out.data.as_array().size() == 4);
  CHECK(counted.requests().size() == 2);

  recording_server foreign{[](const test_request&, size_t) {
    // A Link to another host is not followed (credentials would go there).
    return json_response(200, R"({"result":[{"number":"A"}]})",
                         {{"Link", "<http://evil.example/api/now/table/task?sysparm_offset=1>;rel=\"next\""}});
  }};
  std::shared_ptr<step_context> ctx;
  out = f.run("ServiceNowQueryRecords", {{"snow_url", foreign.server.url()}, {"table", "task"},
                                         {"sysparm_limit", 2}, {"user", "u"}, {"password", "p"}},
              &ctx);
  REQUIRE_MESSAGE(out.ok, out.error);
  CHECK(out.data.as_array().size() == 1);
  CHECK(foreign.requests().size() == 1);
  CHECK(logged(ctx, "ignoring a Link"));
}

TEST_CASE("an answer without a result member fails the step") {
  recording_server html{[](const test_request&, size_t) {
    test_response r;
    r.headers = {{"Content-Type", "text/html"}};
    r.body = "<html>Your instance is hibernating</html>";
    return r;
  }};
  fixture f;
  auto out = f.run("ServiceNowGetRecord", {{"snow_url", html.server.url()}, {"table", "incident"},
                                           {"sys_id", "abc"}});
  REQUIRE_FALSE(out.ok);
  CHECK(out.error == "GET /api/now/table/incident/abc returned no result record (HTTP 200)");
  CHECK(obj(out.data)["body"] == "<html>Your instance is hibernating</html>");
}

TEST_CASE("POST and PATCH carry an idempotency key and are replayed after a 503") {
  recording_server flaky{[](const test_request&, size_t n) {
    if (n % 2 == 0)
      return json_response(503, R"({"error":{"message":"busy"}})", {{"Retry-After", "0"}});
    return json_response(n == 1 ? 201 : 200, R"({"result":{"sys_id":"s1","number":"INC1"}})");
  }};
  fixture f;
  auto out = f.run("ServiceNowCreateRecord", {{"snow_url", flaky.server.url()}, {"table", "incident"},
                                              {"data", json::object{{"a", 1}}}},
                   nullptr, "Create Incident");
  REQUIRE_MESSAGE(out.ok, out.error);
  CHECK(obj(out.data)["number"] == "INC1");
  out = f.run("ServiceNowUpdateRecord", {{"snow_url", flaky.server.url()}, {"table", "incident"},
                                         {"sys_id", "s1"}, {"data", json::object{{"b", 2}}}},
              nullptr, "Update Incident");
  REQUIRE_MESSAGE(out.ok, out.error);
  auto seen = flaky.requests();
  REQUIRE(seen.size() == 4);
  CHECK(seen[0].method == "POST");
  CHECK(seen[0].header("Idempotency-Key") == "run-1:Create Incident");
  CHECK(seen[1].header("Idempotency-Key") == "run-1:Create Incident");
  CHECK(seen[1].body == R"({"a":1})");
  CHECK(seen[2].method == "PATCH");
  CHECK(seen[2].target == "/api/now/table/incident/s1");
  CHECK(seen[3].header("Idempotency-Key") == "run-1:Update Incident");
}

TEST_CASE("injected 5xx answers from the simulator are retried; retries 0 turns that off") {
  sim_process sim{"snow", {}};
  fixture f;
  sim_call(f.client, sim, "/_fail", R"({"status": 503, "count": 2})");
  std::shared_ptr<step_context> ctx;
  auto out = f.run("ServiceNowCreateRecord", {{"snow_url", sim.url()}, {"table", "incident"},
                                              {"data", json::object{{"short_description", "x"}}}},
                   &ctx);
  REQUIRE_MESSAGE(out.ok, out.error);
  CHECK(sim_stat(f.client, sim, "injected") == 2);
  CHECK(sim_stat(f.client, sim, "created") == 3); // two seeded, one incident: no duplicate
  CHECK(logged(ctx, " after 3 attempts"));

  sim_call(f.client, sim, "/_fail", R"({"status": 504, "count": 1})");
  out = f.run("ServiceNowQueryRecords", {{"snow_url", sim.url()}, {"table", "incident"}, {"retries", 0}});
  REQUIRE_FALSE(out.ok);
  CHECK(out.error == "GET /api/now/table/incident returned HTTP 504");
  CHECK(obj(out.data)["http_code"] == json::value(504));
}

TEST_CASE("basic auth: a wrong password is a 401, not retried, never shown") {
  sim_process sim{"snow", {"--auth", "admin:Corr3ct-horse"}};
  fixture f;
  std::shared_ptr<step_context> ctx;
  auto out = f.run("ServiceNowGetRecord", {{"snow_url", sim.url()}, {"table", "sys_user"}, {"sys_id", "x"},
                                           {"user", "admin"}, {"password", "hunter2-wrong"}},
                   &ctx);
  REQUIRE_FALSE(out.ok);
  CHECK(out.error == "GET /api/now/table/sys_user/x returned HTTP 401");
  CHECK(obj(out.data)["body"].at("error").at("message") == "User Not Authenticated");
  CHECK(sim_stat(f.client, sim, "unauthorized") == 1);
  CHECK(to_json(out.data).find("hunter2") == std::string::npos);
  for (auto& line : ctx->take_logs())
    CHECK(line.message.find("hunter2") == std::string::npos);

  out = f.run("ServiceNowQueryRecords", {{"snow_url", sim.url()}, {"table", "sys_user"},
                                         {"username", "admin"}, {"password", "Corr3ct-horse"}});
  REQUIRE_MESSAGE(out.ok, out.error);
  REQUIRE(out.data.as_array().size() == 1);
  CHECK(out.data.as_array()[0].at("user_name") == "admin");
}

TEST_CASE("OAuth: a bearer token, or client credentials exchanged once and cached") {
  sim_process sim{"snow", {"--auth", "admin:pw", "--oauth-client", "cid:csecret", "--oauth-refresh", "rtok-1"}};
  fixture f;
  auto out = f.run("ServiceNowQueryRecords", {{"snow_url", sim.url()}, {"table", "sys_user"},
                                              {"oauth_token", "not-issued"}});
  REQUIRE_FALSE(out.ok);
  CHECK(out.error == "GET /api/now/table/sys_user returned HTTP 401");

  json::object oauth{{"snow_url", sim.url()}, {"table", "sys_user"}, {"client_id", "cid"},
                     {"client_secret", "csecret"}, {"refresh_token", "rtok-1"}};
  auto before = sim_stat(f.client, sim, "requests");
  out = f.run("ServiceNowQueryRecords", oauth);
  REQUIRE_MESSAGE(out.ok, out.error);
  CHECK(out.data.as_array().size() == 1);
  CHECK(sim_stat(f.client, sim, "requests") - before == 2); // the token, then the query
  before = sim_stat(f.client, sim, "requests");
  out = f.run("ServiceNowQueryRecords", oauth); // the cached token
  REQUIRE_MESSAGE(out.ok, out.error);
  CHECK(sim_stat(f.client, sim, "requests") - before == 1);

  // The password grant, and a refused grant that names the token endpoint only.
  out = f.run("ServiceNowQueryRecords", {{"snow_url", sim.url()}, {"table", "sys_user"}, {"client_id", "cid"},
                                         {"client_secret", "csecret"}, {"user", "admin"}, {"password", "pw"}});
  REQUIRE_MESSAGE(out.ok, out.error);
  std::shared_ptr<step_context> ctx;
  out = f.run("ServiceNowQueryRecords", {{"snow_url", sim.url()}, {"table", "sys_user"}, {"client_id", "cid"},
                                         {"client_secret", "s3cr3t-wrong"}, {"refresh_token", "rtok-1"}},
              &ctx);
  REQUIRE_FALSE(out.ok);
  CHECK(out.error == "POST /oauth_token.do returned HTTP 401");
  CHECK(to_json(out.data).find("s3cr3t-wrong") == std::string::npos);
  for (auto& line : ctx->take_logs())
    CHECK(line.message.find("s3cr3t-wrong") == std::string::npos);
}

TEST_CASE("OAuth: the grant is form-encoded, and a 401 on a cached token gets a fresh one") {
  std::atomic<int> tokens{0};
  recording_server server{[&](const test_request& r, size_t) {
    if (r.target == "/oauth_token.do") {
      int n = ++tokens;
      return json_response(200, to_json(json::object{{"access_token", "tok-" + std::to_string(n)},
                                                     {"expires_in", 1800}}));
    }
    // Only the newest token is good.
    if (r.header("Authorization") != "Bearer tok-" + std::to_string(tokens.load()))
      return json_response(401, R"({"error":{"message":"User Not Authenticated"}})");
    return json_response(200, R"({"result":{"sys_id":"1"}})");
  }};
  fixture f;
  json::object params{{"snow_url", server.server.url()}, {"table", "incident"}, {"sys_id", "1"},
                      {"client_id", "my id"}, {"client_secret", "s&cret"}, {"refresh_token", "r=1"}};
  auto out = f.run("ServiceNowGetRecord", params);
  REQUIRE_MESSAGE(out.ok, out.error);
  auto seen = server.requests();
  REQUIRE(seen.size() == 2);
  CHECK(seen[0].method == "POST");
  CHECK(seen[0].header("Content-Type") == "application/x-www-form-urlencoded");
  CHECK(seen[0].body == "grant_type=refresh_token&client_id=my%20id&client_secret=s%26cret&refresh_token=r%3D1");
  CHECK(seen[1].header("Authorization") == "Bearer tok-1");

  ++tokens; // the server moves on: tok-1 is no longer good
  out = f.run("ServiceNowGetRecord", params);
  REQUIRE_MESSAGE(out.ok, out.error);
  seen = server.requests();
  REQUIRE(seen.size() == 5); // 401 with the cached tok-1, a new token, the retry
  CHECK(seen[2].header("Authorization") == "Bearer tok-1");
  CHECK(seen[3].target == "/oauth_token.do");
  CHECK(seen[4].header("Authorization") == "Bearer tok-3");
}

TEST_CASE("instance names an https://<instance>.service-now.com URL") {
  // A proxy stand-in shows where the request was going without any DNS.
  recording_server proxy{[](const test_request&, size_t) { return json_response(403, "{}"); }};
  fixture f;
  auto out = f.run("ServiceNowGetRecord", {{"instance", "acme"}, {"table", "incident"}, {"sys_id", "1"},
                                           {"proxy", proxy.server.url()}, {"retries", 0}});
  REQUIRE_FALSE(out.ok);
  auto seen = proxy.requests();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].method == "CONNECT");
  CHECK(seen[0].target == "acme.service-now.com:443");
  CHECK(out.error.find("https://acme.service-now.com/api/now/table/incident/1") != std::string::npos);
}

TEST_CASE("ServiceNow check() names the bad parameter") {
  fixture f;
  auto msg = [&](const char* type, json::object params) {
    auto err = f.step(type).check(params);
    REQUIRE_MESSAGE(err, type << " accepted " << to_json(params));
    CHECK(code_of(err) == errc::invalid_definition);
    return message_of(err);
  };
  CHECK(msg("ServiceNowGetRecord", {{"snow_url", "https://x"}, {"sys_id", "1"}}).find("table") != std::string::npos);
  CHECK(msg("ServiceNowGetRecord", {{"snow_url", "https://x"}, {"table", "inc/ident"}, {"sys_id", "1"}})
          .find("table name") != std::string::npos);
  CHECK(msg("ServiceNowGetRecord", {{"table", "incident"}, {"sys_id", "1"}})
        == "ServiceNowGetRecord: parameter \"snow_url\" (or \"instance\") is required");
  CHECK(msg("ServiceNowGetRecord", {{"snow_url", "https://a:b@x"}, {"table", "incident"}, {"sys_id", "1"}})
          .find("credentials") != std::string::npos);
  CHECK(msg("ServiceNowGetRecord", {{"snow_url", "https://x"}, {"table", "incident"}, {"sys_id", "a/b"}})
          .find("sys_id") != std::string::npos);
  CHECK(msg("ServiceNowCreateRecord", {{"snow_url", "https://x"}, {"table", "incident"}, {"data", "[1]"}})
          .find("\"data\"") != std::string::npos);
  CHECK(msg("ServiceNowUpdateRecord", {{"snow_url", "https://x"}, {"table", "incident"}, {"sys_id", "1"},
                                       {"data", json::object{}}, {"method", "POST"}})
          .find("PATCH or PUT") != std::string::npos);
  CHECK(msg("ServiceNowQueryRecords", {{"snow_url", "https://x"}, {"table", "incident"}, {"client_id", "c"}})
          .find("client_secret") != std::string::npos);
  CHECK(msg("ServiceNowQueryRecords", {{"snow_url", "https://x"}, {"table", "incident"}, {"client_id", "c"},
                                       {"client_secret", "s"}})
          .find("refresh_token") != std::string::npos);
  CHECK(msg("ServiceNowQueryRecords", {{"snow_url", "https://x"}, {"table", "incident"}, {"sysparm_limit", 0}})
          .find("sysparm_limit") != std::string::npos);
  CHECK_FALSE(f.step("ServiceNowQueryRecords").check({{"instance", "acme"}, {"table", "incident"}}));
}
