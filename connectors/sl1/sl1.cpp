// The SL1 connector's factory: options read and checked once.
#include "sl1/sl1.hpp"

#include <string_view>

#include "http_common/http_common.hpp"

namespace stepflow::connectors {

namespace {

constexpr std::string_view scope = "sl1";

class sl1_connector final : public connector {
public:
  explicit sl1_connector(sl1_connector_options opts) : opts_(opts) {}
  caf::error add_steps(step_registry& registry) override { return add_sl1_steps(registry, opts_); }

private:
  sl1_connector_options opts_;
};

} // namespace

caf::expected<sl1_connector_options> parse_sl1_connector_options(const json::object& options) {
  if (auto err = reject_unknown(options, scope,
                                {"retries", "timeout", "page_size", "max_items",
                                 "retry_base_delay_ms", "retry_max_delay_ms"}))
    return err;
  sl1_connector_options out;
  if (auto err = http_common::read_http_defaults(options, scope, out))
    return err;
  auto page = option_whole_number(options, scope, "page_size", out.page_size, 1, 10'000);
  if (!page)
    return std::move(page.error());
  auto max_items = option_whole_number(options, scope, "max_items", out.max_items, 1, 10'000'000);
  if (!max_items)
    return std::move(max_items.error());
  out.page_size = static_cast<int>(*page);
  out.max_items = static_cast<int>(*max_items);
  return out;
}

caf::expected<std::shared_ptr<connector>> make_sl1_connector(const connector_setup& setup) {
  static const json::object empty;
  auto opts = parse_sl1_connector_options(setup.options ? *setup.options : empty);
  if (!opts)
    return std::move(opts.error());
  return std::shared_ptr<connector>(std::make_shared<sl1_connector>(*opts));
}

} // namespace stepflow::connectors
