// Crash safety of `stepflow serve`, end to end with the real binary
// ($STEPFLOW_BINARY, else build/stepflow):
//
//   start the server; POST an application whose only step (QueryREST) POSTs
//   {"event": "${event_id}"} to a counting HTTP sink in this process; push
//   2,000 runs from several keep-alive client threads; after the 1,000th 202
//   kill -9 the server while the pushes are still going; restart it on the
//   same data directory; wait until nothing is queued or running; then
//
//   - every event whose run got a 202 reached the sink at least once
//     (at-least-once; duplicates are allowed, counted and printed);
//   - every acknowledged task is `success`;
//   - no finished run ran again: a task with attempt == 1 reached the sink
//     exactly once, and every task reached the sink at most `attempt` times;
//     the sink's answer recorded as the task's step data is the last hit of
//     its event (so nothing ran after the run was marked finished);
//   - the tasks with attempt >= 2 are exactly the runs the restart recovered.
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <doctest/doctest.h>
#include <fmt/format.h>

#include "stepflow/runtime/json.hpp"
#include "support/http_test_server.hpp"
#include "support/server_process.hpp"
#include "support/temp_dir.hpp"

using namespace stepflow;
using stepflow::test::http_test_server;
using stepflow::test::server_process;
using stepflow::test::temp_dir;
using stepflow::test::test_request;
using stepflow::test::test_response;

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

constexpr int total_runs = 2000;
constexpr int kill_after_acks = 1000;
constexpr int pusher_threads = 8;
constexpr const char* admin_password = "crash-test-pw";

