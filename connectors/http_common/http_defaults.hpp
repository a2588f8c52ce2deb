#pragma once
// The options every HTTP connector (sl1, servicenow) shares. Each is a
// default that a step's own parameter overrides. Kept apart from
// http_common.hpp so that a connector's public header stays light.

namespace stepflow::connectors {

struct http_defaults {
  /// Retries per request when a step sets no "retries" (0 to 10). Default: 3.
  int retries = 3;
  /// Per-request timeout in seconds when a step sets no "timeout". Default: 60.
  double timeout_s = 60;
  /// Backoff base and cap between retries, in milliseconds. Defaults: 200, 30000.
  double retry_base_delay_ms = 200;
  double retry_max_delay_ms = 30'000;
};

} // namespace stepflow::connectors
