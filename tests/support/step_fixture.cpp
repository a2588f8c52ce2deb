#include "support/step_fixture.hpp"

#include <atomic>
#include <chrono>
#include <future>
#include <stdexcept>
#include <thread>

namespace stepflow::test {

const step_type& step_fixture::step(const char* name) {
  auto* s = registry.find(name);
  if (!s)
    throw std::runtime_error(std::string(name) + " is not registered");
  return *s;
}

std::shared_ptr<step_context> step_fixture::context(const char* type, json::object params,
                                                    std::string step_name) {
  auto ctx = std::make_shared<step_context>();
  ctx->run_id = "run-1";
  ctx->application = "app";
  ctx->step_name = std::move(step_name);
  ctx->step_type = type;
  ctx->params = std::move(params);
  ctx->log_level = 10;
  ctx->services.http = &client;
  return ctx;
}

step_outcome step_fixture::run(const char* type, json::object params,
                               std::shared_ptr<step_context>* keep, std::string step_name) {
  const auto& s = step(type);
  if (auto err = s.check(params))
    throw std::runtime_error(std::string(type) + " check() failed: " + message_of(err));
  auto ctx = context(type, std::move(params), std::move(step_name));
  if (keep)
    *keep = ctx;
  auto promise = std::make_shared<std::promise<step_outcome>>();
  auto future = promise->get_future();
  auto calls = std::make_shared<std::atomic<int>>(0);
  s.run(ctx, [promise, calls](step_outcome out) {
    if (++*calls == 1)
      promise->set_value(std::move(out));
  });
  if (future.wait_for(std::chrono::seconds(60)) != std::future_status::ready)
    throw std::runtime_error(std::string(type) + " did not call done() within 60 s");
  auto out = future.get();
  std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (calls->load() != 1)
    throw std::runtime_error(std::string(type) + " called done() "
                             + std::to_string(calls->load()) + " times");
  return out;
}

bool logged(const std::shared_ptr<step_context>& ctx, const std::string& needle) {
  bool found = false;
  for (auto& line : ctx->take_logs())
    found = found || line.message.find(needle) != std::string::npos;
  return found;
}

} // namespace stepflow::test
