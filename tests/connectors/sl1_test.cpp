// The SL1 connector's steps against build/stepflow-sim (a real HTTP server in
// its own process) through a real http_client, plus a local test server where
// a request's exact shape matters.
#include <atomic>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "sl1/sl1.hpp"
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

using fixture = test::connector_fixture<connectors::sl1_connector_options, connectors::add_sl1_steps>;
using stepflow::test::obj;

} // namespace

TEST_CASE("the SL1 connector registers its steps and QueryGQL") {
  fixture f;
  for (auto name : {"SL1GetDevices", "SL1GetDevice", "SL1GetOrganizations", "SL1GetEvents",
                    "SL1GetEvent", "SL1UpdateEventTicket", "SL1GetAlerts", "SL1PostAlert",
                    "SL1GraphQL", "QueryGQL"}) {
    auto* s = f.registry.find(name);
    REQUIRE_MESSAGE(s, name);
    CHECK(s->info().name == name);
    CHECK_FALSE(s->info().params.empty());
  }
  // A second registration of the same names is refused.
  CHECK(connectors::add_sl1_steps(f.registry, {}));
}

TEST_CASE("the SL1 connector's options are validated once, naming the field") {
  auto ok = connectors::parse_sl1_connector_options(
    {{"retries", 0}, {"timeout", 2.5}, {"page_size", 50}, {"max_items", 10},
     {"retry_base_delay_ms", 1}, {"retry_max_delay_ms", 10}});
  REQUIRE(ok);
  CHECK(ok->retries == 0);
  CHECK(ok->timeout_s == 2.5);
  CHECK(ok->page_size == 50);
  CHECK(ok->max_items == 10);
  CHECK(ok->retry_base_delay_ms == 1);
  CHECK(ok->retry_max_delay_ms == 10);
  auto error = [](json::object o) {
    auto r = connectors::parse_sl1_connector_options(o);
    REQUIRE_FALSE(r);
    return message_of(r.error());
  };
  CHECK(error({{"retries", 11}}) == "sl1.retries must be a whole number from 0 to 10");
  CHECK(error({{"retries", 1.5}}) == "sl1.retries must be a whole number from 0 to 10");
  CHECK(error({{"timeout", 0}}) == "sl1.timeout must be a number from 0.001 to 86400");
  CHECK(error({{"page_size", "ten"}}) == "sl1.page_size must be a number");
  CHECK(error({{"max_items", 0}}) == "sl1.max_items must be a whole number from 1 to 10000000");
  CHECK(error({{"retry_max_delay_ms", -1}})
        == "sl1.retry_max_delay_ms must be a number from 0 to 3600000");
  CHECK(error({{"pagesize", 1}}) == "sl1: unknown option \"pagesize\"");
}

TEST_CASE("SL1GetDevices follows limit/offset paging up to max_items") {
  sim_process sim{"sl1", {"--devices", "250"}};
  fixture f;
  std::shared_ptr<step_context> ctx;
  auto out = f.run("SL1GetDevices", {{"sl1_url", sim.url() + "/api/"}, {"limit", 100}}, &ctx);
  REQUIRE_MESSAGE(out.ok, out.error);
  auto& o = obj(out.data);
  CHECK(o["total_matched"] == json::value(250));
  CHECK(o["total_returned"] == json::value(250));
  auto& rs = o["result_set"].as_array();
  REQUIRE(rs.size() == 250);
  std::set<std::string> uris;
  for (auto& r : rs)
    uris.insert(std::string(r.at("URI").as_string()));
  CHECK(uris.size() == 250);
  CHECK(rs[0].at("URI") == "/api/device/1");
  CHECK(rs[249].at("description") == "device-250");
  CHECK(logged(ctx, "GET /api/device: 250 results in 3 pages"));

  out = f.run("SL1GetDevices", {{"sl1_url", sim.url()}, {"limit", 100}, {"max_items", 120}}, &ctx);
  REQUIRE(out.ok);
  CHECK(obj(out.data)["result_set"].as_array().size() == 120);
  CHECK(obj(out.data)["total_returned"] == json::value(120));
  CHECK(logged(ctx, "stopped at max_items 120"));

  out = f.run("SL1GetDevices", {{"sl1_url", sim.url()}, {"offset", 240}});
  REQUIRE(out.ok);
  auto& tail = obj(out.data)["result_set"].as_array();
  REQUIRE(tail.size() == 10);
  CHECK(tail[0].at("URI") == "/api/device/241");
}

