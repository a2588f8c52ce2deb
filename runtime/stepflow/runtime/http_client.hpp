#pragma once
// Asynchronous outbound HTTP: one I/O thread owns a curl multi handle; callers
// submit requests from any thread and get the answer through a callback that
// runs on the I/O thread (keep it short: post or anon_send elsewhere).
// Connections are reused per host. Never blocks the caller.
//
// Retries (opt-in per request through http_request::retry) are scheduled on
// the same I/O thread with a timer, never by sleeping a thread; a client-wide
// retry budget keeps a dead far side from multiplying the load.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "stepflow/runtime/errc.hpp"

namespace stepflow {

using http_headers = std::vector<std::pair<std::string, std::string>>;

/// When and how a request is sent again. A request is retried when the
/// attempt failed in a retryable way, attempts remain, and the client's retry
/// budget (http_client_options::budget) allows one more retry:
/// - the request was never sent (refused connection, DNS failure, connect
///   timeout): always, whatever the method;
/// - otherwise only if the request is safe to replay: an idempotent method
///   (GET, HEAD, OPTIONS, TRACE, PUT, DELETE), or any method when
///   http_request::idempotency_key is set. POST and PATCH without a key are
///   never replayed once sent. A replayable request is retried on a timeout,
///   an empty reply or a reset connection before any response header, and on
///   HTTP 429, 502, 503, 504 (and 500 when `retry_500`).
struct retry_policy {
  /// Attempts in all, the first one included; 1 never retries. Default: 1
  /// (the raw client's behaviour). Connectors use e.g. 4.
  int max_attempts = 1;
  /// Backoff before retry n (n = 1, 2, ...) is a random time in
  /// [0, min(max_delay, base_delay * 2^(n-1))] ("full jitter"). Default: 200 ms.
  std::chrono::milliseconds base_delay{200};
  /// Upper bound of any wait, including one asked for by Retry-After.
  /// Default: 30 s.
  std::chrono::milliseconds max_delay{30'000};
  /// Also retry HTTP 500 (replayable requests only). Default: true.
  bool retry_500 = true;
  /// A Retry-After header (delta seconds or an HTTP date) on a retryable
  /// response sets the wait instead of the backoff, capped by max_delay.
  /// Default: true.
  bool honour_retry_after = true;
  /// Header that carries http_request::idempotency_key on every attempt.
  /// Default: "Idempotency-Key".
  std::string idempotency_header = "Idempotency-Key";
};

struct http_request {
  std::string method = "GET";
  std::string url;
  http_headers headers;
  std::string body;
  /// Basic auth when `user` is not empty.
  std::string user;
  std::string password;
  /// "Authorization: Bearer <token>" when not empty.
  std::string bearer_token;
  /// Verify the peer's certificate and host name. Default: on.
  bool verify_tls = true;
  /// PEM file of CA certificates to verify the peer with; empty: the
  /// client's ca_file option, else the system's bundle.
  std::string ca_file;
  /// Proxy URL ("http://host:port") for this request, used as given (no_proxy
  /// does not apply to it); empty: the client's default (see
  /// http_client_options::proxy).
  std::string proxy;
  std::chrono::milliseconds connect_timeout{10'000};
  /// Whole-transfer timeout of each attempt.
  std::chrono::milliseconds timeout{60'000};
  /// Retries; the default makes one attempt only.
  retry_policy retry;
  /// When not empty, sent as retry.idempotency_header on every attempt, and
  /// makes a non-idempotent method (POST, PATCH) replayable.
  std::string idempotency_key;
};

struct http_response {
  long status = 0;
  /// Header names as received; later duplicates follow earlier ones.
  http_headers headers;
  std::string body;
  /// Attempts made for this response, the first one included.
  int attempts = 1;
};

using http_callback = std::function<void(caf::expected<http_response>)>;

/// The client-wide retry budget: within any `window`, retries may not
/// exceed `ratio` times the requests first sent in it, plus `min_retries`.
/// A retry the budget refuses is not made: the caller gets the last
/// attempt's answer.
struct retry_budget_options {
  /// Retries allowed per request first sent. Default: 0.2 (20 %).
  double ratio = 0.2;
  /// Retries always allowed per window, whatever the traffic. Default: 10.
  double min_retries = 10;
  /// Sliding window (kept in ten slots). Default: 10 s.
  std::chrono::milliseconds window{10'000};
};

/// Options of the HTTP client layer, read once at start-up.
///
/// Proxy precedence, per request: http_request::proxy when set (used as
/// given); else `proxy`; else, when `use_environment_proxy`, the environment
/// as read at construction: https_proxy / HTTPS_PROXY for https URLs,
/// http_proxy / HTTP_PROXY for http URLs, then all_proxy / ALL_PROXY (lower
/// case first). Hosts matching `no_proxy` (or, when that is empty and
/// `use_environment_proxy`, no_proxy / NO_PROXY) skip these defaults: a
/// comma-separated list of host names (matching the host and its
/// subdomains), IP addresses, or "*" for every host. libcurl's own reading
/// of the environment is always turned off, so only these rules apply.
struct http_client_options {
  /// Most transfers in flight at once; further ones wait. Default: 512.
  long max_in_flight = 512;
  /// Most open connections per host. Default: 256.
  long max_per_host = 256;
  /// Default proxy URL for every request; empty: from the environment.
  std::string proxy;
  /// Comma-separated hosts reached without the default proxy; empty: from
  /// the environment.
  std::string no_proxy;
  /// Read HTTPS_PROXY / HTTP_PROXY / ALL_PROXY / NO_PROXY when `proxy` /
  /// `no_proxy` are empty. Default: true.
  bool use_environment_proxy = true;
  /// Default PEM file of CA certificates; empty: the system's bundle.
  std::string ca_file;
  /// Limits retries across all requests of this client.
  retry_budget_options budget;
};

class http_client {
public:
  explicit http_client(http_client_options opts = {});
  /// Stops the I/O thread; pending callbacks (in flight, queued or waiting
  /// to be retried) get errc::cancelled.
  ~http_client();
  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;

  /// Starts `req`. `done` is called exactly once, after the last attempt:
  /// with the response (any status code; http_response::attempts says how
  /// many were made), or with errc::http_error naming the method, the URL
  /// and curl's reason, errc::timeout, or errc::cancelled. When the policy
  /// allows more than one attempt, the error sentence ends with
  /// "(after N attempts)", plus "; retry budget exhausted" when the budget
  /// stopped the retries.
  void submit(http_request req, http_callback done);

  struct impl;

private:
  std::unique_ptr<impl> impl_;
};

/// Helpers for code built on the client.

/// The first header named `name` (case-insensitive), or nullptr.
const std::string* find_header(const http_headers& headers, std::string_view name) noexcept;

/// Percent-encodes everything but RFC 3986 unreserved characters, for query
/// values and path segments.
std::string url_encode(std::string_view s);

/// The delay a Retry-After value asks for: delta seconds, or an HTTP date
/// relative to now (a past date gives 0). Empty when it is neither.
std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value);

} // namespace stepflow
