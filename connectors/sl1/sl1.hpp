#pragma once
// The SL1 connector: native step types for ScienceLogic SL1's REST API
// (devices, organizations, events and their external ticket, alerts) and its
// GraphQL endpoint (cursor pagination over a connection), plus PowerFlow's
// Base Step "Query GraphQL" (QueryGQL). Every request goes through the shared
// asynchronous http_client with retries on. Documented in docs/connectors/sl1.md.
#include <memory>

#include "http_common/http_defaults.hpp"
#include "stepflow/connectors/connector.hpp"

namespace stepflow::connectors {

/// The "sl1" member of the connectors options; each is a default a step's
/// own parameter overrides: retries, timeout and the retry delays
/// (http_defaults), and:
struct sl1_connector_options : http_defaults {
  /// Page size of list requests (limit) and GraphQL pages (first) when a
  /// step sets none (1 to 10000). Default: 100.
  int page_size = 100;
  /// Most items a list or paginated GraphQL step collects when it sets no
  /// "max_items" (1 to 10,000,000). Default: 10000.
  int max_items = 10000;
};

/// Reads and validates the options (errors name the field: "sl1.retries: ...").
caf::expected<sl1_connector_options> parse_sl1_connector_options(const json::object& options);

/// Adds SL1GetDevices, SL1GetDevice, SL1GetOrganizations, SL1GetEvents,
/// SL1GetEvent, SL1UpdateEventTicket, SL1GetAlerts, SL1PostAlert, SL1GraphQL
/// and QueryGQL.
caf::error add_sl1_steps(step_registry& registry, const sl1_connector_options& options);

/// Validates setup.options once and builds the connector.
caf::expected<std::shared_ptr<connector>> make_sl1_connector(const connector_setup& setup);

} // namespace stepflow::connectors