TEST_CASE("SL1GetDevices sends filters and extended_fetch") {
  sim_process sim{"sl1", {"--devices", "250"}};
  fixture f;
  auto out = f.run("SL1GetDevices", {{"sl1_url", sim.url()},
                                     {"filters", json::object{{"name.begins_with", "device-1"}}},
                                     {"limit", 40}});
  REQUIRE_MESSAGE(out.ok, out.error);
  // device-1, device-10..19, device-100..199
  CHECK(obj(out.data)["result_set"].as_array().size() == 111);
  CHECK(obj(out.data)["total_matched"] == json::value(111));

  out = f.run("SL1GetDevices", {{"host", sim.url().substr(7)}, {"protocol", "http"},
                                {"filters", json::object{{"filter.0.name.eq", "device-15"}}},
                                {"extended_fetch", true}});
  REQUIRE_MESSAGE(out.ok, out.error);
  auto& rs = obj(out.data)["result_set"];
  REQUIRE(rs.is_object());
  REQUIRE(rs.as_object().size() == 1);
  CHECK(rs.as_object()["/api/device/15"].at("ip") == "10.0.0.15");
}

TEST_CASE("SL1GetDevice reads a device by id or URI; a missing one fails with the HTTP data") {
  sim_process sim{"sl1", {}};
  fixture f;
  auto out = f.run("SL1GetDevice", {{"sl1_url", sim.url()}, {"device_id", 7}});
  REQUIRE_MESSAGE(out.ok, out.error);
  CHECK(obj(out.data)["name"] == "device-7");
  out = f.run("SL1GetDevice", {{"sl1_url", sim.url()}, {"device_id", "/api/device/8"}});
  REQUIRE(out.ok);
  CHECK(obj(out.data)["name"] == "device-8");

  out = f.run("SL1GetDevice", {{"sl1_url", sim.url()}, {"device_id", "9999"}});
  REQUIRE_FALSE(out.ok);
  CHECK(out.error == "GET /api/device/9999 returned HTTP 404");
  auto& d = obj(out.data);
  CHECK(d["http_code"] == json::value(404));
  CHECK(d["headers"].is_object());
  CHECK(d["body"].at("error").at("message") == "not found");
}

TEST_CASE("SL1GetOrganizations lists organizations") {
  sim_process sim{"sl1", {}};
  fixture f;
  auto out = f.run("SL1GetOrganizations", {{"sl1_url", sim.url()}, {"limit", 2}});
  REQUIRE_MESSAGE(out.ok, out.error);
  auto& rs = obj(out.data)["result_set"].as_array();
  REQUIRE(rs.size() == 3);
  CHECK(rs[2].at("description") == "Org 3");
}

TEST_CASE("events: list, read, and write the external ticket reference") {
  sim_process sim{"sl1", {"--events", "30"}};
  fixture f;
  auto out = f.run("SL1GetEvents", {{"sl1_url", sim.url()}, {"limit", 7}});
  REQUIRE_MESSAGE(out.ok, out.error);
  CHECK(obj(out.data)["result_set"].as_array().size() == 30);

  out = f.run("SL1GetEvent", {{"sl1_url", sim.url()}, {"event_id", 5}});
  REQUIRE_MESSAGE(out.ok, out.error);
  CHECK(obj(out.data)["message"] == "Event 5 on device-5");
  CHECK(obj(out.data)["ext_ticket_ref"] == "");

  out = f.run("SL1UpdateEventTicket", {{"sl1_url", sim.url()}, {"event_id", "/api/event/5"},
                                       {"ticket", "INC0010001"}});
  REQUIRE_MESSAGE(out.ok, out.error);
  CHECK(obj(out.data)["ext_ticket_ref"] == "INC0010001");
  CHECK(sim_stat(f.client, sim, "tickets_written") == 1);

  out = f.run("SL1GetEvent", {{"sl1_url", sim.url()}, {"event_id", "5"}});
  REQUIRE(out.ok);
  CHECK(obj(out.data)["ext_ticket_ref"] == "INC0010001");
  CHECK(obj(out.data)["message"] == "Event 5 on device-5");

  out = f.run("SL1GetEvent", {{"sl1_url", sim.url()}, {"event_id", 31}});
  REQUIRE_FALSE(out.ok);
  CHECK(out.error == "GET /api/event/31 returned HTTP 404");
}