std::string base64(std::string_view in) {
  static constexpr char tbl[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out += tbl[(v >> 18) & 63];
    out += tbl[(v >> 12) & 63];
    out += tbl[(v >> 6) & 63];
    out += tbl[v & 63];
  }
  if (i + 1 == in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    out += tbl[(v >> 18) & 63];
    out += tbl[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += tbl[(v >> 18) & 63];
    out += tbl[(v >> 12) & 63];
    out += tbl[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

/// A blocking keep-alive HTTP/1.1 client on one connection (Beast). Any
/// error closes the connection and yields nullopt; the next call reconnects.
class client {
public:
  explicit client(uint16_t port) : port_(port) {
    auth_ = "Basic " + base64(std::string("isadmin:") + admin_password);
  }

  struct reply {
    int status = 0;
    std::string body;
  };

  std::optional<reply> call(bhttp::verb method, const std::string& target,
                            const std::string& body = {}) {
    boost::system::error_code ec;
    if (!sock_.is_open()) {
      sock_.connect({asio::ip::make_address("127.0.0.1"), port_}, ec);
      if (ec) {
        sock_.close(ec);
        return std::nullopt;
      }
      // Bounded: a read never waits more than 30 s.
      timeval tv{30, 0};
      ::setsockopt(sock_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      ::setsockopt(sock_.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      buf_.clear();
    }
    bhttp::request<bhttp::string_body> req{method, target, 11};
    req.set(bhttp::field::host, "127.0.0.1");
    req.set(bhttp::field::authorization, auth_);
    if (!body.empty()) {
      req.set(bhttp::field::content_type, "application/json");
      req.body() = body;
    }
    req.keep_alive(true);
    req.prepare_payload();
    bhttp::write(sock_, req, ec);
    if (ec)
      return fail();
    bhttp::response<bhttp::string_body> res;
    bhttp::read(sock_, buf_, res, ec);
    if (ec)
      return fail();
    if (!res.keep_alive())
      sock_.close(ec);
    return reply{static_cast<int>(res.result_int()), std::move(res.body())};
  }

private:
  std::optional<reply> fail() {
    boost::system::error_code ec;
    sock_.close(ec);
    return std::nullopt;
  }
  uint16_t port_;
  std::string auth_;
  asio::io_context ioc_;
  tcp::socket sock_{ioc_};
  beast::flat_buffer buf_;
};

json::value parse(std::string_view text) {
  auto v = parse_json(text, "test");
  REQUIRE_MESSAGE(v, message_of(v.error()) << "\n--- text ---\n" << text);
  return std::move(*v);
}

/// Counts POSTs per event id; answers {"event": id, "hit": n}.
struct counting_sink {
  std::mutex mtx;
  std::unordered_map<std::string, int> hits;
  std::atomic<uint64_t> bad{0};

  test_response operator()(const test_request& req) {
    test_response res;
    auto body = parse_json(req.body, "sink request");
    if (req.method != "POST" || !body || !body->is_object()
        || !body->as_object().contains("event") || !body->at("event").is_string()) {
      ++bad;
      res.status = 400;
      res.body = R"({"error": "expected POST {\"event\": \"...\"}"})";
      return res;
    }
    std::string ev(body->at("event").as_string());
    int n = 0;
    {
      std::lock_guard<std::mutex> g{mtx};
      n = ++hits[ev];
    }
    res.body = to_json(json::object{{"event", ev}, {"hit", n}});
    // Keep runs in flight for a while so the kill interrupts some of them
    // after their POST arrived (the interesting case for duplicates).
    res.delay_ms = 20;
    return res;
  }

  std::unordered_map<std::string, int> snapshot() {
    std::lock_guard<std::mutex> g{mtx};
    return hits;
  }
};

struct ack {
  std::string event;
  std::string task_id;
};

/// Bounded wait until GET /status shows queued_and_running == 0.
bool wait_idle(uint16_t port, std::chrono::seconds limit, std::string& last) {
  client c{port};
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto r = c.call(bhttp::verb::get, "/api/v1/status"); r && r->status == 200) {
      last = r->body;
      auto v = parse(r->body);
      if (v.at("queued_and_running").to_number<int64_t>() == 0)
        return true;
    }
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

} // namespace

TEST_CASE("kill -9 halfway through 2,000 runs: every acknowledged run reaches the sink, "
          "finished runs never run again") {
  ::setenv("STEPFLOW_ADMIN_PASSWORD", admin_password, 1);
  ::setenv("STEPFLOW_SYNCPACKS_DIR", (stepflow::test::source_dir() + "/syncpacks").c_str(), 1);
  auto sink = std::make_shared<counting_sink>();
  http_test_server sink_server{[sink](const test_request& r) { return (*sink)(r); }};
  temp_dir dir;
  auto data_dir = dir.file("data");
  // Fewer workers than the pushers can feed: a backlog builds up, so the kill
  // finds runs queued, running, and done-but-not-yet-recorded.
  std::vector<std::string> opts{"--workers", "16"};

  auto t_start = std::chrono::steady_clock::now();
  std::vector<ack> acked;
  int refused_before_kill = 0;
  int attempted = 0;
  {
    server_process first{dir, {.data_dir = data_dir, .args = opts, .name = "first"}};
    client admin{first.port()};
    auto app = fmt::format(R"({{
      "name": "crash_sink",
      "app_variables": [{{"name": "event_id", "required": true, "value": null}}],
      "steps": [{{"name": "Post Event", "file": "QueryREST",
                  "prefix_url": "{}", "relative_url": "/sink", "method": "POST",
                  "payload": {{"event": "${{event_id}}"}}}}]
    }})",
                           sink_server.url());
    auto created = admin.call(bhttp::verb::post, "/api/v1/applications", app);
    REQUIRE(created);
    REQUIRE_MESSAGE(created->status == 201, created->body);

    std::atomic<int> next{0};
    std::atomic<int> acks{0};
    std::atomic<bool> killed{false};
    std::atomic<int> refused{0};
    std::atomic<int> tried{0};
    std::mutex acked_mtx;
    pid_t pid = first.pid();
    uint16_t port = first.port();
    std::vector<std::thread> pushers;
    for (int t = 0; t < pusher_threads; ++t)
      pushers.emplace_back([&, port, pid] {
        client c{port};
        std::vector<ack> mine;
        for (;;) {
          int i = next++;
          if (i >= total_runs)
            break;
          ++tried;
          auto ev = fmt::format("ev-{:04}", i);
          auto r = c.call(bhttp::verb::post, "/api/v1/applications/run",
                          fmt::format(R"({{"name": "crash_sink", "params": {{"event_id": "{}"}}}})",
                                      ev));
          if (!r) {
            if (killed)
              continue; // the server is gone: this push is not acknowledged
            ++refused; // should not happen before the kill
            continue;
          }
          if (r->status != 202) {
            if (!killed)
              ++refused;
            continue;
          }
          auto v = parse_json(r->body, "202 body");
          if (!v || !v->is_object() || !v->as_object().contains("task_id")) {
            ++refused;
            continue;
          }
          mine.push_back({ev, std::string(v->at("task_id").as_string())});
          if (++acks == kill_after_acks) {
            killed = true;
            ::kill(pid, SIGKILL);
          }
        }
        std::lock_guard<std::mutex> g{acked_mtx};
        acked.insert(acked.end(), mine.begin(), mine.end());
      });
    for (auto& th : pushers)
      th.join();
    refused_before_kill = refused.load();
    attempted = tried.load();
    REQUIRE_MESSAGE(killed.load(), "fewer than " << kill_after_acks << " runs were acknowledged; "
                                                 << refused.load() << " refused; stderr: "
                                                 << first.err());
    int status = first.reap();
    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGKILL);
  }
  auto hits_at_kill = sink->snapshot();
  MESSAGE(fmt::format("first server killed after {} acknowledgements ({} pushes tried, {} runs "
                      "had reached the sink)",
                      acked.size(), attempted, hits_at_kill.size()));
  CHECK(refused_before_kill == 0);
  CHECK(acked.size() >= size_t(kill_after_acks));

  server_process second{dir, {.data_dir = data_dir, .args = opts, .name = "second"}};
  std::string last_status;
  bool idle = wait_idle(second.port(), 120s, last_status);
  REQUIRE_MESSAGE(idle, "runs still queued or running after 120 s: " << last_status);

  // How many runs the restart recovered ("..., N queued runs recovered, ...").
  auto out = second.out();
  size_t recovered = 0;
  {
    auto pos = out.find(" queued runs recovered");
    REQUIRE_MESSAGE(pos != std::string::npos, out);
    auto start = out.rfind(' ', pos - 1);
    recovered = std::stoul(out.substr(start + 1, pos - start - 1));
  }

  auto hits = sink->snapshot();
  CHECK(sink->bad.load() == 0);
  client c{second.port()};
  size_t missing = 0, not_success = 0, rerun = 0, dup_events = 0, dup_posts = 0;
  size_t finished_twice = 0, over_attempt = 0, stale_data = 0;
  std::vector<std::string> dup_examples;
  for (const auto& a : acked) {
    auto it = hits.find(a.event);
    int n = it == hits.end() ? 0 : it->second;
    if (n == 0)
      ++missing;
    if (n > 1) {
      ++dup_events;
      dup_posts += size_t(n - 1);
      if (dup_examples.size() < 10)
        dup_examples.push_back(fmt::format("{}x{}", a.event, n));
    }
    auto r = c.call(bhttp::verb::get, "/api/v1/tasks/" + a.task_id);
    REQUIRE(r);
    REQUIRE_MESSAGE(r->status == 200, a.task_id << ": " << r->body);
    auto task = parse(r->body);
    INFO("task " << r->body);
    if (task.at("status").as_string() != "success") {
      ++not_success;
      continue;
    }
    auto attempt = task.at("attempt").to_number<int64_t>();
    if (attempt >= 2)
      ++rerun;
    // A run marked finished never runs again: attempt 1 means exactly one POST.
    if (attempt == 1 && n != 1)
      ++finished_twice;
    // Each attempt POSTs at most once.
    if (n > attempt)
      ++over_attempt;
    // The recorded step data is the sink's answer to the last POST of the
    // event: nothing reached the sink after the run was recorded finished.
    const auto& step = task.at("steps").as_array().at(0);
    if (!step.as_object().contains("data") || !step.at("data").is_object()
        || step.at("data").at("hit").to_number<int64_t>() != n
        || step.at("data").at("event").as_string() != a.event)
      ++stale_data;
  }
  MESSAGE(fmt::format("acknowledged={} recovered_at_restart={} acknowledged_rerun={} "
                      "events_at_sink={} duplicate_events={} duplicate_posts={} examples=[{}]",
                      acked.size(), recovered, rerun, hits.size(), dup_events, dup_posts,
                      fmt::join(dup_examples, " ")));
  CHECK(missing == 0);
  CHECK(not_success == 0);
  CHECK(finished_twice == 0);
  CHECK(over_attempt == 0);
  CHECK(stale_data == 0);
  // The kill found runs accepted and not finished (16 workers, a 20 ms sink).
  CHECK(recovered > 0);

  // Every run the server holds (acknowledged or committed just before the
  // kill) succeeded; the re-run ones are exactly those the restart recovered.
  auto listed = c.call(bhttp::verb::get, "/api/v1/tasks?app=crash_sink&status=all&limit=10000");
  REQUIRE(listed);
  REQUIRE(listed->status == 200);
  auto all = parse(listed->body);
  size_t all_rerun = 0, all_not_success = 0;
  for (const auto& t : all.as_array()) {
    if (t.at("attempt").to_number<int64_t>() >= 2)
      ++all_rerun;
    if (t.at("status").as_string() != "success")
      ++all_not_success;
  }
  CHECK(all.as_array().size() >= acked.size());
  CHECK(all.as_array().size() <= size_t(attempted));
  CHECK(all_not_success == 0);
  CHECK(all_rerun == recovered);
  // Every event at the sink belongs to a run the server recorded.
  CHECK(hits.size() <= all.as_array().size());

  CHECK(second.terminate(20s) == 0); // SIGTERM; SIGKILL (and a failure) after 20 s
  auto err = second.err();
  CHECK(err.find("terminate called") == std::string::npos);
  CHECK(err.find("Assertion") == std::string::npos);
  auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  MESSAGE(fmt::format("crash test took {:.1f} s", secs));
}
