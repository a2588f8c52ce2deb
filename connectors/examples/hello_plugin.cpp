// An example stepflow plugin: one step type, "HelloPlugin", in a shared
// library. docs/plugins.md builds it up from an empty folder.
#include <memory>
#include <string>

#include "stepflow/connectors/plugin_api.hpp"

namespace {

using namespace stepflow;

class hello_step final : public step_type {
public:
  hello_step() {
    info_.name = "HelloPlugin";
    info_.friendly_name = "Hello (plugin)";
    info_.description = "Greets \"who\"; an example step loaded from a plugin.";
    info_.version = "1.0.0";
    info_.syncpack = "example_plugin";
    info_.params = {{"who", "Who to greet.", true, nullptr, "string"},
                    {"shout", "Upper-case the greeting.", false, false, "boolean"}};
  }

  const step_info& info() const noexcept override { return info_; }

  void run(std::shared_ptr<step_context> ctx, step_done done) const override {
    std::string greeting = "Hello, " + ctx->param_string("who") + "!";
    if (ctx->param_bool("shout", false))
      for (auto& c : greeting)
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    ctx->log(20, "greeted " + ctx->param_string("who"));
    json::object out{{"greeting", greeting}};
    if (auto in = ctx->joined_input(); !in.is_null())
      out["input"] = std::move(in);
    done(step_outcome::success(std::move(out)));
  }

private:
  step_info info_;
};

const char* add_steps(step_registry* registry) {
  if (registry->add(std::make_shared<hello_step>()))
    return "a step named HelloPlugin is already registered";
  return nullptr;
}

} // namespace

extern "C" const stepflow_plugin_v1* stepflow_plugin_entry(void) {
  static const stepflow_plugin_v1 plugin{STEPFLOW_PLUGIN_ABI_VERSION, STEPFLOW_PLUGIN_TOOLCHAIN,
                                         "example_plugin", "1.0.0", &add_steps};
  return &plugin;
}
