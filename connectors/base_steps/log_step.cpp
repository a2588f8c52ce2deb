#include "base_steps/base_steps.hpp"

#include <fmt/format.h>

#include "stepflow/runtime/log_level.hpp"

namespace stepflow::connectors {

namespace {

class log_step final : public step_type {
public:
  log_step() {
    info_.name = "Log";
    info_.friendly_name = "Log Message";
    info_.description = "Writes a message to the step log and passes its input data on.";
    info_.params = {
      {"message", "The text to log (${...} references allowed).", true, nullptr, "string"},
      {"level", "debug, info, warning or error (or 10/20/30/40).", false, "info", "string"},
    };
  }
  const step_info& info() const noexcept override { return info_; }
  bool completes_inline() const noexcept override { return true; }

  caf::error check(const json::object& params) const override {
    if (auto err = step_type::check(params))
      return err;
    if (auto it = params.find("level"); it != params.end() && !it->value().is_null()) {
      auto text = to_text(it->value());
      if (!parse_log_level(text))
        return make_error(errc::invalid_definition,
                          fmt::format("parameter \"level\": {} is not debug, info, warning or error",
                                      quote_json(text)));
    }
    return {};
  }

  void run(std::shared_ptr<step_context> ctx, step_done done) const override {
    int level = parse_log_level(ctx->param_string("level", "info")).value_or(log_level::info);
    ctx->log(level, ctx->param_string("message"));
    done(step_outcome::success(ctx->joined_input()));
  }

private:
  step_info info_;
};

} // namespace

std::shared_ptr<const step_type> make_log_step() {
  return std::make_shared<log_step>();
}

} // namespace stepflow::connectors