TEST_CASE("SL1UpdateEventTicket POSTs {ext_ticket_ref} with an idempotency key from run and step") {
  std::mutex mtx;
  std::vector<test_request> seen;
  http_test_server server{[&](const test_request& r) {
    std::lock_guard<std::mutex> guard{mtx};
    seen.push_back(r);
    test_response res;
    res.body = R"({"ext_ticket_ref":"INC9"})";
    return res;
  }};
  fixture f;
  auto out = f.run("SL1UpdateEventTicket", {{"sl1_url", server.url()}, {"event_id", 12503},
                                            {"ext_ticket_ref", "INC9"}, {"ticket_uri", "https://snow/INC9"},
                                            {"user", "em7admin"}, {"password", "pw"}},
                   nullptr, "Write Ticket");
  REQUIRE_MESSAGE(out.ok, out.error);
  std::lock_guard<std::mutex> guard{mtx};
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].method == "POST");
  CHECK(seen[0].target == "/api/event/12503");
  CHECK(seen[0].header("Idempotency-Key") == "run-1:Write Ticket");
  CHECK(seen[0].header("Content-Type") == "application/json");
  CHECK(seen[0].header("Authorization") == "Basic ZW03YWRtaW46cHc=");
  CHECK(parse_json(seen[0].body, "sent").value()
        == parse_json(R"({"ext_ticket_ref":"INC9","force_ticket_uri":"https://snow/INC9"})", "want").value());
}

TEST_CASE("alerts: post one aligned to a device, then list and read it") {
  sim_process sim{"sl1", {}};
  fixture f;
  auto out = f.run("SL1PostAlert", {{"sl1_url", sim.url()}, {"message", "CPU at 99%"}, {"device_id", 3},
                                    {"value", "99"}});
  REQUIRE_MESSAGE(out.ok, out.error);
  CHECK(obj(out.data)["location"] == "/api/alert/1");
  CHECK(obj(out.data)["status"] == "created");

  out = f.run("SL1GetAlerts", {{"sl1_url", sim.url()}});
  REQUIRE_MESSAGE(out.ok, out.error);
  auto& rs = obj(out.data)["result_set"].as_array();
  REQUIRE(rs.size() == 1);
  CHECK(rs[0].at("description") == "CPU at 99%");

  auto alert = sim_call(f.client, sim, "/api/alert/1");
  CHECK(alert.at("aligned_resource") == "/api/device/3");
  CHECK(alert.at("force_ytype") == "0");
  CHECK(alert.at("value") == "99");
  CHECK(alert.at("threshold") == "");
}

TEST_CASE("SL1GraphQL follows cursor pagination over a connection") {
  sim_process sim{"sl1", {"--devices", "100"}};
  fixture f;
  const char* query = "query Devices($first: Int, $after: String) { devices(first: $first, after: $after) "
                      "{ edges { cursor node { id name } } pageInfo { hasNextPage matchCount } } }";
  std::shared_ptr<step_context> ctx;
  auto out = f.run("SL1GraphQL", {{"sl1_url", sim.url()}, {"query", query}, {"connection", "devices"},
                                  {"page_size", 40}, {"operation_name", "Devices"}},
                   &ctx);
  REQUIRE_MESSAGE(out.ok, out.error);
  auto& o = obj(out.data);
  CHECK(o["count"] == json::value(100));
  CHECK(o["has_next_page"] == json::value(false));
  CHECK(o["match_count"] == json::value(100));
  auto& nodes = o["nodes"].as_array();
  REQUIRE(nodes.size() == 100);
  std::set<std::string> ids;
  for (auto& n : nodes)
    ids.insert(std::string(n.at("id").as_string()));
  CHECK(ids.size() == 100);
  CHECK(nodes[99].at("name") == "device-100");
  CHECK(logged(ctx, "100 nodes of devices in 3 pages"));

  out = f.run("SL1GraphQL", {{"sl1_url", sim.url()}, {"query", query}, {"connection", "data.devices"},
                             {"page_size", 30}, {"max_items", 50}});
  REQUIRE(out.ok);
  CHECK(obj(out.data)["count"] == json::value(50));
  CHECK(obj(out.data)["has_next_page"] == json::value(true));

  // Without a connection: one request, the data member.
  out = f.run("SL1GraphQL", {{"sl1_url", sim.url()}, {"query", query},
                             {"variables", R"({"first": 3})"}});
  REQUIRE_MESSAGE(out.ok, out.error);
  CHECK(out.data.at("devices").at("edges").as_array().size() == 3);
}

TEST_CASE("GraphQL errors without data fail the step; beside data they are warnings") {
  std::atomic<int> calls{0};
  http_test_server server{[&](const test_request&) {
    test_response r;
    r.body = ++calls == 1 ? R"({"errors":[{"message":"Cannot query field \"nme\""}]})"
                          : R"({"data":{"x":1},"errors":[{"message":"partial"}]})";
    return r;
  }};
  fixture f;
  auto out = f.run("SL1GraphQL", {{"sl1_url", server.url()}, {"query", "{ nme }"}});
  REQUIRE_FALSE(out.ok);
  CHECK(out.error == "GraphQL error: Cannot query field \"nme\"");
  CHECK(out.data.at("errors").is_array());

  std::shared_ptr<step_context> ctx;
  out = f.run("QueryGQL", {{"prefix_url", server.url()}, {"query", "{ x }"}}, &ctx);
  REQUIRE_MESSAGE(out.ok, out.error);
  CHECK(out.data.at("data").at("x") == 1);
  CHECK(logged(ctx, "GraphQL returned data with errors: partial"));
}

