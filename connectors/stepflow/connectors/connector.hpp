#pragma once
// The connector interface. A connector provides step types and owns what
// they share (process pools, connection pools, blocking threads). Each one
// is made by a factory that validates its options once, at start-up; the
// factories are listed by name in one explicit list (connector.cpp).
//
// Library split: this header's interface and the option readers
// (connector_options.cpp) are `stepflow_connector_api`, which every
// connector library links; connector_list, connect_all and
// load_connector_options (connector.cpp) are `stepflow_connectors`.
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "stepflow/runtime/content.hpp"
#include "stepflow/runtime/json.hpp"
#include "stepflow/runtime/step.hpp"

namespace stepflow::connectors {

/// What a factory sees. Pointers are valid during the factory call only.
struct connector_setup {
  /// This connector's options: the "<name>" member of the connectors
  /// options (STEPFLOW_CONNECTORS file); an empty object when absent.
  const json::object* options = nullptr;
  /// The SyncPacks loaded for this process (for the steps they ship).
  const std::vector<syncpack_content>* syncpacks = nullptr;
};

class connector {
public:
  virtual ~connector() = default;
  /// Adds this connector's step types. Called once, right after the factory.
  virtual caf::error add_steps(step_registry& registry) = 0;
};

/// Validates the options (errors name the field: "sql.pool_size: ...") and
/// builds the connector.
using connector_factory =
  caf::expected<std::shared_ptr<connector>> (*)(const connector_setup& setup);

struct connector_entry {
  std::string_view name;
  connector_factory make;
};

/// Every connector, in one explicit list.
std::span<const connector_entry> connector_list();

/// Makes every connector from `options` (an object keyed by connector name;
/// an unknown name is an error) and adds their steps to `registry`. The
/// returned connectors must outlive every run.
caf::expected<std::vector<std::shared_ptr<connector>>>
connect_all(const json::object& options, const std::vector<syncpack_content>& syncpacks,
            step_registry& registry);

/// Reads the connectors options file named by $STEPFLOW_CONNECTORS (a JSON
/// object keyed by connector name); an empty object when it is unset.
caf::expected<json::object> load_connector_options();

/// Option readers for factories: the member `key` of `o` as the wanted type,
/// `fallback` when absent (or null), an errc::invalid_definition naming
/// "<scope>.<key>" when mistyped ("sql.threads must be a number").
caf::expected<double> option_number(const json::object& o, std::string_view scope,
                                    std::string_view key, double fallback);
caf::expected<std::string> option_string(const json::object& o, std::string_view scope,
                                         std::string_view key, std::string fallback);
/// option_number, and also an error when the value is not within [lo, hi]:
/// "<scope>.<key> must be a number from <lo> to <hi>".
caf::expected<double> option_number_in(const json::object& o, std::string_view scope,
                                       std::string_view key, double fallback, double lo,
                                       double hi);
/// option_number, and also an error when the value is not a whole number
/// within [lo, hi]: "<scope>.<key> must be a whole number from <lo> to <hi>".
caf::expected<std::int64_t> option_whole_number(const json::object& o, std::string_view scope,
                                                std::string_view key, std::int64_t fallback,
                                                std::int64_t lo, std::int64_t hi);
/// An error naming the first member of `o` not in `known`:
/// "<scope>: unknown option \"<name>\"".
caf::error reject_unknown(const json::object& o, std::string_view scope,
                          std::initializer_list<std::string_view> known);

} // namespace stepflow::connectors
