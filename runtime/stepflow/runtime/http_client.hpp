#pragma once
// Asynchronous outbound HTTP: one I/O thread owns a curl multi handle; callers
// submit requests from any thread and get the answer through a callback that
// runs on the I/O thread (keep it short: post or anon_send elsewhere).
// Connections are reused per host. Never blocks the caller.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "stepflow/runtime/errc.hpp"

namespace stepflow {

using http_headers = std::vector<std::pair<std::string, std::string>>;

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
  /// Proxy URL ("http://host:port"), empty for none.
  std::string proxy;
  std::chrono::milliseconds connect_timeout{10'000};
  /// Whole-transfer timeout.
  std::chrono::milliseconds timeout{60'000};
};

struct http_response {
  long status = 0;
  /// Header names as received; later duplicates follow earlier ones.
  http_headers headers;
  std::string body;
};

using http_callback = std::function<void(caf::expected<http_response>)>;

/// Options of the HTTP client layer, read once at start-up.
struct http_client_options {
  /// Most transfers in flight at once; further ones wait. Default: 512.
  long max_in_flight = 512;
  /// Most open connections per host. Default: 256.
  long max_per_host = 256;
};

class http_client {
public:
  explicit http_client(http_client_options opts = {});
  /// Stops the I/O thread; pending callbacks get errc::cancelled.
  ~http_client();
  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;

  /// Starts `req`. `done` is called exactly once: with the response (any
  /// status code), or with errc::http_error naming the URL and curl's reason,
  /// errc::timeout, or errc::cancelled.
  void submit(http_request req, http_callback done);

  struct impl;

private:
  std::unique_ptr<impl> impl_;
};

} // namespace stepflow
