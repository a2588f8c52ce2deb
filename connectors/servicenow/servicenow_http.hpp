#pragma once
// Plumbing of the ServiceNow steps (internal): the connection parameters and
// sessions (an endpoint plus auth, with OAuth tokens exchanged at
// /oauth_token.do and cached). Requests, completions and failure data come
// from http_common; the steps' .cpp file uses both namespaces.
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http_common/http_common.hpp"
#include "servicenow/servicenow.hpp"
#include "stepflow/runtime/http_client.hpp"
#include "stepflow/runtime/json.hpp"
#include "stepflow/runtime/step.hpp"

namespace stepflow::connectors::snow_detail {

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

/// Where and how a step reaches its instance: base is
/// "https://acme.service-now.com" (no trailing '/'), proto carries TLS,
/// proxy, timeouts, retry policy and auth.
struct session : http_common::endpoint {
  /// OAuth client credentials when tokens are exchanged (empty otherwise).
  std::string client_id, client_secret, refresh_token, user, password;
  std::string cache_key;
  token_cache* cache = nullptr;
  /// The bearer token came from the cache (a 401 then earns one fresh try).
  bool token_from_cache = false;
};
using session_ptr = std::shared_ptr<session>;

/// The connection and auth parameters (snow_url, instance, user, password,
/// oauth_token, client_id, client_secret, refresh_token, verify_ssl,
/// ca_file, proxy, timeout, retries).
void add_connection_params(std::vector<param_info>& params, const servicenow_connector_options& o);

/// Checks those parameters. Errors start with "<step>: ".
caf::error check_connection_params(const json::object& params, std::string_view step);

/// Builds the session a step's parameters describe, exchanging OAuth
/// credentials for a token first when needed (or taking a cached one), then
/// calls `ready`. Failures complete `fin`.
void open_session(const std::shared_ptr<step_context>& ctx, const servicenow_connector_options& o,
                  token_cache& cache, http_common::completion_ptr fin,
                  std::function<void(session_ptr)> ready);

/// Sends `c` within `s` as http_common::send does, except that a 401 on a
/// cached OAuth token gets one fresh token and one more try.
void send(const std::shared_ptr<step_context>& ctx, const session_ptr& s, http_common::call c,
          http_common::completion_ptr fin, http_common::ok_handler ok);

/// The target of the Link header's rel="next", or empty.
std::string link_next(const http_headers& headers);

} // namespace stepflow::connectors::snow_detail
