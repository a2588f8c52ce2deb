#pragma once
// Plumbing shared by the ServiceNow steps (internal): the connection
// parameters, sessions (endpoint plus auth, with OAuth tokens exchanged at
// /oauth_token.do and cached), one request through the shared http_client
// with QueryREST's failure convention, and a once-only completion.
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "servicenow/servicenow.hpp"
#include "stepflow/runtime/http_client.hpp"
#include "stepflow/runtime/json.hpp"
#include "stepflow/runtime/step.hpp"

namespace stepflow::connectors::snow_detail {

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

/// OAuth access tokens by (instance, client, grant), until shortly before
/// they expire. Thread-safe.
class token_cache {
public:
  std::optional<std::string> get(const std::string& key);
  void put(const std::string& key, std::string token, std::chrono::seconds expires_in);
  /// Forgets `token` under `key` (a 401 says it is no longer good).
  void drop(const std::string& key, const std::string& token);

private:
  struct entry {
    std::string token;
    std::chrono::steady_clock::time_point until;
  };
  std::mutex mtx_;
  std::map<std::string, entry, std::less<>> tokens_;
};

/// Where and how a step reaches its instance.
struct session {
  /// "https://acme.service-now.com", no trailing '/'.
  std::string base;
  /// TLS, proxy, timeouts, retry policy and auth; method, url and body empty.
  http_request proto;
  /// OAuth client credentials when tokens are exchanged (empty otherwise).
  std::string client_id, client_secret, refresh_token, user, password;
  std::string cache_key;
  token_cache* cache = nullptr;
  /// The bearer token came from the cache (a 401 then earns one fresh try).
  bool token_from_cache = false;
};
using session_ptr = std::shared_ptr<session>;

/// Appends a parameter description.
void add_param(std::vector<param_info>& params, std::string name, std::string type,
               json::value def, std::string description, bool required = false);

/// The connection and auth parameters (snow_url, instance, user, password,
/// oauth_token, client_id, client_secret, refresh_token, verify_ssl,
/// ca_file, proxy, timeout, retries).
void add_connection_params(std::vector<param_info>& params, const servicenow_connector_options& o);

/// Checks those parameters. Errors start with "<step>: ".
caf::error check_connection_params(const json::object& params, std::string_view step);

/// Checks that `name`, when present, is a number (or a string holding one)
/// within [lo, hi], whole when `whole`.
caf::error check_number(const json::object& params, std::string_view step, std::string_view name,
                        double lo, double hi, bool whole);

/// The key sent with a step's POSTs and PATCHes: "<run id>:<step name>[:<suffix>]".
std::string idempotency_key(const step_context& ctx, std::string_view suffix = {});

/// One request.
struct call {
  std::string method = "GET";
  /// Absolute path with any query, e.g. "/api/now/table/incident?sysparm_limit=1".
  std::string path;
  /// Sent as JSON when set.
  std::optional<json::value> body;
  std::string idempotency_key;
};

using ok_handler = std::function<void(http_response&&)>;

/// Builds the session a step's parameters describe, exchanging OAuth
/// credentials for a token first when needed (or taking a cached one), then
/// calls `ready`. Failures complete `fin`.
void open_session(const std::shared_ptr<step_context>& ctx, const servicenow_connector_options& o,
                  token_cache& cache, completion_ptr fin, std::function<void(session_ptr)> ready);

/// Sends `c` within `s`. A 2xx answer goes to `ok` (which must complete
/// `fin` in the end); a 401 on a cached OAuth token gets one fresh token and
/// one more try; anything else completes `fin` with a failure: a transport
/// error with the client's sentence; another status with "<METHOD> <path>
/// returned HTTP <code>[ after N attempts]" and {http_code, headers, body}.
void send(const std::shared_ptr<step_context>& ctx, const session_ptr& s, call c,
          completion_ptr fin, ok_handler ok);

json::value body_json(const http_response& res);
json::object failure_data(const http_response& res);
std::string_view path_only(std::string_view path) noexcept;
/// "?a=1&b=2" from pairs (values percent-encoded), "" when empty.
std::string query_string(const std::vector<std::pair<std::string, std::string>>& q);
/// The target of the Link header's rel="next", or empty.
std::string link_next(const http_headers& headers);

} // namespace stepflow::connectors::snow_detail
