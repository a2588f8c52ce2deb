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

std::shared_ptr<step_context> make_step_context(const char* type, json::object params,
                                                std::string step_name) {
  auto ctx = std::make_shared<step_context>();
  ctx->run_id = "run-1";
  ctx->application = "app";
  ctx->step_name = std::move(step_name);
  ctx->step_type = type;
  ctx->params = std::move(params);
  ctx->log_level = 10;
  return ctx;
}

started_step::started_step(const step_type& step, std::shared_ptr<step_context> ctx)
    : type_(ctx->step_type), promise_(std::make_shared<std::promise<step_outcome>>()),
      future_(promise_->get_future()), calls_(std::make_shared<std::atomic<int>>(0)) {
  step.run(std::move(ctx), [promise = promise_, calls = calls_](step_outcome out) {
    if (++*calls == 1)
      promise->set_value(std::move(out));
  });
}

step_outcome started_step::wait(std::chrono::seconds bound) {
  if (future_.wait_for(bound) != std::future_status::ready)
    throw std::runtime_error(type_ + " did not call done() within "
                             + std::to_string(bound.count()) + " s");
  auto out = future_.get();
  std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (calls_->load() != 1)
    throw std::runtime_error(type_ + " called done() " + std::to_string(calls_->load())
                             + " times");
  return out;
}

step_outcome run_step(const step_type& step, std::shared_ptr<step_context> ctx,
                      std::chrono::seconds bound) {
  return started_step{step, std::move(ctx)}.wait(bound);
}

std::shared_ptr<step_context> step_fixture::context(const char* type, json::object params,
                                                    std::string step_name) {
  auto ctx = make_step_context(type, std::move(params), std::move(step_name));
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
  return run_step(s, std::move(ctx));
}

json::object& obj(json::value& v) {
  if (!v.is_object())
    throw std::runtime_error("expected a JSON object, got " + to_json(v));
  return v.as_object();
}

bool logged(const std::shared_ptr<step_context>& ctx, const std::string& needle) {
  bool found = false;
  for (auto& line : ctx->take_logs())
    found = found || line.message.find(needle) != std::string::npos;
  return found;
}

} // namespace stepflow::test
