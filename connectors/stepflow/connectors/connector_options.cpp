// The option readers connector factories validate their options with
// (declared in connector.hpp; library stepflow_connector_api).
#include "stepflow/connectors/connector.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace stepflow::connectors {

caf::expected<double> option_number(const json::object& o, std::string_view scope,
                                    std::string_view key, double fallback) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null())
    return fallback;
  if (!it->value().is_number())
    return make_error(errc::invalid_definition,
                      fmt::format("{}.{} must be a number", scope, key));
  return it->value().to_number<double>();
}

caf::expected<std::string> option_string(const json::object& o, std::string_view scope,
                                         std::string_view key, std::string fallback) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null())
    return fallback;
  if (!it->value().is_string())
    return make_error(errc::invalid_definition,
                      fmt::format("{}.{} must be a string", scope, key));
  return std::string(it->value().get_string());
}

caf::expected<double> option_number_in(const json::object& o, std::string_view scope,
                                       std::string_view key, double fallback, double lo,
                                       double hi) {
  auto v = option_number(o, scope, key, fallback);
  if (!v)
    return v;
  if (!std::isfinite(*v) || *v < lo || *v > hi)
    return make_error(errc::invalid_definition,
                      fmt::format("{}.{} must be a number from {} to {}", scope, key, lo, hi));
  return v;
}

caf::expected<std::int64_t> option_whole_number(const json::object& o, std::string_view scope,
                                                std::string_view key, std::int64_t fallback,
                                                std::int64_t lo, std::int64_t hi) {
  auto v = option_number(o, scope, key, static_cast<double>(fallback));
  if (!v)
    return std::move(v.error());
  if (!std::isfinite(*v) || *v != std::floor(*v) || *v < static_cast<double>(lo)
      || *v > static_cast<double>(hi))
    return make_error(errc::invalid_definition,
                      fmt::format("{}.{} must be a whole number from {} to {}", scope, key, lo,
                                  hi));
  return static_cast<std::int64_t>(*v);
}

caf::error reject_unknown(const json::object& o, std::string_view scope,
                          std::initializer_list<std::string_view> known) {
  for (const auto& kv : o)
    if (std::find(known.begin(), known.end(), std::string_view(kv.key())) == known.end())
      return make_error(errc::invalid_definition,
                        fmt::format("{}: unknown option {}", scope,
                                    quote_json(std::string_view(kv.key()))));
  return {};
}

} // namespace stepflow::connectors
