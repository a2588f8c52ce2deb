#include "base_steps/base_steps.hpp"

namespace stepflow::connectors {

namespace {

class static_data_step final : public step_type {
public:
  static_data_step() {
    info_.name = "StaticData";
    info_.friendly_name = "Static Data";
    info_.description = "Outputs the JSON value of its \"data\" parameter for the next steps.";
    info_.params = {{"data", "The value to output (any JSON; ${...} references allowed).",
                     false, nullptr, "any"}};
  }
  const step_info& info() const noexcept override { return info_; }
  bool completes_inline() const noexcept override { return true; }
  void run(std::shared_ptr<step_context> ctx, step_done done) const override {
    auto* d = ctx->param("data");
    done(step_outcome::success(d ? *d : json::value(nullptr)));
  }

private:
  step_info info_;
};

} // namespace

std::shared_ptr<const step_type> make_static_data_step() {
  return std::make_shared<static_data_step>();
}

} // namespace stepflow::connectors
