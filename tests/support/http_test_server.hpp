#pragma once
// A small HTTP/1.1 server for tests: listens on 127.0.0.1 on a random port,
// serves each request with a handler on its own thread, keeps connections
// alive, and stops in the destructor.
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace stepflow::test {

struct test_request {
  std::string method;
  std::string target; ///< path and query, e.g. "/api/x?y=1"
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  /// Value of header `name` (case-insensitive), or "".
  std::string header(const std::string& name) const;
};

struct test_response {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers{{"Content-Type", "application/json"}};
  std::string body;
  /// Milliseconds to wait before answering (to test timeouts).
  int delay_ms = 0;
};

using test_handler = std::function<test_response(const test_request&)>;

class http_test_server {
public:
  explicit http_test_server(test_handler handler);
  ~http_test_server();
  http_test_server(const http_test_server&) = delete;
  http_test_server& operator=(const http_test_server&) = delete;

  uint16_t port() const noexcept;
  /// "http://127.0.0.1:<port>"
  std::string url() const;
  /// Requests served so far.
  uint64_t request_count() const noexcept;

  struct impl;

private:
  std::unique_ptr<impl> impl_;
};

} // namespace stepflow::test
