#pragma once
// Plumbing shared by the HTTP connectors' steps (SL1, ServiceNow) and the
// HTTP base steps (internal to connectors/): the connection parameters every
// one of them takes (basic auth, TLS, proxy, timeout, retries), one request
// through the shared http_client with QueryREST's failure convention (one
// sentence, and {http_code, headers, body} as data), JSON bodies, and a
// once-only completion for steps that chain several requests.
//
// Library stepflow_connector_http_common. Everything here is thread-safe in
// the sense of the step interface: one step_context per call.
#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http_common/http_defaults.hpp"
#include "stepflow/runtime/http_client.hpp"
#include "stepflow/runtime/json.hpp"
#include "stepflow/runtime/step.hpp"

namespace stepflow::connectors::http_common {

/// Most retries a step or a connector may ask for.
constexpr int max_retries = 10;

// -- completion ---------------------------------------------------------------

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

// -- connector options ----------------------------------------------------------

/// Reads retries (whole, 0 to 10), timeout (seconds, 0.001 to 86400),
/// retry_base_delay_ms and retry_max_delay_ms (0 to 3,600,000) from a
/// connector's options into `out`, whose values are the defaults. Errors
/// (errc::invalid_definition) name the field: "sl1.retries must be ...";
/// `out` is left as it was then.
caf::error read_http_defaults(const json::object& options, std::string_view scope,
                              http_defaults& out);

// -- step parameters ----------------------------------------------------------


/// Appends user, username (its alias) and password.
void add_basic_auth_params(std::vector<param_info>& params);

/// Appends verify_ssl, verify (its alias), ca_file, proxy, timeout and
/// retries; timeout and retries default to the connector's.
void add_transport_params(std::vector<param_info>& params, const http_defaults& d);

/// The member `name` of `params` unless it is absent or null.
const json::value* present(const json::object& params, std::string_view name);

/// A number, or a string holding exactly one; NaN otherwise.
double number_of(const json::value& v);

/// Whether the authority of `url` carries "user[:password]@".
bool has_userinfo(std::string_view url);

/// Checks that `name`, when present, is a number (or a string holding one)
/// within [lo, hi], whole when `whole`: "<step>: parameter "<name>" must be
/// a[ whole] number from <lo> to <hi>".
caf::error check_number(const json::object& params, std::string_view step, std::string_view name,
                        double lo, double hi, bool whole);

/// Checks timeout (0.001 to 86400) and retries (whole, 0 to 10).
caf::error check_transport_params(const json::object& params, std::string_view step);

/// user (else username) and, when there is a user, password; both empty
/// when no user is set.
std::pair<std::string, std::string> basic_credentials(const step_context& ctx);

/// Sets verify_tls (off when verify_ssl or verify is false), ca_file, proxy,
/// timeout (a non-positive or absent one: d.timeout_s), connect_timeout (at
/// most 10 s) and retry (retries, else d.retries, with d's delays) from a
/// step's parameters.
void apply_transport_params(const step_context& ctx, const http_defaults& d, http_request& r);

/// The retry policy for `retries` retries (clamped to 0..10) and the
/// connector's delays.
retry_policy retries_policy(int retries, const http_defaults& d);

/// The "retries" parameter (0 to 10), else `fallback`.
int retries_param(const step_context& ctx, int fallback);

/// The key sent with a step's POSTs and PATCHes: "<run id>:<step name>[:<suffix>]".
std::string idempotency_key(const step_context& ctx, std::string_view suffix = {});

// -- requests -----------------------------------------------------------------

/// Where and how a step reaches its server.
struct endpoint {
  /// "https://host[:port]" plus any base path, without a trailing '/'; empty
  /// when a call's path is the whole URL.
  std::string base;
  /// Auth, TLS, proxy, timeouts and retry policy; method, url and body empty.
  http_request proto;
};

/// One request to an endpoint.
struct call {
  std::string method = "GET";
  /// Absolute path with any query, e.g. "/api/device?limit=10".
  std::string path;
  /// Sent as JSON (Content-Type application/json unless the endpoint sets
  /// one) when set.
  std::optional<json::value> body;
  std::string idempotency_key;
};

using ok_handler = std::function<void(http_response&&)>;

/// Sees every answer before its status is judged. Returns true when it took
/// the answer over; it then owns `c` and `ok` (it may move them into a new
/// send) and must see that `fin` is completed in the end.
using answer_hook = std::function<bool(const http_response& res, call& c, ok_handler& ok)>;

/// Sends `c` to `ep`, logging "<METHOD> <url>" (debug) and "HTTP <code> in
/// <ms> ms[ after N attempts]" (info). A 2xx answer goes to `ok`, which must
/// complete `fin` in the end (possibly after further calls); an exception it
/// throws fails the step with "<METHOD> <path>: <what>". Anything else
/// completes `fin` with a failure: a cancelled step or a missing HTTP client
/// before sending; a transport error with the client's sentence; another
/// status with "<METHOD> <path> returned HTTP <code>[ after N attempts]" and
/// failure_data as data. `hook`, when set, sees each answer first.
void send(const std::shared_ptr<step_context>& ctx, const endpoint& ep, call c,
          completion_ptr fin, ok_handler ok, answer_hook hook = {});

// -- answers and URLs ---------------------------------------------------------

/// The body parsed as JSON when it parses (declared JSON or not, like
/// requests' .json()), else its text ("" when empty).
json::value body_json(const http_response& res);

/// Response headers as an object; repeated names (in any case) are joined
/// with ", ".
json::object headers_json(const http_headers& headers);

/// {http_code, headers, body}: QueryREST's failure data.
json::object failure_data(const http_response& res);

/// " after N attempts" when more than one was made, else "".
std::string attempts_suffix(const http_response& res);

/// The path without its query, for messages.
std::string_view path_only(std::string_view path) noexcept;

/// "?a=1&b=2" from pairs (keys and values percent-encoded), "" when empty.
std::string query_string(const std::vector<std::pair<std::string, std::string>>& q);

/// prefix + relative with exactly one '/' between them. A relative part that
/// is only a query or fragment ("?a=1") is appended as-is.
std::string join_url(std::string_view prefix, std::string_view relative);

/// ASCII case-insensitive equality.
bool iequals(std::string_view a, std::string_view b) noexcept;

} // namespace stepflow::connectors::http_common
