#include "stepflow/runtime/http_client.hpp"
#include "stepflow/runtime/thread_name.hpp"

// One I/O thread drives a curl multi handle. submit() enqueues under `mtx` and
// wakes the loop with curl_multi_wakeup; the loop moves queued requests onto
// easy handles (at most max_in_flight at once), performs, and completes
// finished transfers by invoking their callbacks outside the mutex.
//
// Retries: a finished attempt that may be retried (see retry_policy) goes
// into `delayed`, keyed by when it is due; the loop's poll timeout never
// exceeds the time to the earliest one, and due retries start before newly
// queued requests. The retry budget is a sliding window of ten slots counting
// first attempts and retries; it is touched by the I/O thread only.

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <random>
#include <string_view>
#include <thread>
#include <unordered_map>

#include <curl/curl.h>
#include <fmt/format.h>

namespace stepflow {

namespace {

std::once_flag curl_init_flag;
CURLcode curl_init_result = CURLE_OK;

void init_curl_once() {
  std::call_once(curl_init_flag, [] { curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size())
    return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

/// Calls `done` with `result`, swallowing whatever it throws.
void invoke(http_callback& done, caf::expected<http_response> result) noexcept {
  if (!done)
    return;
  try {
    done(std::move(result));
  } catch (...) {
    // A callback must not take the I/O thread down.
  }
}

/// A request waiting for a free slot (or, for a retry, for its time).
struct pending {
  http_request req;
  http_callback done;
  /// The attempt this will be, 1 for the first.
  int attempt = 1;
};

/// One request on an easy handle.
struct transfer {
  CURL* easy = nullptr;
  http_request req;
  http_callback done;
  std::string method; ///< upper-cased, for messages
  int attempt = 1;
  http_response resp;
  curl_slist* header_list = nullptr;
  char errbuf[CURL_ERROR_SIZE] = {};

  ~transfer() {
    if (header_list)
      curl_slist_free_all(header_list);
  }
};

size_t on_body(char* data, size_t size, size_t n, void* user) noexcept {
  auto* t = static_cast<transfer*>(user);
  try {
    t->resp.body.append(data, size * n);
  } catch (...) {
    return 0; // aborts the transfer with CURLE_WRITE_ERROR
  }
  return size * n;
}

/// Receives one header line at a time. A status line starts a new response
/// (1xx, proxy CONNECT, redirects), so only the last response's headers stay.
size_t on_header(char* data, size_t size, size_t n, void* user) noexcept {
  auto* t = static_cast<transfer*>(user);
  std::string_view line(data, size * n);
  try {
    if (line.starts_with("HTTP/")) {
      t->resp.headers.clear();
      t->resp.body.clear();
      return size * n;
    }
    auto content = trim(line);
    if (content.empty())
      return size * n;
    if ((line.front() == ' ' || line.front() == '\t') && !t->resp.headers.empty()) {
      // obsolete line folding: continues the previous value
      auto& value = t->resp.headers.back().second;
      value += ' ';
      value += content;
      return size * n;
    }
    auto colon = line.find(':');
    if (colon == std::string_view::npos)
      return size * n;
    t->resp.headers.emplace_back(std::string(trim(line.substr(0, colon))),
                                 std::string(trim(line.substr(colon + 1))));
  } catch (...) {
    return 0;
  }
  return size * n;
}

bool has_header(const http_headers& headers, std::string_view name) noexcept {
  return std::any_of(headers.begin(), headers.end(),
                     [&](const auto& h) { return iequals(h.first, name); });
}

/// The first non-empty environment variable of `names`, or "".
std::string env_first(std::initializer_list<const char*> names) {
  for (const char* n : names)
    if (const char* v = std::getenv(n); v && *v)
      return v;
  return {};
}

bool idempotent_method(std::string_view m) noexcept {
  return m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "TRACE" || m == "PUT" || m == "DELETE";
}

/// Sliding-window retry budget (see retry_budget_options).
class retry_budget {
public:
  explicit retry_budget(const retry_budget_options& o)
    : ratio_(std::max(0.0, o.ratio)), floor_(std::max(0.0, o.min_retries)),
      slot_len_(std::max<std::chrono::steady_clock::duration>(
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(o.window) / slots,
        std::chrono::milliseconds(1))) {}

  void note_request(std::chrono::steady_clock::time_point now) { current(now).requests += 1; }

  /// Takes one retry from the budget; false when none is left.
  bool try_retry(std::chrono::steady_clock::time_point now) {
    auto epoch = epoch_of(now);
    double requests = 0;
    double retries = 0;
    for (const auto& s : slots_)
      if (s.epoch > epoch - static_cast<int64_t>(slots) && s.epoch <= epoch) {
        requests += static_cast<double>(s.requests);
        retries += static_cast<double>(s.retries);
      }
    if (retries + 1 > ratio_ * requests + floor_)
      return false;
    current(now).retries += 1;
    return true;
  }

private:
  static constexpr size_t slots = 10;
  struct slot {
    int64_t epoch = INT64_MIN;
    uint64_t requests = 0;
    uint64_t retries = 0;
  };

  int64_t epoch_of(std::chrono::steady_clock::time_point now) const noexcept {
    return now.time_since_epoch() / slot_len_;
  }
  slot& current(std::chrono::steady_clock::time_point now) {
    auto epoch = epoch_of(now);
    auto& s = slots_[static_cast<size_t>(epoch % static_cast<int64_t>(slots))];
    if (s.epoch != epoch)
      s = slot{epoch, 0, 0};
    return s;
  }

  double ratio_;
  double floor_;
  std::chrono::steady_clock::duration slot_len_;
  std::array<slot, slots> slots_{};
};

/// Why an attempt may be retried; `retryable` false when it may not.
struct retry_verdict {
  bool retryable = false;
  std::optional<std::chrono::milliseconds> retry_after;
};

} // namespace

const std::string* find_header(const http_headers& headers, std::string_view name) noexcept {
  for (const auto& [n, v] : headers)
    if (iequals(n, name))
      return &v;
  return nullptr;
}

std::string url_encode(std::string_view s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += ch;
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value) {
  auto v = trim(value);
  if (v.empty())
    return std::nullopt;
  if (std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    if (v.size() > 9) // more than ~31 years: saturate
      return std::chrono::milliseconds(std::chrono::hours(24 * 365 * 30));
    return std::chrono::seconds(std::stol(std::string(v)));
  }
  std::string text(v);
  auto when = curl_getdate(text.c_str(), nullptr);
  if (when == -1)
    return std::nullopt;
  auto now = std::time(nullptr);
  if (when <= now)
    return std::chrono::milliseconds(0);
  return std::chrono::seconds(when - now);
}

struct http_client::impl {
  http_client_options opts;
  CURLM* multi = nullptr;
  std::thread io;

  // -- shared with submitters, guarded by mtx ---------------------------------
  std::mutex mtx;
  std::deque<pending> queue;
  bool stopping = false;
  /// Set when the loop could not start; submit() then fails at once.
  std::string broken;

  // -- read-only after construction --------------------------------------------
  std::string http_proxy;  ///< default proxy for http URLs
  std::string https_proxy; ///< default proxy for https URLs
  std::string no_proxy;

  // -- owned by the I/O thread ------------------------------------------------
  std::unordered_map<CURL*, std::unique_ptr<transfer>> active;
  std::vector<CURL*> spare; ///< reset easy handles for reuse
  /// Retries waiting for their time.
  std::multimap<std::chrono::steady_clock::time_point, pending> delayed;
  /// Retries whose time has come, waiting for a free slot.
  std::deque<pending> ready;
  std::unique_ptr<retry_budget> budget;
  std::mt19937_64 rng{std::random_device{}()};

  ~impl() {
    for (auto* e : spare)
      curl_easy_cleanup(e);
    if (multi)
      curl_multi_cleanup(multi);
  }

  CURL* take_easy() {
    if (!spare.empty()) {
      auto* e = spare.back();
      spare.pop_back();
      return e;
    }
    return curl_easy_init();
  }

  void give_back(CURL* e) {
    if (spare.size() < static_cast<size_t>(opts.max_in_flight)) {
      curl_easy_reset(e);
      spare.push_back(e);
    } else {
      curl_easy_cleanup(e);
    }
  }

  /// Sets every option of `t` on its easy handle.
  CURLcode configure(transfer& t) {
    auto* e = t.easy;
    const auto& r = t.req;
    CURLcode rc = CURLE_OK;
    auto set = [&](CURLoption opt, auto value) {
      if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, opt, value);
    };
    set(CURLOPT_PRIVATE, static_cast<void*>(&t));
    set(CURLOPT_ERRORBUFFER, t.errbuf);
    set(CURLOPT_URL, r.url.c_str());
    set(CURLOPT_NOSIGNAL, 1L);
    set(CURLOPT_ACCEPT_ENCODING, "");
    set(CURLOPT_FOLLOWLOCATION, 0L);
    set(CURLOPT_TCP_KEEPALIVE, 1L);
    set(CURLOPT_WRITEFUNCTION, &on_body);
    set(CURLOPT_WRITEDATA, static_cast<void*>(&t));
    set(CURLOPT_HEADERFUNCTION, &on_header);
    set(CURLOPT_HEADERDATA, static_cast<void*>(&t));

    // Method and body.
    if (t.method == "HEAD") {
      set(CURLOPT_NOBODY, 1L);
    } else if (!r.body.empty() || t.method == "POST") {
      set(CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
      set(CURLOPT_POSTFIELDS, r.body.data());
      if (t.method != "POST")
        set(CURLOPT_CUSTOMREQUEST, t.method.c_str());
    } else if (t.method == "GET") {
      set(CURLOPT_HTTPGET, 1L);
    } else {
      set(CURLOPT_CUSTOMREQUEST, t.method.c_str());
    }

    // Headers. curl would otherwise add its own Content-Type for bodies and
    // "Expect: 100-continue" for larger ones; neither is wanted.
    auto add = [&](const std::string& line) {
      if (rc != CURLE_OK)
        return;
      auto* next = curl_slist_append(t.header_list, line.c_str());
      if (!next) {
        rc = CURLE_OUT_OF_MEMORY;
        return;
      }
      t.header_list = next;
    };
    for (const auto& [name, value] : r.headers)
      add(value.empty() ? name + ";" : name + ": " + value);
    if (!r.bearer_token.empty() && !has_header(r.headers, "Authorization"))
      add("Authorization: Bearer " + r.bearer_token);
    if (!r.idempotency_key.empty()) {
      const auto& name = r.retry.idempotency_header.empty() ? std::string("Idempotency-Key")
                                                            : r.retry.idempotency_header;
      if (!has_header(r.headers, name))
        add(name + ": " + r.idempotency_key);
    }
    if (!r.body.empty() && !has_header(r.headers, "Content-Type"))
      add("Content-Type:");
    if (!has_header(r.headers, "Expect"))
      add("Expect:");
    if (t.header_list)
      set(CURLOPT_HTTPHEADER, t.header_list);

    if (!r.user.empty()) {
      set(CURLOPT_USERNAME, r.user.c_str());
      set(CURLOPT_PASSWORD, r.password.c_str());
      set(CURLOPT_HTTPAUTH, static_cast<long>(CURLAUTH_BASIC));
    }
    set(CURLOPT_SSL_VERIFYPEER, r.verify_tls ? 1L : 0L);
    set(CURLOPT_SSL_VERIFYHOST, r.verify_tls ? 2L : 0L);
    // Always set both, so libcurl never reads the environment on its own.
    if (!r.proxy.empty()) {
      set(CURLOPT_PROXY, r.proxy.c_str());
      set(CURLOPT_NOPROXY, "");
    } else {
      bool https = r.url.size() >= 8 && iequals(std::string_view(r.url).substr(0, 8), "https://");
      set(CURLOPT_PROXY, https ? https_proxy.c_str() : http_proxy.c_str());
      set(CURLOPT_NOPROXY, no_proxy.c_str());
    }
    const auto& ca = r.ca_file.empty() ? opts.ca_file : r.ca_file;
    if (!ca.empty())
      set(CURLOPT_CAINFO, ca.c_str());
    if (r.connect_timeout.count() > 0)
      set(CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(r.connect_timeout.count()));
    if (r.timeout.count() > 0)
      set(CURLOPT_TIMEOUT_MS, static_cast<long>(r.timeout.count()));
    return rc;
  }

  /// " (after N attempts[; retry budget exhausted])" when the policy allows
  /// retries, else "".
  static std::string attempts_note(const transfer& t, bool budget_refused) {
    if (t.req.retry.max_attempts <= 1)
      return {};
    return fmt::format(" (after {} attempt{}{})", t.attempt, t.attempt == 1 ? "" : "s",
                       budget_refused ? "; retry budget exhausted" : "");
  }

  static caf::error transport_error(const transfer& t, CURLcode rc, bool budget_refused = false) {
    std::string why = t.errbuf[0] != '\0' ? std::string(trim(t.errbuf)) : curl_easy_strerror(rc);
    auto sentence = fmt::format("{} {}: {}{}", t.method, t.req.url, why,
                                attempts_note(t, budget_refused));
    return make_error(rc == CURLE_OPERATION_TIMEDOUT ? errc::timeout : errc::http_error,
                      std::move(sentence));
  }

  /// Whether the attempt on `t` (curl result `rc`, HTTP `status`) may be
  /// retried under its policy, ignoring the attempt count and the budget.
  static retry_verdict classify(const transfer& t, CURLcode rc, long status) {
    retry_verdict v;
    const auto& policy = t.req.retry;
    bool replayable = idempotent_method(t.method) || !t.req.idempotency_key.empty();
    if (rc == CURLE_OK) {
      bool retry_status = status == 429 || status == 502 || status == 503 || status == 504
                          || (status == 500 && policy.retry_500);
      v.retryable = replayable && retry_status;
      if (v.retryable && policy.honour_retry_after)
        if (const auto* ra = find_header(t.resp.headers, "Retry-After"))
          v.retry_after = parse_retry_after(*ra);
      return v;
    }
    long sent = 0;
    long received = 0;
    curl_easy_getinfo(t.easy, CURLINFO_REQUEST_SIZE, &sent);
    curl_easy_getinfo(t.easy, CURLINFO_HEADER_SIZE, &received);
    switch (rc) {
      case CURLE_COULDNT_RESOLVE_HOST:
      case CURLE_COULDNT_RESOLVE_PROXY:
      case CURLE_COULDNT_CONNECT:
        v.retryable = true; // nothing was sent
        break;
      case CURLE_OPERATION_TIMEDOUT:
      case CURLE_GOT_NOTHING:
      case CURLE_SEND_ERROR:
      case CURLE_RECV_ERROR:
        // Before any response header; once sent, only if replayable.
        v.retryable = received == 0 && (sent == 0 || replayable);
        break;
      default:
        break;
    }
    return v;
  }

  /// The wait before attempt `next` (2, 3, ...).
  std::chrono::milliseconds backoff(const retry_policy& p, int next,
                                    const std::optional<std::chrono::milliseconds>& retry_after) {
    auto cap = std::max(std::chrono::milliseconds(0), p.max_delay);
    if (retry_after)
      return std::min(*retry_after, cap);
    auto base = std::max(std::chrono::milliseconds(0), p.base_delay);
    auto ceiling = base;
    for (int i = 2; i < next && ceiling < cap; ++i)
      ceiling = ceiling < cap / 2 ? ceiling * 2 : cap;
    ceiling = std::min(ceiling, cap);
    if (ceiling.count() <= 0)
      return std::chrono::milliseconds(0);
    std::uniform_int_distribution<int64_t> pick(0, ceiling.count());
    return std::chrono::milliseconds(pick(rng));
  }

  /// Puts `p` on an easy handle and hands it to the multi handle; on failure
  /// completes it at once. Returns whether it is now in flight.
  bool start(pending&& p) {
    auto t = std::make_unique<transfer>();
    t->req = std::move(p.req);
    t->done = std::move(p.done);
    t->attempt = p.attempt;
    t->method = upper(t->req.method.empty() ? std::string_view{"GET"} : t->req.method);
    if (t->attempt == 1)
      budget->note_request(std::chrono::steady_clock::now());
    t->easy = take_easy();
    if (!t->easy) {
      invoke(t->done, make_error(errc::http_error, fmt::format("{} {}: cannot create a curl handle",
                                                               t->method, t->req.url)));
      return false;
    }
    auto rc = configure(*t);
    if (rc != CURLE_OK) {
      auto err = transport_error(*t, rc);
      give_back(t->easy);
      invoke(t->done, std::move(err));
      return false;
    }
    if (auto mrc = curl_multi_add_handle(multi, t->easy); mrc != CURLM_OK) {
      auto err = make_error(errc::http_error, fmt::format("{} {}: {}", t->method, t->req.url,
                                                          curl_multi_strerror(mrc)));
      give_back(t->easy);
      invoke(t->done, std::move(err));
      return false;
    }
    auto* easy = t->easy;
    active.emplace(easy, std::move(t));
    return true;
  }

  /// Completes the transfer on `easy` with curl's result `rc`.
  void finish(CURL* easy, CURLcode rc) {
    auto it = active.find(easy);
    curl_multi_remove_handle(multi, easy);
    if (it == active.end()) {
      curl_easy_cleanup(easy);
      return;
    }
    auto t = std::move(it->second);
    active.erase(it);
    long status = 0;
    if (rc == CURLE_OK)
      curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    bool budget_refused = false;
    if (t->attempt < t->req.retry.max_attempts) {
      auto verdict = classify(*t, rc, status);
      if (verdict.retryable) {
        auto now = std::chrono::steady_clock::now();
        if (budget->try_retry(now)) {
          auto wait = backoff(t->req.retry, t->attempt + 1, verdict.retry_after);
          give_back(easy);
          t->easy = nullptr;
          delayed.emplace(now + wait, pending{std::move(t->req), std::move(t->done), t->attempt + 1});
          return;
        }
        budget_refused = true;
      }
    }
    caf::expected<http_response> result{make_error(errc::internal, "unset")};
    if (rc == CURLE_OK) {
      t->resp.status = status;
      t->resp.attempts = t->attempt;
      result = std::move(t->resp);
    } else {
      result = transport_error(*t, rc, budget_refused);
    }
    give_back(easy);
    t->easy = nullptr;
    invoke(t->done, std::move(result));
  }

  void loop() {
    bool progressed = false;
    for (;;) {
      {
        std::lock_guard<std::mutex> guard{mtx};
        if (stopping)
          break;
      }
      // Due retries first, then new requests, within max_in_flight.
      auto now = std::chrono::steady_clock::now();
      while (!delayed.empty() && delayed.begin()->first <= now) {
        ready.push_back(std::move(delayed.begin()->second));
        delayed.erase(delayed.begin());
      }
      while (!ready.empty() && static_cast<long>(active.size()) < opts.max_in_flight) {
        auto p = std::move(ready.front());
        ready.pop_front();
        start(std::move(p));
      }
      std::vector<pending> batch;
      {
        std::lock_guard<std::mutex> guard{mtx};
        while (!queue.empty() && static_cast<long>(active.size() + batch.size()) < opts.max_in_flight) {
          batch.push_back(std::move(queue.front()));
          queue.pop_front();
        }
      }
      for (auto& p : batch)
        start(std::move(p));

      int running = 0;
      curl_multi_perform(multi, &running);

      progressed = false;
      int left = 0;
      while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
        if (msg->msg != CURLMSG_DONE)
          continue;
        // msg is invalidated by remove_handle, so copy what we need first
        CURL* easy = msg->easy_handle;
        CURLcode rc = msg->data.result;
        finish(easy, rc);
        progressed = true;
      }
      // Freed slots may let queued requests start: only peek at the sockets.
      // Otherwise wait for I/O, a wake-up, or the earliest retry.
      int wait_ms = progressed ? 0 : 1000;
      if (!progressed && !delayed.empty()) {
        auto until = delayed.begin()->first - std::chrono::steady_clock::now();
        auto ms = std::chrono::ceil<std::chrono::milliseconds>(until).count();
        wait_ms = static_cast<int>(std::clamp<int64_t>(ms, 0, wait_ms));
      }
      curl_multi_poll(multi, nullptr, 0, wait_ms, nullptr);
    }
    shutdown();
  }

  /// Cancels everything in flight and queued (runs on the I/O thread).
  void shutdown() {
    auto cancelled = [](const std::string& method, const std::string& url) {
      return make_error(errc::cancelled,
                        fmt::format("{} {}: cancelled, the HTTP client is shutting down",
                                    method, url));
    };
    auto in_flight = std::move(active);
    active.clear();
    for (auto& [easy, t] : in_flight) {
      curl_multi_remove_handle(multi, easy);
      curl_easy_cleanup(easy);
      t->easy = nullptr;
      invoke(t->done, cancelled(t->method, t->req.url));
    }
    std::deque<pending> waiting = std::move(ready);
    ready.clear();
    for (auto& [when, p] : delayed)
      waiting.push_back(std::move(p));
    delayed.clear();
    {
      std::lock_guard<std::mutex> guard{mtx};
      for (auto& p : queue)
        waiting.push_back(std::move(p));
      queue.clear();
    }
    for (auto& p : waiting)
      invoke(p.done, cancelled(upper(p.req.method), p.req.url));
  }
};

http_client::http_client(http_client_options opts) : impl_(std::make_unique<impl>()) {
  auto& d = *impl_;
  d.opts = opts;
  d.opts.max_in_flight = std::max(1L, d.opts.max_in_flight);
  d.opts.max_per_host = std::max(0L, d.opts.max_per_host);
  d.budget = std::make_unique<retry_budget>(d.opts.budget);
  // Proxy defaults, read once (see http_client_options for the precedence).
  d.http_proxy = d.opts.proxy;
  d.https_proxy = d.opts.proxy;
  d.no_proxy = d.opts.no_proxy;
  if (d.opts.use_environment_proxy) {
    auto all = env_first({"all_proxy", "ALL_PROXY"});
    if (d.opts.proxy.empty()) {
      d.http_proxy = env_first({"http_proxy", "HTTP_PROXY"});
      d.https_proxy = env_first({"https_proxy", "HTTPS_PROXY"});
      if (d.http_proxy.empty())
        d.http_proxy = all;
      if (d.https_proxy.empty())
        d.https_proxy = all;
    }
    if (d.no_proxy.empty())
      d.no_proxy = env_first({"no_proxy", "NO_PROXY"});
  }
  init_curl_once();
  if (curl_init_result != CURLE_OK) {
    d.broken = fmt::format("curl_global_init failed: {}", curl_easy_strerror(curl_init_result));
    return;
  }
  d.multi = curl_multi_init();
  if (!d.multi) {
    d.broken = "curl_multi_init failed";
    return;
  }
  curl_multi_setopt(d.multi, CURLMOPT_MAX_HOST_CONNECTIONS, d.opts.max_per_host);
  try {
    d.io = std::thread([&d] {
      name_this_thread("sf-http-client");
      d.loop();
    });
  } catch (const std::exception& e) {
    d.broken = fmt::format("cannot start the HTTP I/O thread: {}", e.what());
  }
}

http_client::~http_client() {
  auto& d = *impl_;
  {
    std::lock_guard<std::mutex> guard{d.mtx};
    d.stopping = true;
  }
  if (d.io.joinable()) {
    curl_multi_wakeup(d.multi);
    d.io.join();
  } else {
    d.shutdown(); // the loop never ran; cancel anything queued
  }
}

void http_client::submit(http_request req, http_callback done) {
  auto& d = *impl_;
  pending p{std::move(req), std::move(done)};
  caf::error refused;
  try {
    std::lock_guard<std::mutex> guard{d.mtx};
    if (!d.broken.empty()) {
      refused = make_error(errc::http_error, fmt::format("{} {}: {}", upper(p.req.method),
                                                         p.req.url, d.broken));
    } else if (d.stopping) {
      refused = make_error(errc::cancelled,
                           fmt::format("{} {}: cancelled, the HTTP client is shutting down",
                                       upper(p.req.method), p.req.url));
    } else {
      d.queue.push_back(std::move(p)); // strong guarantee: `p` intact if this throws
    }
  } catch (const std::exception& e) {
    refused = make_error(errc::internal, fmt::format("{} {}: {}", upper(p.req.method), p.req.url,
                                                     e.what()));
  }
  if (refused) {
    invoke(p.done, std::move(refused));
    return;
  }
  curl_multi_wakeup(d.multi);
}

} // namespace stepflow
