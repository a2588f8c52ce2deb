// The SL1 connector's factory: options read and checked once.
#include "sl1/sl1.hpp"

#include <cmath>
#include <string_view>

#include <fmt/format.h>

namespace stepflow::connectors {

namespace {

constexpr std::string_view scope = "sl1";

/// The option `key` as a number within [lo, hi] (whole when `whole`).
caf::expected<double> bounded(const json::object& o, std::string_view key, double fallback,
                              double lo, double hi, bool whole) {
  auto v = option_number(o, scope, key, fallback);
  if (!v)
    return v;
  if (!std::isfinite(*v) || *v < lo || *v > hi || (whole && *v != std::floor(*v)))
    return make_error(errc::invalid_definition,
                      fmt::format("{}.{} must be a{} number from {} to {}", scope, key,
                                  whole ? " whole" : "", lo, hi));
  return v;
}

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
  auto retries = bounded(options, "retries", out.retries, 0, 10, true);
  if (!retries)
    return std::move(retries.error());
  auto timeout = bounded(options, "timeout", out.timeout_s, 0.001, 86'400, false);
  if (!timeout)
    return std::move(timeout.error());
  auto page = bounded(options, "page_size", out.page_size, 1, 10'000, true);
  if (!page)
    return std::move(page.error());
  auto max_items = bounded(options, "max_items", out.max_items, 1, 10'000'000, true);
  if (!max_items)
    return std::move(max_items.error());
  auto base = bounded(options, "retry_base_delay_ms", out.retry_base_delay_ms, 0, 3'600'000, false);
  if (!base)
    return std::move(base.error());
  auto cap = bounded(options, "retry_max_delay_ms", out.retry_max_delay_ms, 0, 3'600'000, false);
  if (!cap)
    return std::move(cap.error());
  out.retries = static_cast<int>(*retries);
  out.timeout_s = *timeout;
  out.page_size = static_cast<int>(*page);
  out.max_items = static_cast<int>(*max_items);
  out.retry_base_delay_ms = *base;
  out.retry_max_delay_ms = *cap;
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
