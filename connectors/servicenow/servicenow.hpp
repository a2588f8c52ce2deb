#pragma once
// The ServiceNow connector: native step types for the Table API
// (/api/now/table/{table}): create, read, update and query records, the last
// one following paging. Auth is basic, an OAuth bearer token, or OAuth
// client credentials plus a refresh token (or user and password) exchanged
// at /oauth_token.do; exchanged tokens are cached until shortly before they
// expire. Every request goes through the shared asynchronous http_client
// with retries on. Documented in docs/connectors/servicenow.md.
#include <memory>

#include "http_common/http_defaults.hpp"
#include "stepflow/connectors/connector.hpp"

namespace stepflow::connectors {

/// The "servicenow" member of the connectors options; each is a default a
/// step's own parameter overrides: retries, timeout and the retry delays
/// (http_defaults), and:
struct servicenow_connector_options : http_defaults {
  /// sysparm_limit of each page of ServiceNowQueryRecords when the step sets
  /// none (1 to 10000). Default: 1000.
  int page_size = 1000;
  /// Most records ServiceNowQueryRecords collects when the step sets no
  /// "max_records" (1 to 10,000,000). Default: 10000.
  int max_records = 10000;
};

/// Reads and validates the options (errors name the field:
/// "servicenow.page_size: ...").
caf::expected<servicenow_connector_options>
parse_servicenow_connector_options(const json::object& options);

/// Adds ServiceNowCreateRecord, ServiceNowGetRecord, ServiceNowUpdateRecord
/// and ServiceNowQueryRecords; they share one OAuth token cache.
caf::error add_servicenow_steps(step_registry& registry,
                                const servicenow_connector_options& options);

/// Validates setup.options once and builds the connector.
caf::expected<std::shared_ptr<connector>> make_servicenow_connector(const connector_setup& setup);

} // namespace stepflow::connectors
