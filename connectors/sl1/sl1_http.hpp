#pragma once
// Plumbing shared by the SL1 connector's steps (internal): the common
// parameters, the endpoint they describe, one request through the shared
// http_client with QueryREST's failure convention, and a once-only
// completion for steps that chain several requests.
#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sl1/sl1.hpp"
#include "stepflow/runtime/http_client.hpp"
#include "stepflow/runtime/json.hpp"
#include "stepflow/runtime/step.hpp"

namespace stepflow::connectors::sl1_detail {

/// Calls a step's `done` exactly once, from whichever path gets there first.
class completion {
public:
  explicit completion(step_done done) : done_(std::move(done)) {}
  void operator()(step_outcome out);

private:
  step_done done_;
  std::atomic<bool> fired_{false};
};
using completion_ptr = std::shared_ptr<completion>;

/// Where and how a step reaches its server.
struct endpoint {
  /// "https://host[:port]" plus any base path, without a trailing '/'.
  std::string base;
  /// Auth, TLS, proxy, timeouts and retry policy; method, url and body empty.
  http_request proto;
};

/// Appends a parameter description.
void add_param(std::vector<param_info>& params, std::string name, std::string type,
               json::value def, std::string description, bool required = false);

/// The connection parameters of the SL1 steps (sl1_url, host, protocol,
/// port, user, password, verify_ssl, ca_file, proxy, timeout, retries).
void add_sl1_params(std::vector<param_info>& params, const sl1_connector_options& o);

/// Checks the connection parameters: a URL or a host, no credentials in the
/// URL, sane numbers. Errors start with "<step>: ".
caf::error check_sl1_params(const json::object& params, std::string_view step);

/// Checks that `name`, when present, is a number (or a string holding one)
/// within [lo, hi], whole when `whole`.
caf::error check_number(const json::object& params, std::string_view step, std::string_view name,
                        double lo, double hi, bool whole);

/// The SL1 endpoint a step's parameters describe.
caf::expected<endpoint> sl1_endpoint(const step_context& ctx, const sl1_connector_options& o);

/// The retry policy for `retries` retries and the connector's delays.
retry_policy retries_policy(int retries, const sl1_connector_options& o);

/// The "retries" parameter (0 to 10), else `fallback`.
int retries_param(const step_context& ctx, int fallback);

/// The key sent with a step's POSTs: "<run id>:<step name>[:<suffix>]".
std::string idempotency_key(const step_context& ctx, std::string_view suffix = {});

/// One request to an endpoint.
struct call {
  std::string method = "GET";
  /// Absolute path with any query, e.g. "/api/device?limit=10".
  std::string path;
  /// Sent as JSON (Content-Type application/json) when set.
  std::optional<json::value> body;
  std::string idempotency_key;
};

/// Sends `c`. A 2xx answer goes to `ok`, which must complete `fin` in the
/// end (possibly after further calls); an exception it throws fails the
/// step. Anything else completes `fin` with a failure: a transport error with
/// the client's sentence; another status with "<METHOD> <path> returned HTTP
/// <code>[ after N attempts]" and {http_code, headers, body} as data.
void send(const std::shared_ptr<step_context>& ctx, const endpoint& ep, call c,
          completion_ptr fin, std::function<void(http_response&&)> ok);

/// The body parsed as JSON when it parses, else its text ("" when empty).
json::value body_json(const http_response& res);

/// {http_code, headers, body}: QueryREST's failure data.
json::object failure_data(const http_response& res);

/// " after N attempts" when more than one was made, else "".
std::string attempts_suffix(const http_response& res);

/// The path without its query, for messages.
std::string_view path_only(std::string_view path) noexcept;

/// An object id from a number, a digit string, or a URI ("/api/device/12"
/// gives "12"); empty when the value is none of these.
std::string id_of(const json::value* v);

/// "?a=1&b=2" from pairs (values percent-encoded), "" when empty.
std::string query_string(const std::vector<std::pair<std::string, std::string>>& q);

/// The parameter `name` as an object: an object as is, a string holding a
/// JSON object parsed, null or absent as `{}`. Empty when it is neither.
std::optional<json::object> object_param(const step_context& ctx, std::string_view name);

/// The value at a dot path ("data.devices") inside `root`, or nullptr.
const json::value* at_path(const json::value& root, std::string_view path);

/// The first GraphQL error's message of a body with a non-empty "errors",
/// else empty.
std::optional<std::string> graphql_error(const json::value& body);

/// Adds SL1GraphQL and QueryGQL (sl1_graphql_steps.cpp).
caf::error add_graphql_steps(step_registry& registry, const sl1_connector_options& options);

} // namespace stepflow::connectors::sl1_detail
