// The SSH connector: validates its options, owns the blocking_pool the
// SSHCommand steps post to, and adds the steps.
#include "ssh/ssh.hpp"

#include <cstdint>
#include <utility>

#include "ssh/ssh_command_step.hpp"
#include "stepflow/runtime/blocking_pool.hpp"

namespace stepflow::connectors {

namespace {

constexpr std::string_view scope = "ssh";

class ssh_connector final : public connector {
public:
  explicit ssh_connector(const ssh_connector_options& opts)
    : pool_(std::make_shared<blocking_pool>(blocking_pool_options{opts.threads})),
      settings_{opts.max_output_bytes, opts.known_hosts_file} {
  }

  caf::error add_steps(step_registry& registry) override {
    for (auto name : {"SSHCommand", "RunSSHCommand"})
      if (auto err = registry.add(make_ssh_command_step(name, pool_, settings_)))
        return err;
    return {};
  }

private:
  std::shared_ptr<blocking_pool> pool_;
  ssh_step_settings settings_;
};

} // namespace

caf::expected<ssh_connector_options> parse_ssh_connector_options(const json::object& options) {
  if (auto err = reject_unknown(options, scope, {"threads", "max_output_bytes",
                                                 "known_hosts_file"}))
    return err;
  ssh_connector_options out;
  auto threads = option_whole_number(options, scope, "threads",
                                     static_cast<std::int64_t>(out.threads), 1, 256);
  if (!threads)
    return std::move(threads.error());
  out.threads = static_cast<std::size_t>(*threads);
  auto max_output = option_whole_number(options, scope, "max_output_bytes",
                                        static_cast<std::int64_t>(out.max_output_bytes), 1024,
                                        std::int64_t{1024} * 1024 * 1024);
  if (!max_output)
    return std::move(max_output.error());
  out.max_output_bytes = static_cast<std::size_t>(*max_output);
  auto known_hosts = option_string(options, scope, "known_hosts_file", "");
  if (!known_hosts)
    return std::move(known_hosts.error());
  out.known_hosts_file = std::move(*known_hosts);
  return out;
}

caf::expected<std::shared_ptr<connector>> make_ssh_connector(const connector_setup& setup) {
  static const json::object empty;
  auto opts = parse_ssh_connector_options(setup.options ? *setup.options : empty);
  if (!opts)
    return std::move(opts.error());
  return std::shared_ptr<connector>(std::make_shared<ssh_connector>(*opts));
}

} // namespace stepflow::connectors
