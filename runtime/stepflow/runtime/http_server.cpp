#include "stepflow/runtime/http_server.hpp"
#include "stepflow/runtime/thread_name.hpp"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <fmt/format.h>
#include <strings.h>

namespace stepflow {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

// -- request helpers -----------------------------------------------------------

std::string_view http_request_data::header(std::string_view name) const noexcept {
  for (const auto& [k, v] : headers)
    if (k.size() == name.size() && strncasecmp(k.data(), name.data(), k.size()) == 0)
      return v;
  return {};
}

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

std::string decode(std::string_view s, bool plus_as_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%' && i + 2 < s.size()) {
      int hi = hex_value(s[i + 1]);
      int lo = hex_value(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(plus_as_space && c == '+' ? ' ' : c);
  }
  return out;
}

} // namespace

std::string percent_decode(std::string_view s) {
  return decode(s, false);
}

std::optional<std::string> http_request_data::query_param(std::string_view name) const {
  std::string_view q = query;
  while (!q.empty()) {
    auto amp = q.find('&');
    auto pair = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view{} : q.substr(amp + 1);
    auto eq = pair.find('=');
    auto key = decode(pair.substr(0, eq), true);
    if (key == name)
      return eq == std::string_view::npos ? std::string{} : decode(pair.substr(eq + 1), true);
  }
  return std::nullopt;
}

// -- server internals -----------------------------------------------------------

namespace {

struct session_base {
  virtual ~session_base() = default;
  /// Closes the connection (posted onto the session's strand).
  virtual void close() = 0;
};

} // namespace

struct http_server::impl {
  http_server_options opts;
  http_handler handler;
  net::io_context ioc;
  std::optional<net::ssl::context> ssl;
  tcp::acceptor acceptor{ioc};
  std::vector<std::thread> threads;
  std::atomic<uint64_t> answered{0};
  duration_histogram latency;
  std::atomic<bool> stopping{false};
  std::atomic<int64_t> in_flight{0};
  std::mutex mtx;
  std::condition_variable drained;
  std::unordered_map<session_base*, std::weak_ptr<session_base>> sessions;
  bool stopped = false;

  impl() = default;

  void add(const std::shared_ptr<session_base>& s) {
    std::lock_guard<std::mutex> guard{mtx};
    sessions.emplace(s.get(), s);
  }
  void remove(session_base* s) {
    std::lock_guard<std::mutex> guard{mtx};
    sessions.erase(s);
  }
  void request_done(std::chrono::steady_clock::time_point read_at) {
    latency.record(std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - read_at));
    ++answered;
    if (--in_flight == 0) {
      std::lock_guard<std::mutex> guard{mtx};
      drained.notify_all();
    }
  }
  void do_accept();
};

