// bench=template_*: Jinja2 template rendering and flow-control overhead.
// Cases:
//   template_manual1  the manual's Transform example 1 (device -> sys_name/sys_ip)
//   template_manual2  the manual's Transform example 2 (merge two steps with d.update)
//   template_loop1000 a for loop over 1,000 device records building JSON
//   flow_overhead     runs of StaticData -> Transform -> Condition -> Log vs
//                     StaticData -> Log -> Log -> Log, in process (memory store)
// Each case prints one line: bench=<case> key=value ...
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>

#include <fmt/format.h>

#include "stepflow/actors/engine.hpp"
#include "stepflow/connectors/registry.hpp"
#include "stepflow/runtime/cache.hpp"
#include "stepflow/runtime/clock.hpp"
#include "stepflow/runtime/kv_store.hpp"
#include "stepflow/runtime/template.hpp"

using namespace stepflow;
using clk = std::chrono::steady_clock;

namespace {

json::value parse_or_die(std::string_view text) {
  auto v = parse_json(text, "bench");
  if (!v) {
    std::fprintf(stderr, "%s\n", message_of(v.error()).c_str());
    std::exit(2);
  }
  return *v;
}

void bench_render(const char* name, const std::string& source, const json::object& ctx,
                  double seconds) {
  auto t = compile_template(source, name);
  if (!t) {
    std::fprintf(stderr, "%s\n", message_of(t.error()).c_str());
    std::exit(2);
  }
  size_t n = 0, bytes = 0;
  auto start = clk::now();
  auto deadline = start + std::chrono::duration<double>(seconds);
  while (clk::now() < deadline) {
    for (int i = 0; i < 50; ++i) {
      auto out = render(**t, ctx);
      if (!out) {
        std::fprintf(stderr, "%s\n", message_of(out.error()).c_str());
        std::exit(2);
      }
      bytes += out->size();
      ++n;
    }
  }
  double s = std::chrono::duration<double>(clk::now() - start).count();
  std::printf("bench=%s renders=%zu renders_per_s=%.0f us_per_render=%.2f out_bytes=%zu\n",
              name, n, n / s, s * 1e6 / n, bytes / n);
}

double runs_per_s(const step_registry& reg, const char* app_text, long runs) {
  auto app = parse_application(parse_or_die(app_text), "bench", "bench");
  if (!app) {
    std::fprintf(stderr, "%s\n", message_of(app.error()).c_str());
    std::exit(2);
  }
  auto shared = std::make_shared<const application>(std::move(*app));
  auto store = make_memory_store();
  cache c{*store, system_clock()};
  step_services svc{store.get(), &c, nullptr, &system_clock()};
  std::mutex m;
  std::condition_variable cv;
  long done = 0, in_flight = 0, failed = 0;
  auto start = clk::now();
  {
    actors::engine eng{actors::engine_options{}, svc};
    actors::run_observer obs;
    obs.on_done = [&](const run_record& r) {
      std::lock_guard<std::mutex> g{m};
      ++done;
      --in_flight;
      failed += r.status != run_status::success;
      cv.notify_all();
    };
    for (long i = 0; i < runs; ++i) {
      {
        std::unique_lock<std::mutex> g{m};
        cv.wait(g, [&] { return in_flight < 256; });
        ++in_flight;
      }
      auto plan = prepare_run(shared, nullptr, {}, -1, reg);
      run_record rec;
      rec.task_id = new_task_id();
      eng.start(std::move(*plan), std::move(rec), obs);
    }
    std::unique_lock<std::mutex> g{m};
    cv.wait(g, [&] { return done == runs; });
  }
  if (failed)
    std::fprintf(stderr, "%ld runs failed\n", failed);
  return runs / std::chrono::duration<double>(clk::now() - start).count();
}

} // namespace

