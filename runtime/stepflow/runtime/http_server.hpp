#pragma once
// Inbound HTTP/1.1 (Boost.Beast, kept out of this header): a fixed pool of
// I/O threads runs one io_context; each connection reads one request at a
// time (pipelined requests wait in the buffer and are answered in order),
// hands it to the handler, and writes the reply when the handler answers
// through its responder, from any thread. Keep-alive, bounded request size
// (413), read timeouts, optional TLS, graceful stop. Thread-safe.
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
#include "stepflow/runtime/histogram.hpp"

namespace stepflow {

/// Options of the HTTP server, read once at start-up.
struct http_server_options {
  /// Address to listen on. Default: 127.0.0.1.
  std::string host = "127.0.0.1";
  /// Port; 0 picks a free one (see http_server::port()). Default: 8080.
  uint16_t port = 8080;
  /// I/O threads. Default: 1 (the actor system gets the other core).
  size_t threads = 1;
  /// Largest request body accepted; bigger ones get 413. Default: 16 MiB.
  size_t max_body_bytes = 16u << 20;
  /// Time allowed to receive a whole request (and idle keep-alive time).
  /// Default: 30 s.
  std::chrono::seconds read_timeout{30};
  /// PEM certificate chain and key; TLS when both are set.
  std::string tls_cert_file;
  std::string tls_key_file;
};

struct http_request_data {
  std::string method; ///< upper case, e.g. "POST"
  std::string target; ///< path and query as sent
  std::string path;   ///< target without the query, percent-decoded
  std::string query;  ///< the part after '?', raw
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string remote; ///< peer address

  /// The first header named `name` (case-insensitive), or "".
  std::string_view header(std::string_view name) const noexcept;
  /// The query parameter `name` percent-decoded, or nullopt.
  std::optional<std::string> query_param(std::string_view name) const;
};

struct http_reply {
  int status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

/// Answers one request; must be called exactly once, from any thread.
using http_responder = std::function<void(http_reply)>;
using http_handler =
  std::function<void(std::shared_ptr<const http_request_data>, http_responder)>;

class http_server {
public:
  /// Binds and starts the I/O threads. errc::io_error names the address
  /// when it cannot bind or the TLS files cannot be loaded.
  static caf::expected<std::unique_ptr<http_server>> start(http_server_options opts,
                                                           http_handler handler);
  /// Stops (see stop()).
  ~http_server();

  /// The bound port.
  uint16_t port() const noexcept;
  bool tls() const noexcept;

  /// Stops accepting, lets requests in progress be answered for up to
  /// `grace`, closes every connection and joins the I/O threads.
  void stop(std::chrono::milliseconds grace = std::chrono::milliseconds{5000});

  /// Requests answered so far.
  uint64_t requests() const noexcept;

  /// Answered requests by time from the request read to the answer written
  /// (see histogram.hpp).
  duration_counts latency_histogram() const noexcept;

  struct impl;

private:
  explicit http_server(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

/// Percent-decodes `s` ('+' stays '+'; query_param also maps '+' to ' ').
std::string percent_decode(std::string_view s);

} // namespace stepflow