namespace {

http_reply error_reply(int status, std::string_view message) {
  http_reply r;
  r.status = status;
  r.body = fmt::format(R"({{"error":{},"detail":null}})",
                       "\"" + std::string(message) + "\"");
  return r;
}

template <class Stream>
class session final : public session_base,
                      public std::enable_shared_from_this<session<Stream>> {
public:
  session(Stream&& stream, http_server::impl* srv)
    : stream_(std::move(stream)), srv_(srv) {
  }
  ~session() override { srv_->remove(this); }

  void start() {
    if constexpr (std::is_same_v<Stream, beast::ssl_stream<beast::tcp_stream>>) {
      beast::get_lowest_layer(stream_).expires_after(srv_->opts.read_timeout);
      stream_.async_handshake(net::ssl::stream_base::server,
                              [self = this->shared_from_this()](beast::error_code ec) {
                                if (!ec)
                                  self->do_read();
                              });
    } else {
      do_read();
    }
  }

  void close() override {
    net::post(stream_.get_executor(), [self = this->shared_from_this()] {
      if (!self->busy_) {
        beast::error_code ec;
        beast::get_lowest_layer(self->stream_).socket().shutdown(tcp::socket::shutdown_both, ec);
        beast::get_lowest_layer(self->stream_).close();
      }
    });
  }

private:
  void do_read() {
    if (srv_->stopping)
      return shutdown();
    parser_.emplace();
    parser_->body_limit(srv_->opts.max_body_bytes);
    parser_->header_limit(64 * 1024);
    beast::get_lowest_layer(stream_).expires_after(srv_->opts.read_timeout);
    bhttp::async_read(stream_, buffer_, *parser_,
                      beast::bind_front_handler(&session::on_read, this->shared_from_this()));
  }

  void on_read(beast::error_code ec, size_t) {
    read_at_ = std::chrono::steady_clock::now();
    if (ec == bhttp::error::end_of_stream)
      return shutdown();
    if (ec == bhttp::error::body_limit) {
      keep_alive_ = false;
      ++srv_->in_flight;
      busy_ = true;
      return write(error_reply(413, fmt::format("request body larger than {} bytes",
                                                srv_->opts.max_body_bytes)));
    }
    if (ec) {
      if (ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category()) {
        keep_alive_ = false;
        ++srv_->in_flight;
        busy_ = true;
        return write(error_reply(400, "malformed HTTP request"));
      }
      return shutdown(); // timeout, reset, TLS error
    }
    auto& req = parser_->get();
    auto data = std::make_shared<http_request_data>();
    data->method = std::string(req.method_string());
    data->target = std::string(req.target());
    auto qpos = data->target.find('?');
    data->path = percent_decode(std::string_view(data->target).substr(0, qpos));
    if (qpos != std::string::npos)
      data->query = data->target.substr(qpos + 1);
    for (const auto& f : req)
      data->headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    data->body = std::move(req.body());
    if (!remote_known_) {
      // Once per connection (a getpeername call).
      remote_known_ = true;
      beast::error_code rec;
      auto ep = beast::get_lowest_layer(stream_).socket().remote_endpoint(rec);
      if (!rec)
        remote_ = ep.address().to_string();
    }
    data->remote = remote_;
    keep_alive_ = req.keep_alive();
    beast::get_lowest_layer(stream_).expires_never();
    ++srv_->in_flight;
    busy_ = true;
    auto once = std::make_shared<std::atomic<bool>>(false);
    auto self = this->shared_from_this();
    http_responder respond = [self, once](http_reply r) {
      if (once->exchange(true))
        return;
      net::post(self->stream_.get_executor(),
                [self, r = std::move(r)]() mutable { self->write(std::move(r)); });
    };
    try {
      srv_->handler(std::move(data), respond);
    } catch (const std::exception& e) {
      respond(error_reply(500, "internal error"));
    } catch (...) {
      respond(error_reply(500, "internal error"));
    }
  }

  void write(http_reply r) {
    res_ = {};
    res_.version(11);
    res_.result(static_cast<unsigned>(r.status));
    res_.set(bhttp::field::server, "stepflow");
    if (!r.content_type.empty())
      res_.set(bhttp::field::content_type, r.content_type);
    for (auto& [k, v] : r.headers)
      res_.insert(k, v);
    res_.body() = std::move(r.body);
    res_.keep_alive(keep_alive_ && !srv_->stopping);
    res_.prepare_payload();
    bhttp::async_write(stream_, res_,
                       beast::bind_front_handler(&session::on_write, this->shared_from_this()));
  }

  void on_write(beast::error_code ec, size_t) {
    busy_ = false;
    bool keep = res_.keep_alive();
    srv_->request_done(read_at_);
    if (ec)
      return;
    if (!keep)
      return shutdown();
    do_read();
  }

  void shutdown() {
    beast::error_code ec;
    beast::get_lowest_layer(stream_).socket().shutdown(tcp::socket::shutdown_send, ec);
    beast::get_lowest_layer(stream_).close();
  }

  Stream stream_;
  http_server::impl* srv_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  bhttp::response<bhttp::string_body> res_;
  bool keep_alive_ = true;
  bool busy_ = false;
  bool remote_known_ = false;
  std::chrono::steady_clock::time_point read_at_{}; ///< when the request being answered was read
  std::string remote_; ///< peer address
};

} // namespace

void http_server::impl::do_accept() {
  acceptor.async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket sock) {
    if (ec) {
      if (!stopping && ec != net::error::operation_aborted)
        do_accept();
      return;
    }
    sock.set_option(tcp::no_delay(true), ec);
    if (ssl) {
      auto s = std::make_shared<session<beast::ssl_stream<beast::tcp_stream>>>(
        beast::ssl_stream<beast::tcp_stream>(beast::tcp_stream(std::move(sock)), *ssl), this);
      add(s);
      s->start();
    } else {
      auto s = std::make_shared<session<beast::tcp_stream>>(beast::tcp_stream(std::move(sock)),
                                                            this);
      add(s);
      s->start();
    }
    if (!stopping)
      do_accept();
  });
}

