// Plugin loading: the only place that calls dlopen. Every failure becomes an
// errc::invalid_definition sentence naming the library.
#include "plugins/plugins.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "stepflow/connectors/plugin_api.hpp"

namespace stepflow::connectors {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view scope = "plugins";

caf::error plugin_error(const fs::path& file, std::string what) {
  return make_error(errc::invalid_definition,
                    fmt::format("plugin {}: {}", file.string(), std::move(what)));
}

class plugin_connector final : public connector {
public:
  explicit plugin_connector(std::vector<fs::path> files) : files_(std::move(files)) {}

  caf::error add_steps(step_registry& registry) override {
    for (const auto& f : files_)
      if (auto err = load(f, registry))
        return err;
    return {};
  }

private:
  caf::error load(const fs::path& file, step_registry& registry) {
    // RTLD_LOCAL: a plugin's own symbols stay its own. Never closed: its
    // step types live in the registry until the process ends.
    void* handle = ::dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      const char* why = ::dlerror();
      return plugin_error(file, fmt::format("cannot be loaded: {}", why ? why : "unknown reason"));
    }
    auto entry = reinterpret_cast<const stepflow_plugin_v1* (*)()>(
      ::dlsym(handle, STEPFLOW_PLUGIN_ENTRY));
    if (!entry)
      return plugin_error(file, "exports no " STEPFLOW_PLUGIN_ENTRY "(); is it a stepflow plugin?");
    const stepflow_plugin_v1* p = entry();
    if (!p)
      return plugin_error(file, STEPFLOW_PLUGIN_ENTRY "() returned nothing");
    // Only the first field is read before the version is known to match.
    if (p->abi_version != STEPFLOW_PLUGIN_ABI_VERSION)
      return plugin_error(file, fmt::format("was built for plugin ABI {}; this stepflow loads ABI {}",
                                            p->abi_version, STEPFLOW_PLUGIN_ABI_VERSION));
    if (!p->toolchain || std::strcmp(p->toolchain, STEPFLOW_PLUGIN_TOOLCHAIN) != 0)
      return plugin_error(file, fmt::format("was built with {}; this stepflow needs {} (rebuild "
                                            "the plugin against this stepflow's headers)",
                                            p->toolchain ? p->toolchain : "(unknown)",
                                            STEPFLOW_PLUGIN_TOOLCHAIN));
    if (!p->name || !*p->name || !p->version || !*p->version || !p->add_steps)
      return plugin_error(file, "has no name, no version or no add_steps function");
    if (auto it = loaded_.find(p->name); it != loaded_.end())
      return plugin_error(file, fmt::format("is plugin {} {}, which is already loaded from {}",
                                            quote_json(p->name), p->version, it->second));
    loaded_.emplace(p->name, file.string());
    const char* failed = nullptr;
    try {
      failed = p->add_steps(&registry);
    } catch (const std::exception& e) {
      return plugin_error(file, fmt::format("{} threw while adding its steps: {}", p->name, e.what()));
    } catch (...) {
      return plugin_error(file, fmt::format("{} threw while adding its steps", p->name));
    }
    if (failed)
      return plugin_error(file, fmt::format("{} {}: {}", p->name, p->version ? p->version : "",
                                            failed));
    return {};
  }

  std::vector<fs::path> files_;
  std::map<std::string, std::string> loaded_; ///< plugin name -> file
};

caf::error collect(const fs::path& dir, bool must_exist, std::vector<fs::path>& out) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    if (!must_exist)
      return {};
    return make_error(errc::invalid_definition,
                      fmt::format("plugin directory {} does not exist", dir.string()));
  }
  std::vector<fs::path> found;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file() && e.path().extension() == ".so")
      found.push_back(e.path());
  if (ec)
    return make_error(errc::io_error,
                      fmt::format("cannot list plugin directory {}: {}", dir.string(), ec.message()));
  std::sort(found.begin(), found.end());
  out.insert(out.end(), found.begin(), found.end());
  return {};
}

} // namespace

caf::expected<std::shared_ptr<connector>> make_plugin_connector(const connector_setup& setup) {
  const auto& o = *setup.options;
  if (auto err = reject_unknown(o, scope, {"dirs"}))
    return err;
  std::vector<fs::path> files;
  if (auto* dirs = o.if_contains("dirs")) {
    if (!dirs->is_array())
      return make_error(errc::invalid_definition, "plugins.dirs must be an array of folder names");
    for (const auto& d : dirs->get_array()) {
      if (!d.is_string())
        return make_error(errc::invalid_definition, "plugins.dirs must be an array of folder names");
      if (auto err = collect(std::string(d.get_string()), true, files))
        return err;
    }
  } else {
    if (const char* env = std::getenv("STEPFLOW_PLUGIN_DIR"); env && *env) {
      std::string_view rest{env};
      while (!rest.empty()) {
        auto colon = rest.find(':');
        auto part = rest.substr(0, colon);
        if (!part.empty())
          if (auto err = collect(std::string(part), true, files))
            return err;
        if (colon == std::string_view::npos)
          break;
        rest.remove_prefix(colon + 1);
      }
    }
    if (auto err = collect("/usr/lib/stepflow/plugins", false, files))
      return err;
  }
  return std::make_shared<plugin_connector>(std::move(files));
}

} // namespace stepflow::connectors
