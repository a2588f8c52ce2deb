// The ServiceNow connector's factory: options read and checked once.
#include "servicenow/servicenow.hpp"

#include <string_view>

#include "http_common/http_common.hpp"

namespace stepflow::connectors {

namespace {

constexpr std::string_view scope = "servicenow";

class servicenow_connector final : public connector {
public:
  explicit servicenow_connector(servicenow_connector_options opts) : opts_(opts) {}
  caf::error add_steps(step_registry& registry) override {
    return add_servicenow_steps(registry, opts_);
  }

private:
  servicenow_connector_options opts_;
};

} // namespace

caf::expected<servicenow_connector_options>
parse_servicenow_connector_options(const json::object& options) {
  if (auto err = reject_unknown(options, scope,
                                {"retries", "timeout", "page_size", "max_records",
                                 "retry_base_delay_ms", "retry_max_delay_ms"}))
    return err;
  servicenow_connector_options out;
  if (auto err = http_common::read_http_defaults(options, scope, out))
    return err;
  auto page = option_whole_number(options, scope, "page_size", out.page_size, 1, 10'000);
  if (!page)
    return std::move(page.error());
  auto max_records = option_whole_number(options, scope, "max_records", out.max_records, 1,
                                         10'000'000);
  if (!max_records)
    return std::move(max_records.error());
  out.page_size = static_cast<int>(*page);
  out.max_records = static_cast<int>(*max_records);
  return out;
}

caf::expected<std::shared_ptr<connector>> make_servicenow_connector(const connector_setup& setup) {
  static const json::object empty;
  auto opts = parse_servicenow_connector_options(setup.options ? *setup.options : empty);
  if (!opts)
    return std::move(opts.error());
  return std::shared_ptr<connector>(std::make_shared<servicenow_connector>(*opts));
}

} // namespace stepflow::connectors