int main(int argc, char** argv) {
  double seconds = argc > 1 ? std::atof(argv[1]) : 2.0;
  // Manual example 1.
  bench_render("template_manual1",
               "{% set output =\n{\"sys_name\": input[\"name\"],\n\"sys_ip\": input[\"ip\"]} %}"
               "{{output|tojson}}",
               parse_or_die(R"({"input": {"name": "pm-aio-11-154", "ip": "10.2.11.154"}})")
                 .as_object(),
               seconds);
  // Manual example 2.
  bench_render(
    "template_manual2",
    "{% set d=dict() %} {% set crupdate =\nd.update(\n{'changeRequests': GetCompletedCRs,\n"
    "'correlation': GetIncidents.0.correlation,\n'device_id': GetIncidents.0.events.0.device.id,\n"
    "'event_id': GetIncidents.0.events.0.event_id,\n'device_name': GetIncidents.0.events.0.device.name,\n"
    "'device_sysid': GetIncidents.0.events.0.device.sys_id,\n'found_cr': GetIncidents.0.sys_id in "
    "GetCompletedCRs,\n'incident_number': GetIncidents.0.number,\n'incident_sys_id': "
    "GetIncidents.0.sys_id }) %} {{ d|tojson }} ]",
    parse_or_die(R"({"GetCompletedCRs": [], "GetIncidents": [{"correlation": "Bus_Services_test+DEV+15+EVENT+3636",
      "number": "INC0010104", "sys_id": "06685154db35b300dc44f00fbf961933",
      "events": [{"event_id": "12503", "device": {"id": "15", "name": "enagley-cmdr-34-242",
                  "sys_id": "7b01681edb1df300dc44f00fbf9619e7"}}]}]})")
      .as_object(),
    seconds);
  // 1,000-item loop.
  json::array devices;
  for (int i = 0; i < 1000; ++i)
    devices.push_back(json::object{{"id", i}, {"name", fmt::format("device-{}", i)},
                                   {"class", i % 3 ? "Linux | Server" : "Cisco | Switch"},
                                   {"ip", fmt::format("10.0.{}.{}", i / 256, i % 256)}});
  bench_render("template_loop1000",
               "[{% for d in devices %}{\"name\": {{ d.name|tojson }}, \"ip\": \"{{ d.ip }}\", "
               "\"switch\": {{ 'true' if 'Switch' in d.class else 'false' }}}"
               "{{ ',' if not loop.last }}{% endfor %}]",
               json::object{{"devices", std::move(devices)}}, seconds);
  // Flow-control overhead in a run.
  step_registry reg;
  if (auto err = connectors::register_all(reg))
    return 2;
  long runs = 20000;
  double plain = runs_per_s(reg, R"({"steps": [
    {"name": "A", "file": "StaticData", "data": {"n": 3, "name": "x"}, "output_to": ["B"]},
    {"name": "B", "file": "Log", "message": "b", "output_to": ["C"]},
    {"name": "C", "file": "Log", "message": "c", "output_to": ["D"]},
    {"name": "D", "file": "Log", "message": "d"}]})", runs);
  double flow = runs_per_s(reg, R"({"steps": [
    {"name": "A", "file": "StaticData", "data": {"n": 3, "name": "x"}, "output_to": ["T"]},
    {"name": "T", "file": "Transform", "template": "{{ {'n': A.n + 1, 'label': A.name|upper}|tojson }}", "output_to": ["C"]},
    {"name": "C", "file": "Condition", "conditions": [{"step": "Yes", "condition": {"type": "numeric", "value": "${T.n}", "above": 3}}], "output_to": ["Yes"]},
    {"name": "Yes", "file": "Log", "message": "n is ${T.n}"}]})", runs);
  std::printf("bench=flow_overhead runs=%ld steps=4 plain_runs_per_s=%.0f flow_runs_per_s=%.0f "
              "overhead_us_per_run=%.1f\n",
              runs, plain, flow, (1e6 / flow) - (1e6 / plain));
  return 0;
}