http_server::http_server(std::unique_ptr<impl> p) : impl_(std::move(p)) {
}

http_server::~http_server() {
  stop(std::chrono::milliseconds{0});
}

caf::expected<std::unique_ptr<http_server>> http_server::start(http_server_options opts,
                                                               http_handler handler) {
  auto p = std::make_unique<impl>();
  p->opts = std::move(opts);
  p->handler = std::move(handler);
  auto where = fmt::format("{}:{}", p->opts.host, p->opts.port);
  if (!p->opts.tls_cert_file.empty() || !p->opts.tls_key_file.empty()) {
    if (p->opts.tls_cert_file.empty() || p->opts.tls_key_file.empty())
      return make_error(errc::invalid_argument, "TLS needs both a certificate and a key file");
    p->ssl.emplace(net::ssl::context::tls_server);
    p->ssl->set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2
                        | net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1
                        | net::ssl::context::no_tlsv1_1);
    beast::error_code ec;
    p->ssl->use_certificate_chain_file(p->opts.tls_cert_file, ec);
    if (ec)
      return make_error(errc::io_error, fmt::format("cannot load TLS certificate {}: {}",
                                                    p->opts.tls_cert_file, ec.message()));
    p->ssl->use_private_key_file(p->opts.tls_key_file, net::ssl::context::pem, ec);
    if (ec)
      return make_error(errc::io_error, fmt::format("cannot load TLS key {}: {}",
                                                    p->opts.tls_key_file, ec.message()));
  }
  beast::error_code ec;
  auto addr = net::ip::make_address(p->opts.host, ec);
  if (ec)
    return make_error(errc::invalid_argument,
                      fmt::format("cannot listen on {}: not an IP address", where));
  tcp::endpoint ep{addr, p->opts.port};
  p->acceptor.open(ep.protocol(), ec);
  if (!ec)
    p->acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec)
    p->acceptor.bind(ep, ec);
  if (!ec)
    p->acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec)
    return make_error(errc::io_error, fmt::format("cannot listen on {}: {}", where, ec.message()));
  p->do_accept();
  size_t n = std::max<size_t>(1, p->opts.threads);
  auto* raw = p.get();
  for (size_t i = 0; i < n; ++i)
    p->threads.emplace_back([raw, i] {
      name_this_thread("sf-http-" + std::to_string(i));
      for (;;) {
        try {
          raw->ioc.run();
          return;
        } catch (...) {
          // A handler threw past its own guard: keep serving.
        }
      }
    });
  return std::unique_ptr<http_server>(new http_server(std::move(p)));
}

uint16_t http_server::port() const noexcept {
  beast::error_code ec;
  auto ep = impl_->acceptor.local_endpoint(ec);
  return ec ? 0 : ep.port();
}

bool http_server::tls() const noexcept {
  return impl_->ssl.has_value();
}

uint64_t http_server::requests() const noexcept {
  return impl_->answered.load();
}

duration_counts http_server::latency_histogram() const noexcept {
  return impl_->latency.counts();
}

void http_server::stop(std::chrono::milliseconds grace) {
  auto& p = *impl_;
  {
    std::lock_guard<std::mutex> guard{p.mtx};
    if (p.stopped)
      return;
    p.stopped = true;
  }
  p.stopping = true;
  net::post(p.acceptor.get_executor(), [&p] {
    beast::error_code ec;
    p.acceptor.close(ec);
  });
  // Close idle connections now; busy ones close after their answer.
  std::vector<std::shared_ptr<session_base>> live;
  {
    std::lock_guard<std::mutex> guard{p.mtx};
    for (auto& [_, w] : p.sessions)
      if (auto s = w.lock())
        live.push_back(std::move(s));
  }
  for (auto& s : live)
    s->close();
  live.clear();
  {
    std::unique_lock<std::mutex> guard{p.mtx};
    p.drained.wait_for(guard, grace, [&p] { return p.in_flight.load() <= 0; });
  }
  p.ioc.stop();
  for (auto& t : p.threads)
    if (t.joinable())
      t.join();
  p.threads.clear();
}

} // namespace stepflow
