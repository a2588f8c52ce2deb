#include "support/http_test_server.hpp"

// Synchronous Beast server: one acceptor thread, one thread per connection.
// The destructor wakes the acceptor with a connection to itself, shuts every
// connection's socket down (which unblocks reads) and interrupts delays.

#include <cctype>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

namespace stepflow::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

std::string test_request::header(const std::string& name) const {
  auto same = [&](const std::string& other) {
    if (other.size() != name.size())
      return false;
    for (size_t i = 0; i < name.size(); ++i)
      if (std::tolower(static_cast<unsigned char>(other[i]))
          != std::tolower(static_cast<unsigned char>(name[i])))
        return false;
    return true;
  };
  for (const auto& [n, v] : headers)
    if (same(n))
      return v;
  return {};
}

struct http_test_server::impl {
  test_handler handler;
  asio::io_context ioc;
  tcp::acceptor acceptor{ioc};
  uint16_t port = 0;
  std::atomic<uint64_t> served{0};

  std::mutex mtx;
  std::condition_variable stop_cv;
  bool stopping = false;
  std::vector<std::shared_ptr<tcp::socket>> sockets;
  std::vector<std::thread> workers;
  std::thread accept_thread;

  void accept_loop() {
    for (;;) {
      auto sock = std::make_shared<tcp::socket>(ioc);
      boost::system::error_code ec;
      acceptor.accept(*sock, ec);
      std::lock_guard<std::mutex> guard{mtx};
      if (stopping)
        return;
      if (ec)
        continue;
      sockets.push_back(sock);
      workers.emplace_back([this, sock] { serve(*sock); });
    }
  }

  test_response call_handler(const test_request& req) {
    try {
      return handler(req);
    } catch (const std::exception& e) {
      test_response r;
      r.status = 500;
      r.headers = {{"Content-Type", "text/plain"}};
      r.body = e.what();
      return r;
    } catch (...) {
      test_response r;
      r.status = 500;
      r.headers = {{"Content-Type", "text/plain"}};
      r.body = "unknown exception";
      return r;
    }
  }

  void serve(tcp::socket& sock) {
    beast::flat_buffer buf;
    boost::system::error_code ec;
    for (;;) {
      http::request<http::string_body> in;
      http::read(sock, buf, in, ec);
      if (ec)
        break;
      test_request req;
      req.method = std::string(in.method_string());
      req.target = std::string(in.target());
      for (const auto& field : in)
        req.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
      req.body = in.body();

      auto answer = call_handler(req);
      ++served;
      if (answer.delay_ms > 0) {
        std::unique_lock<std::mutex> lock{mtx};
        stop_cv.wait_for(lock, std::chrono::milliseconds(answer.delay_ms),
                         [this] { return stopping; });
        if (stopping)
          break;
      }

      http::response<http::string_body> out;
      out.version(in.version());
      out.result(static_cast<unsigned>(answer.status));
      for (const auto& [name, value] : answer.headers)
        out.insert(name, value);
      out.body() = std::move(answer.body);
      out.keep_alive(in.keep_alive());
      out.prepare_payload();
      http::write(sock, out, ec);
      if (ec || !out.keep_alive())
        break;
    }
    sock.shutdown(tcp::socket::shutdown_both, ec);
  }
};

http_test_server::http_test_server(test_handler handler) : impl_(std::make_unique<impl>()) {
  auto& d = *impl_;
  d.handler = std::move(handler);
  tcp::endpoint ep{asio::ip::make_address("127.0.0.1"), 0};
  d.acceptor.open(ep.protocol());
  d.acceptor.set_option(asio::socket_base::reuse_address(true));
  d.acceptor.bind(ep);
  d.acceptor.listen(asio::socket_base::max_listen_connections);
  d.port = d.acceptor.local_endpoint().port();
  d.accept_thread = std::thread([&d] { d.accept_loop(); });
}

http_test_server::~http_test_server() {
  auto& d = *impl_;
  {
    std::lock_guard<std::mutex> guard{d.mtx};
    d.stopping = true;
  }
  d.stop_cv.notify_all();
  {
    // Wake the blocking accept() with a connection of our own.
    boost::system::error_code ec;
    tcp::socket waker{d.ioc};
    waker.connect({asio::ip::make_address("127.0.0.1"), d.port}, ec);
    d.accept_thread.join();
    waker.close(ec);
  }
  boost::system::error_code ec;
  d.acceptor.close(ec);
  {
    std::lock_guard<std::mutex> guard{d.mtx};
    for (auto& s : d.sockets)
      s->shutdown(tcp::socket::shutdown_both, ec);
  }
  for (auto& w : d.workers)
    w.join();
  for (auto& s : d.sockets)
    s->close(ec);
}

uint16_t http_test_server::port() const noexcept { return impl_->port; }

std::string http_test_server::url() const { return "http://127.0.0.1:" + std::to_string(impl_->port); }

uint64_t http_test_server::request_count() const noexcept { return impl_->served.load(); }

} // namespace stepflow::test
