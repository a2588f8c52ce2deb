#pragma once
// The ServiceNow connector: native step types for the Table API
// (/api/now/table/{table}): create, read, update and query records, the last
// one following paging. Auth is basic, an OAuth bearer token, or OAuth
// client credentials plus a refresh token (or user and password) exchanged
// at /oauth_token.do; exchanged tokens are cached until shortly before they
// expire. Every request goes through the shared asynchronous http_client
// with retries on. Documented in docs/connectors/servicenow.md.
#include <memory>

#include "stepflow/connectors/connector.hpp"

namespace stepflow::connectors {

/// The "servicenow" member of the connectors options; each is a default a
/// step's own parameter overrides.
struct servicenow_connector_options {
  /// Retries per request when a step sets no "retries" (0 to 10). Default: 3.
  int retries = 3;
  /// Per-request timeout in seconds when a step sets no "timeout". Default: 60.
  double timeout_s = 60;
  /// sysparm_limit of each page of ServiceNowQueryRecords when the step sets
  /// none (1 to 10000). Default: 1000.
  int page_size = 1000;
  /// Most records ServiceNowQueryRecords collects when the step sets no
  /// "max_records" (1 to 10,000,000). Default: 10000.
  int max_records = 10000;
  /// Backoff base and cap between retries, in milliseconds. Defaults: 200, 30000.
  double retry_base_delay_ms = 200;
  double retry_max_delay_ms = 30'000;
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