TEST_CASE("QueryGQL posts query and variables to prefix_url + relative_url") {
  sim_process sim{"sl1", {"--auth", "em7admin:s3cret"}};
  fixture f;
  auto out = f.run("QueryGQL", {{"prefix_url", sim.url()}, {"user", "em7admin"}, {"password", "s3cret"},
                                {"query", "query($n: Int) { devices(first: $n) { edges { node { id } } } }"},
                                {"variables", json::object{{"n", 4}}}});
  REQUIRE_MESSAGE(out.ok, out.error);
  CHECK(out.data.at("data").at("devices").at("edges").as_array().size() == 4);

  out = f.run("QueryGQL", {{"prefix_url", sim.url()}, {"relative_url", "/graphql-nowhere"},
                           {"user", "em7admin"}, {"password", "s3cret"}, {"query", "{ devices }"}});
  REQUIRE_FALSE(out.ok);
  CHECK(out.error == "POST " + sim.url() + "/graphql-nowhere returned HTTP 404");
}

TEST_CASE("injected 5xx answers are retried until success; retries 0 turns that off") {
  sim_process sim{"sl1", {}};
  fixture f;
  sim_call(f.client, sim, "/_fail", R"({"status": 503, "count": 2})");
  std::shared_ptr<step_context> ctx;
  auto out = f.run("SL1GetDevice", {{"sl1_url", sim.url()}, {"device_id", 2}}, &ctx);
  REQUIRE_MESSAGE(out.ok, out.error);
  CHECK(obj(out.data)["name"] == "device-2");
  CHECK(sim_stat(f.client, sim, "injected") == 2);
  CHECK(logged(ctx, " after 3 attempts"));
  CHECK(obj(out.data)["ip"] == "10.0.0.2");

  // A POST is replayed too: it carries an idempotency key.
  sim_call(f.client, sim, "/_fail", R"({"status": 502, "count": 1})");
  out = f.run("SL1PostAlert", {{"sl1_url", sim.url()}, {"message", "m"}, {"aligned_resource", "/api/device/1"}});
  REQUIRE_MESSAGE(out.ok, out.error);
  CHECK(sim_stat(f.client, sim, "alerts") == 1);
  CHECK(sim_stat(f.client, sim, "injected") == 3);

  sim_call(f.client, sim, "/_fail", R"({"status": 503, "count": 1, "retry_after": "0"})");
  out = f.run("SL1GetDevice", {{"sl1_url", sim.url()}, {"device_id", 2}, {"retries", 0}});
  REQUIRE_FALSE(out.ok);
  CHECK(out.error == "GET /api/device/2 returned HTTP 503");

  sim_call(f.client, sim, "/_fail", R"({"status": 500, "count": 5})");
  out = f.run("SL1GetDevice", {{"sl1_url", sim.url()}, {"device_id", 2}, {"retries", 2}});
  REQUIRE_FALSE(out.ok);
  CHECK(out.error == "GET /api/device/2 returned HTTP 500 after 3 attempts");
  CHECK(obj(out.data)["http_code"] == json::value(500));
}

TEST_CASE("a 401 fails at once and never shows the password") {
  sim_process sim{"sl1", {"--auth", "em7admin:right-pass"}};
  fixture f;
  std::shared_ptr<step_context> ctx;
  auto out = f.run("SL1GetDevice", {{"sl1_url", sim.url()}, {"device_id", 1}, {"user", "em7admin"},
                                    {"password", "wrong-pass-123"}},
                   &ctx);
  REQUIRE_FALSE(out.ok);
  CHECK(out.error == "GET /api/device/1 returned HTTP 401");
  CHECK(obj(out.data)["http_code"] == json::value(401));
  CHECK(sim_stat(f.client, sim, "unauthorized") == 1); // not retried
  CHECK(out.error.find("wrong-pass-123") == std::string::npos);
  CHECK(to_json(out.data).find("wrong-pass-123") == std::string::npos);
  for (auto& line : ctx->take_logs())
    CHECK(line.message.find("wrong-pass-123") == std::string::npos);

  out = f.run("SL1GetDevice", {{"sl1_url", sim.url()}, {"device_id", 1}, {"username", "em7admin"},
                               {"password", "right-pass"}});
  REQUIRE_MESSAGE(out.ok, out.error);
}

TEST_CASE("a closed port is retried and reported with the attempt count") {
  std::string url;
  {
    http_test_server gone{[](const test_request&) { return test_response{}; }};
    url = gone.url();
  }
  fixture f;
  auto out = f.run("SL1GetOrganizations", {{"sl1_url", url}, {"retries", 2}});
  REQUIRE_FALSE(out.ok);
  CHECK(out.error.starts_with("GET " + url + "/api/organization?limit=100&offset=0: "));
  CHECK(out.error.ends_with("(after 3 attempts)"));
}

TEST_CASE("SL1 check() names the bad parameter") {
  fixture f;
  auto msg = [&](const char* type, json::object params) {
    auto err = f.step(type).check(params);
    REQUIRE_MESSAGE(err, type << " accepted " << to_json(params));
    CHECK(code_of(err) == errc::invalid_definition);
    return message_of(err);
  };
  CHECK(msg("SL1GetDevices", {}) == "SL1GetDevices: parameter \"sl1_url\" (or \"host\") is required");
  CHECK(msg("SL1GetDevices", {{"sl1_url", "https://u:p@sl1"}}).find("must not carry credentials")
        != std::string::npos);
  CHECK(msg("SL1GetDevices", {{"sl1_url", "sl1.example.com"}}).find("http:// or https://") != std::string::npos);
  CHECK(msg("SL1GetDevices", {{"sl1_url", "https://sl1"}, {"retries", 11}}).find("\"retries\"") != std::string::npos);
  CHECK(msg("SL1GetDevices", {{"sl1_url", "https://sl1"}, {"filters", "x"}}).find("\"filters\"") != std::string::npos);
  CHECK(msg("SL1GetDevice", {{"sl1_url", "https://sl1"}}).find("device_id") != std::string::npos);
  CHECK(msg("SL1GetDevice", {{"sl1_url", "https://sl1"}, {"device_id", json::object{}}}).find("device_id")
        != std::string::npos);
  CHECK(msg("SL1UpdateEventTicket", {{"sl1_url", "https://sl1"}, {"event_id", 1}}).find("\"ticket\"")
        != std::string::npos);
  CHECK(msg("SL1UpdateEventTicket", {{"sl1_url", "https://sl1"}, {"event_id", 1}, {"ticket", "x"},
                                     {"method", "DELETE"}})
          .find("POST or PUT") != std::string::npos);
  CHECK(msg("SL1PostAlert", {{"sl1_url", "https://sl1"}, {"message", "m"}}).find("device_id") != std::string::npos);
  CHECK(msg("SL1GraphQL", {{"sl1_url", "https://sl1"}, {"query", " "}}).find("\"query\"") != std::string::npos);
  CHECK(msg("SL1GraphQL", {{"sl1_url", "https://sl1"}, {"query", "{x}"}, {"variables", "[1]"}})
          .find("\"variables\"") != std::string::npos);
  CHECK(msg("QueryGQL", {{"query", "{x}"}}).find("prefix_url") != std::string::npos);
  CHECK_FALSE(f.step("SL1GetDevices").check({{"host", "sl1.example.com"}, {"port", 8443}}));
}
