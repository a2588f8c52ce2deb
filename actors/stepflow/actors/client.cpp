// The remote CLI (docs/cli.md, "Remote CLI"): every command is one or a few
// requests to a running `stepflow serve` (docs/api.md). Blocking libcurl easy
// handles; CLI11 for the arguments. Exit codes: 0 ok, 1 a run failed (or did
// not end within --wait), 2 usage, request or connection errors with one
// sentence on stderr.
#include "stepflow/actors/client.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <curl/curl.h>
#include <fmt/format.h>

#include "stepflow/runtime/json.hpp"
#include "stepflow/runtime/log_level.hpp"
#include "stepflow/runtime/model.hpp"

namespace stepflow::actors {

namespace {

constexpr int exit_ok = 0;
constexpr int exit_failed = 1;
constexpr int exit_usage = 2;

/// Commands that select the client from $STEPFLOW_SERVER alone (`run` and
/// `steps` exist locally too, so they need --server).
constexpr const char* env_commands[] = {"apps", "configs", "tasks", "status", "about"};

/// A request error: the sentence printed on stderr, exit code 2.
struct client_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// -- settings ---------------------------------------------------------------------

struct settings {
  std::string server;
  std::string user = "isadmin";
  std::string password;
  bool have_password = false;
  bool insecure = false;
  bool json_output = false;
};

/// The URL without credentials ("http://u:p@h" -> "http://h"): it names the
/// server in messages and must never show a password.
std::string display_url(const std::string& url) {
  auto scheme = url.find("://");
  auto start = scheme == std::string::npos ? 0 : scheme + 3;
  auto at = url.find('@', start);
  auto slash = url.find('/', start);
  if (at == std::string::npos || (slash != std::string::npos && at > slash))
    return url;
  return url.substr(0, start) + url.substr(at + 1);
}

/// The API root: the server URL without trailing slashes, plus /api/v1 unless
/// it is there already; http:// when no scheme is given.
std::string api_root(std::string url) {
  while (!url.empty() && url.back() == '/')
    url.pop_back();
  if (url.find("://") == std::string::npos)
    url = "http://" + url;
  constexpr std::string_view suffix = "/api/v1";
  if (url.size() < suffix.size() || url.compare(url.size() - suffix.size(), suffix.size(), suffix) != 0)
    url += suffix;
  return url;
}

// -- HTTP -------------------------------------------------------------------------

struct response {
  long status = 0;
  std::string body;
  std::string retry_after;
};

struct curl_global {
  curl_global() { curl_global_init(CURL_GLOBAL_DEFAULT); }
  ~curl_global() { curl_global_cleanup(); }
};

size_t on_body(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

size_t on_header(char* data, size_t size, size_t n, void* user) {
  std::string_view line(data, size * n);
  constexpr std::string_view name = "retry-after:";
  if (line.size() > name.size()) {
    std::string head(line.substr(0, name.size()));
    std::transform(head.begin(), head.end(), head.begin(), [](unsigned char c) { return std::tolower(c); });
    if (head == name) {
      auto v = line.substr(name.size());
      while (!v.empty() && (v.front() == ' ' || v.front() == '\t'))
        v.remove_prefix(1);
      while (!v.empty() && (v.back() == '\r' || v.back() == '\n' || v.back() == ' '))
        v.remove_suffix(1);
      *static_cast<std::string*>(user) = std::string(v);
    }
  }
  return size * n;
}

class client {
public:
  explicit client(const settings& s) : s_(s), root_(api_root(s.server)) {
    static curl_global global;
    h_ = curl_easy_init();
    if (!h_)
      throw client_error("cannot initialise libcurl");
  }
  ~client() {
    if (h_)
      curl_easy_cleanup(h_);
  }
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  /// One path segment, percent-encoded.
  std::string esc(std::string_view segment) const {
    char* e = curl_easy_escape(h_, segment.data(), static_cast<int>(segment.size()));
    std::string out = e ? e : "";
    curl_free(e);
    return out;
  }

  /// One request; throws client_error when the server cannot be reached.
  /// `timeout_s` bounds the whole exchange.
  response call(const std::string& method, const std::string& path,
                const std::optional<json::value>& body = std::nullopt, long timeout_s = 60) {
    response r;
    std::string payload = body ? to_json(*body) : std::string{};
    std::string url = root_ + path;
    char errbuf[CURL_ERROR_SIZE] = {0};
    curl_easy_reset(h_);
    curl_easy_setopt(h_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h_, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h_, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h_, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(h_, CURLOPT_TIMEOUT, timeout_s);
    curl_easy_setopt(h_, CURLOPT_USERAGENT, "stepflow-cli");
    curl_easy_setopt(h_, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h_, CURLOPT_WRITEDATA, &r.body);
    curl_easy_setopt(h_, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h_, CURLOPT_HEADERDATA, &r.retry_after);
    if (s_.insecure) {
      curl_easy_setopt(h_, CURLOPT_SSL_VERIFYPEER, 0L);
      curl_easy_setopt(h_, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (s_.have_password) {
      curl_easy_setopt(h_, CURLOPT_HTTPAUTH, static_cast<long>(CURLAUTH_BASIC));
      curl_easy_setopt(h_, CURLOPT_USERNAME, s_.user.c_str());
      curl_easy_setopt(h_, CURLOPT_PASSWORD, s_.password.c_str());
    }
    curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, "Accept: application/json");
    if (method == "GET") {
      curl_easy_setopt(h_, CURLOPT_HTTPGET, 1L);
    } else {
      curl_easy_setopt(h_, CURLOPT_CUSTOMREQUEST, method.c_str());
      if (body) {
        headers = curl_slist_append(headers, "Content-Type: application/json");
        curl_easy_setopt(h_, CURLOPT_POSTFIELDS, payload.c_str());
        curl_easy_setopt(h_, CURLOPT_POSTFIELDSIZE, static_cast<long>(payload.size()));
      } else if (method == "POST") {
        curl_easy_setopt(h_, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(h_, CURLOPT_POSTFIELDSIZE, 0L);
      }
    }
    curl_easy_setopt(h_, CURLOPT_HTTPHEADER, headers);
    auto rc = curl_easy_perform(h_);
    curl_slist_free_all(headers);
    if (rc != CURLE_OK) {
      std::string why = errbuf[0] ? errbuf : curl_easy_strerror(rc);
      while (!why.empty() && (why.back() == '\n' || why.back() == '.'))
        why.pop_back();
      if (rc == CURLE_OPERATION_TIMEDOUT)
        throw client_error(fmt::format("the server at {} did not answer in time ({})",
                                       display_url(s_.server), why));
      throw client_error(fmt::format("cannot reach the server at {}: {}",
                                     display_url(s_.server), why));
    }
    curl_easy_getinfo(h_, CURLINFO_RESPONSE_CODE, &r.status);
    return r;
  }

  /// A request that must succeed (2xx); returns the parsed body. Any other
  /// status throws the server's "error" sentence.
  json::value expect(const std::string& method, const std::string& path,
                     const std::optional<json::value>& body = std::nullopt, long timeout_s = 60,
                     long* status_out = nullptr) {
    auto r = call(method, path, body, timeout_s);
    if (status_out)
      *status_out = r.status;
    if (r.status < 200 || r.status >= 300)
      throw client_error(error_sentence(r));
    if (r.body.empty())
      return nullptr;
    auto v = parse_json(r.body, "response");
    if (!v)
      throw client_error(fmt::format("the server at {} answered HTTP {} with a body that is not "
                                     "JSON", display_url(s_.server), r.status));
    return std::move(*v);
  }

private:
  std::string error_sentence(const response& r) const {
    std::string msg;
    if (auto v = parse_json(r.body, "response"); v && v->is_object())
      if (auto* e = v->get_object().if_contains("error"); e && e->is_string())
        msg = std::string(e->get_string());
    if (msg.empty())
      msg = fmt::format("the server at {} answered HTTP {}", display_url(s_.server), r.status);
    if (r.status == 401)
      msg = s_.have_password
              ? fmt::format("authentication failed: {} refused user {} with this password",
                            display_url(s_.server), s_.user)
              : fmt::format("authentication required: {} needs a password (give --password or "
                            "set STEPFLOW_PASSWORD)", display_url(s_.server));
    if (r.status == 503 && !r.retry_after.empty())
      msg += fmt::format(" (retry after {} s)", r.retry_after);
    return msg;
  }

  const settings& s_;
  std::string root_;
  CURL* h_ = nullptr;
};

// -- JSON helpers -------------------------------------------------------------------

std::string str(const json::value& v, std::string_view key) {
  if (!v.is_object())
    return {};
  auto* p = v.get_object().if_contains(key);
  if (!p || p->is_null())
    return {};
  return p->is_string() ? std::string(p->get_string()) : to_text(*p);
}

int64_t num(const json::value& v, std::string_view key) {
  if (!v.is_object())
    return 0;
  auto* p = v.get_object().if_contains(key);
  if (!p)
    return 0;
  if (p->is_int64())
    return p->get_int64();
  if (p->is_uint64())
    return static_cast<int64_t>(p->get_uint64());
  if (p->is_double())
    return static_cast<int64_t>(p->get_double());
  return 0;
}

const json::array& arr(const json::value& v, std::string_view key) {
  static const json::array empty;
  if (!v.is_object())
    return empty;
  auto* p = v.get_object().if_contains(key);
  return p && p->is_array() ? p->get_array() : empty;
}

const json::array& as_array(const json::value& v) {
  static const json::array empty;
  return v.is_array() ? v.get_array() : empty;
}

void print_json(const json::value& v) {
  std::cout << to_pretty_json(v) << std::endl;
}

// -- tables -------------------------------------------------------------------------

std::string clip(std::string s, size_t max) {
  for (auto& c : s)
    if (c == '\n' || c == '\r' || c == '\t')
      c = ' ';
  if (s.size() > max)
    s = s.substr(0, max - 3) + "...";
  return s;
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
void print_table(const std::vector<std::string>& head, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> w(head.size());
  for (size_t i = 0; i < head.size(); ++i)
    w[i] = head[i].size();
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size() && i < w.size(); ++i)
      w[i] = std::max(w[i], r[i].size());
  auto line = [&](const std::vector<std::string>& r) {
    std::string out;
    for (size_t i = 0; i < r.size(); ++i) {
      if (i + 1 < r.size())
        out += fmt::format("{:<{}}  ", r[i], w[i]);
      else
        out += r[i];
    }
    while (!out.empty() && out.back() == ' ')
      out.pop_back();
    std::cout << out << "\n";
  };
  line(head);
  for (const auto& r : rows)
    line(r);
  std::cout.flush();
}

std::string seconds_text(int64_t from, int64_t to) {
  if (from <= 0 || to < from)
    return "-";
  auto secs = static_cast<double>(to - from) / 1e9;
  if (secs < 1.0)
    return fmt::format("{:.1f}ms", secs * 1e3);
  return fmt::format("{:.3f}s", secs);
}

/// "k=v": v is parsed as JSON when it is valid JSON, else taken as a string
/// (as `stepflow run --param`).
void parse_param(const std::string& kv, json::object& out) {
  auto eq = kv.find('=');
  if (eq == std::string::npos || eq == 0)
    throw client_error(fmt::format("--param {} must have the form key=value", quote_json(kv)));
  auto text = kv.substr(eq + 1);
  auto v = parse_json(text, "param");
  out[kv.substr(0, eq)] = v ? std::move(*v) : json::value(json::string(text));
}

/// A JSON object from FILE ("-" reads stdin), with "name" defaulting to the
/// file name without .json (PowerFlow's id rule).
json::object read_object_file(const std::string& file, const char* what) {
  std::string text;
  std::string source = file;
  if (file == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    source = "stdin";
  } else {
    auto t = read_file(file);
    if (!t)
      throw client_error(message_of(t.error()));
    text = std::move(*t);
  }
  auto v = parse_json(text, source);
  if (!v)
    throw client_error(message_of(v.error()));
  if (!v->is_object())
    throw client_error(fmt::format("{}: {} must be a JSON object", source, what));
  auto o = std::move(v->get_object());
  auto* n = o.if_contains("name");
  if ((!n || !n->is_string() || n->get_string().empty())) {
    if (file == "-")
      throw client_error(fmt::format("the {} read from stdin has no \"name\"", what));
    o["name"] = file_stem(file);
  }
  return o;
}

// -- tasks --------------------------------------------------------------------------

bool ended(const std::string& status) {
  return status == "success" || status == "failed" || status == "revoked";
}

/// The step table of a task, with each step's log lines (as `stepflow run`).
void print_task(client& c, const json::value& t, bool with_logs) {
  auto cfg = str(t, "configuration");
  auto lvl = num(t, "log_level");
  std::cout << fmt::format("task {} application {}{} queue {} priority {} log level {}",
                           str(t, "task_id"), quote_json(str(t, "application")),
                           cfg.empty() ? std::string{} : fmt::format(" configuration {}", quote_json(cfg)),
                           str(t, "queue"), num(t, "priority"), log_level_name(static_cast<int>(lvl)))
            << "\n";
  size_t ok = 0, failed = 0, skipped = 0, i = 0;
  for (const auto& s : arr(t, "steps")) {
    auto st = str(s, "status");
    auto name = str(s, "name");
    ok += st == "success";
    failed += st == "failed";
    skipped += st == "skipped";
    std::string line = fmt::format("  {:<8} {:<32} {:>9}", st, name,
                                   seconds_text(num(s, "started_ns"), num(s, "ended_ns")));
    auto err = str(s, "error");
    if (!err.empty())
      line += "  " + err;
    std::cout << line << "\n";
    if (with_logs && num(s, "log_count") > 0) {
      auto r = c.call("GET", fmt::format("/tasks/{}/steps/{}/logs", c.esc(str(t, "task_id")), i));
      auto lines = r.status == 200 ? parse_json(r.body, "logs") : caf::expected<json::value>(nullptr);
      if (lines)
        for (const auto& l : as_array(*lines)) {
          auto msg = str(l, "message");
          if (msg == "start " + name || msg.rfind("stop " + name + "|", 0) == 0 || msg == err)
            continue;
          std::cout << fmt::format("           {:<8} {}", str(l, "levelname"), msg) << "\n";
        }
    }
    ++i;
  }
  auto status = str(t, "status");
  auto terr = str(t, "error");
  std::cout << fmt::format("run {} {}{}: {} succeeded, {} failed, {} skipped", str(t, "task_id"),
                           status,
                           ended(status) ? " in " + seconds_text(num(t, "started_ns"), num(t, "ended_ns"))
                                         : std::string{},
                           ok, failed, skipped)
            << (terr.empty() ? "" : "; " + terr) << std::endl;
}

/// Waits up to `wait_s` seconds for a task: POST answered 202 (or replay);
/// polls GET /tasks/ID. Returns the last task object seen.
json::value poll_task(client& c, const std::string& id, json::value current, int wait_s,
                      std::chrono::steady_clock::time_point start) {
  auto deadline = start + std::chrono::seconds(wait_s);
  auto delay = std::chrono::milliseconds(50);
  while (!ended(str(current, "status")) && std::chrono::steady_clock::now() < deadline) {
    auto left = deadline - std::chrono::steady_clock::now();
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(delay, left));
    delay = std::min(delay * 2, std::chrono::milliseconds(500));
    current = c.expect("GET", "/tasks/" + c.esc(id));
  }
  return current;
}

/// Prints a task reached with --wait; the exit code follows its status.
int finish_wait(client& c, const settings& s, const json::value& t, int wait_s) {
  if (s.json_output)
    print_json(t);
  else
    print_task(c, t, true);
  auto st = str(t, "status");
  if (!ended(st)) {
    std::cerr << fmt::format("stepflow: task {} is still {} after {} s", str(t, "task_id"), st, wait_s)
              << std::endl;
    return exit_failed;
  }
  return st == "success" ? exit_ok : exit_failed;
}

/// Submits (run or replay) and, with wait_s >= 0, waits for the end.
int submit(client& c, const settings& s, const std::string& path, std::optional<json::value> body,
           int wait_s) {
  auto start = std::chrono::steady_clock::now();
  if (wait_s < 0) {
    auto v = c.expect("POST", path, body);
    if (s.json_output)
      print_json(v);
    else
      std::cout << str(v, "task_id") << std::endl;
    return exit_ok;
  }
  // The server waits at most 30 s per request; longer waits poll.
  int server_wait = std::min(wait_s, 30);
  bool can_wait = path.find("/replay") == std::string::npos;
  auto v = c.expect("POST", can_wait ? fmt::format("{}?wait={}", path, server_wait) : path, body,
                    server_wait + 60);
  auto id = str(v, "task_id");
  if (!v.is_object() || !v.get_object().contains("steps"))
    v = c.expect("GET", "/tasks/" + c.esc(id));
  v = poll_task(c, id, std::move(v), wait_s, start);
  return finish_wait(c, s, v, wait_s);
}

// -- commands -----------------------------------------------------------------------

int apps_list(client& c, const settings& s) {
  auto v = c.expect("GET", "/applications");
  if (s.json_output)
    return print_json(v), exit_ok;
  std::vector<std::vector<std::string>> rows;
  for (const auto& a : as_array(v))
    rows.push_back({str(a, "name"), str(a, "steps"), str(a, "configuration"), str(a, "version"),
                    clip(str(a, "friendly_name"), 40)});
  print_table({"NAME", "STEPS", "CONFIGURATION", "VERSION", "FRIENDLY NAME"}, rows);
  return exit_ok;
}

int apps_get(client& c, const settings& s, const std::string& name) {
  auto v = c.expect("GET", "/applications/" + c.esc(name));
  if (s.json_output)
    return print_json(v), exit_ok;
  std::cout << fmt::format("{:<15}{}\n", "application", str(v, "name"));
  for (auto [label, key] : {std::pair{"name", "friendly_name"}, {"description", "description"},
                            {"author", "author"}, {"version", "version"},
                            {"configuration", "configuration"}})
    if (auto val = str(v, key); !val.empty())
      std::cout << fmt::format("{:<15}{}\n", label, clip(val, 100));
  if (auto& vars = arr(v, "app_variables"); !vars.empty()) {
    std::cout << "\nvariables\n";
    std::vector<std::vector<std::string>> rows;
    for (const auto& x : vars) {
      std::string val = "-";
      for (auto key : {"value", "default_value"})
        if (auto* p = x.get_object().if_contains(key); p && !p->is_null()) {
          val = clip(to_json(*p), 40);
          break;
        }
      auto* req = x.is_object() ? x.get_object().if_contains("required") : nullptr;
      rows.push_back({"  " + str(x, "name"), req && req->is_bool() && req->get_bool() ? "yes" : "no", val,
                      clip(str(x, "description"), 60)});
    }
    print_table({"  NAME", "REQUIRED", "VALUE", "DESCRIPTION"}, rows);
  }
  std::cout << "\nsteps\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& st : arr(v, "steps")) {
    std::string next;
    for (const auto& o : arr(st, "output_to"))
      next += (next.empty() ? "" : ", ") + (o.is_string() ? std::string(o.get_string()) : to_json(o));
    rows.push_back({"  " + str(st, "name"), str(st, "file"), next.empty() ? "-" : next});
  }
  print_table({"  NAME", "TYPE", "OUTPUT TO"}, rows);
  return exit_ok;
}

int apps_put(client& c, const settings& s, const std::string& file) {
  auto body = read_object_file(file, "an application");
  long status = 0;
  auto v = c.expect("POST", "/applications", json::value(std::move(body)), 60, &status);
  if (s.json_output)
    return print_json(v), exit_ok;
  auto n = arr(v, "steps").size();
  std::cout << fmt::format("{} application {} ({} step{})", status == 201 ? "created" : "replaced",
                           quote_json(str(v, "name")), n, n == 1 ? "" : "s")
            << std::endl;
  return exit_ok;
}

int configs_list(client& c, const settings& s) {
  auto v = c.expect("GET", "/configurations");
  if (s.json_output)
    return print_json(v), exit_ok;
  std::vector<std::vector<std::string>> rows;
  for (const auto& x : as_array(v)) {
    size_t enc = 0;
    for (const auto& d : arr(x, "configuration_data"))
      if (auto* p = d.is_object() ? d.get_object().if_contains("encrypted") : nullptr; p && p->is_bool())
        enc += p->get_bool();
    rows.push_back({str(x, "name"), std::to_string(arr(x, "configuration_data").size()),
                    std::to_string(enc), str(x, "version"), clip(str(x, "friendly_name"), 40)});
  }
  print_table({"NAME", "VALUES", "ENCRYPTED", "VERSION", "FRIENDLY NAME"}, rows);
  return exit_ok;
}

int configs_get(client& c, const settings& s, const std::string& name) {
  auto v = c.expect("GET", "/configurations/" + c.esc(name));
  if (s.json_output)
    return print_json(v), exit_ok;
  std::cout << fmt::format("configuration  {}\n", str(v, "name"));
  for (auto [label, key] : {std::pair{"name", "friendly_name"}, {"description", "description"},
                            {"version", "version"}})
    if (auto val = str(v, key); !val.empty())
      std::cout << fmt::format("{:<15}{}\n", label, clip(val, 100));
  std::cout << "\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& d : arr(v, "configuration_data")) {
    auto* e = d.is_object() ? d.get_object().if_contains("encrypted") : nullptr;
    bool enc = e && e->is_bool() && e->get_bool();
    auto* val = d.is_object() ? d.get_object().if_contains("value") : nullptr;
    std::string shown = !val ? "-" : val->is_string() ? std::string(val->get_string()) : to_json(*val);
    rows.push_back({"  " + str(d, "name"), enc ? "yes" : "no", clip(shown, 80)});
  }
  print_table({"  NAME", "ENCRYPTED", "VALUE"}, rows);
  return exit_ok;
}

int configs_put(client& c, const settings& s, const std::string& file) {
  auto body = read_object_file(file, "a configuration");
  // `configs get` shows encrypted values as the mask; putting that back would
  // replace the secret with the mask itself.
  if (auto* data = body.if_contains("configuration_data"); data && data->is_array())
    for (const auto& d : data->get_array()) {
      auto* e = d.is_object() ? d.get_object().if_contains("encrypted") : nullptr;
      auto* v = d.is_object() ? d.get_object().if_contains("value") : nullptr;
      if (e && e->is_bool() && e->get_bool() && v && v->is_string() && v->get_string() == "********")
        throw client_error(fmt::format(
          "{}: the encrypted value {} is the mask \"********\" shown by configs get; put the real "
          "value, or the secret would be replaced by the mask", file, quote_json(str(d, "name"))));
    }
  long status = 0;
  auto v = c.expect("POST", "/configurations", json::value(std::move(body)), 60, &status);
  if (s.json_output)
    return print_json(v), exit_ok;
  size_t enc = 0;
  for (const auto& d : arr(v, "configuration_data"))
    if (auto* p = d.is_object() ? d.get_object().if_contains("encrypted") : nullptr; p && p->is_bool())
      enc += p->get_bool();
  std::cout << fmt::format("{} configuration {} ({} values, {} encrypted)",
                           status == 201 ? "created" : "replaced", quote_json(str(v, "name")),
                           arr(v, "configuration_data").size(), enc)
            << std::endl;
  return exit_ok;
}

int delete_named(client& c, const settings& s, const char* kind, const std::string& collection,
                 const std::string& name) {
  auto v = c.expect("DELETE", "/" + collection + "/" + c.esc(name));
  if (s.json_output)
    return print_json(v), exit_ok;
  std::cout << fmt::format("deleted {} {}", kind, quote_json(name)) << std::endl;
  return exit_ok;
}

int steps_list(client& c, const settings& s) {
  auto v = c.expect("GET", "/steps");
  if (s.json_output)
    return print_json(v), exit_ok;
  std::vector<std::vector<std::string>> rows;
  for (const auto& t : as_array(v))
    rows.push_back({str(t, "name"), str(t, "version"), str(t, "syncpack"), clip(str(t, "description"), 70)});
  print_table({"NAME", "VERSION", "SYNCPACK", "DESCRIPTION"}, rows);
  return exit_ok;
}

int steps_get(client& c, const settings& s, const std::string& name) {
  auto v = c.expect("GET", "/steps/" + c.esc(name));
  if (s.json_output)
    return print_json(v), exit_ok;
  std::cout << fmt::format("{:<13}{}\n", "step type", str(v, "name"));
  for (auto [label, key] : {std::pair{"name", "friendly_name"}, {"description", "description"},
                            {"version", "version"}, {"syncpack", "syncpack"}})
    if (auto val = str(v, key); !val.empty())
      std::cout << fmt::format("{:<13}{}\n", label, val);
  std::cout << "\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& p : arr(v, "parameters")) {
    auto* req = p.is_object() ? p.get_object().if_contains("required") : nullptr;
    auto* def = p.is_object() ? p.get_object().if_contains("default_value") : nullptr;
    rows.push_back({"  " + str(p, "name"), str(p, "type"),
                    req && req->is_bool() && req->get_bool() ? "yes" : "no",
                    def && !def->is_null() ? clip(to_json(*def), 20) : "-",
                    clip(str(p, "description"), 70)});
  }
  print_table({"  PARAMETER", "TYPE", "REQUIRED", "DEFAULT", "DESCRIPTION"}, rows);
  return exit_ok;
}

struct run_args {
  std::string app;
  std::vector<std::string> params;
  std::string config;
  std::string queue;
  std::optional<int> priority;
  std::string log_level;
  int wait = -1;
};

int run_app(client& c, const settings& s, const run_args& a) {
  json::object body;
  json::object params;
  for (const auto& p : a.params)
    parse_param(p, params);
  if (!params.empty())
    body["params"] = std::move(params);
  if (!a.config.empty())
    body["configuration"] = a.config;
  if (!a.queue.empty())
    body["queue"] = a.queue;
  if (a.priority)
    body["priority"] = *a.priority;
  if (!a.log_level.empty()) {
    auto lvl = parse_log_level(a.log_level);
    if (!lvl)
      throw client_error(fmt::format("--log-level {} is not debug, info, warning or error",
                                     quote_json(a.log_level)));
    body["log_level"] = *lvl;
  }
  return submit(c, s, "/applications/" + c.esc(a.app) + "/run", json::value(std::move(body)), a.wait);
}

struct list_args {
  std::string app, status, queue, configuration, since, until;
  int limit = 20;
};

int tasks_list(client& c, const settings& s, const list_args& a) {
  std::string q = fmt::format("?limit={}", a.limit);
  for (auto [key, val] : {std::pair{"app", &a.app}, {"status", &a.status}, {"queue", &a.queue},
                          {"configuration", &a.configuration}, {"since", &a.since}, {"until", &a.until}})
    if (!val->empty())
      q += fmt::format("&{}={}", key, c.esc(*val));
  auto v = c.expect("GET", "/tasks" + q);
  if (s.json_output)
    return print_json(v), exit_ok;
  std::vector<std::vector<std::string>> rows;
  for (const auto& t : as_array(v)) {
    auto st = str(t, "status");
    rows.push_back({str(t, "task_id"), str(t, "application"), st, str(t, "queue"), str(t, "priority"),
                    str(t, "created"),
                    ended(st) ? seconds_text(num(t, "started_ns"), num(t, "ended_ns")) : "-"});
  }
  print_table({"TASK", "APPLICATION", "STATUS", "QUEUE", "PRIORITY", "CREATED", "DURATION"}, rows);
  return exit_ok;
}

int tasks_get(client& c, const settings& s, const std::string& id) {
  auto v = c.expect("GET", "/tasks/" + c.esc(id));
  if (s.json_output)
    return print_json(v), exit_ok;
  print_task(c, v, true);
  return exit_ok;
}

int tasks_revoke(client& c, const settings& s, const std::string& id, bool terminate) {
  auto v = c.expect("POST", "/tasks/" + c.esc(id) + "/revoke",
                    json::value(json::object{{"terminate", terminate}}));
  if (s.json_output)
    return print_json(v), exit_ok;
  if (v.is_object() && v.get_object().contains("application"))
    std::cout << fmt::format("revoked {} tasks of application {}", num(v, "revoked"),
                             quote_json(str(v, "application")))
              << std::endl;
  else
    std::cout << fmt::format("revoked task {}{}", id, terminate ? " (running step terminated)" : "")
              << std::endl;
  return exit_ok;
}

int tasks_logs(client& c, const settings& s, const std::string& id, const std::string& step) {
  auto v = c.expect("GET", fmt::format("/tasks/{}/steps/{}/logs", c.esc(id), c.esc(step)));
  if (s.json_output)
    return print_json(v), exit_ok;
  for (const auto& l : as_array(v))
    std::cout << fmt::format("{}  {:<8} {}", str(l, "time"), str(l, "levelname"), str(l, "message"))
              << "\n";
  std::cout.flush();
  return exit_ok;
}

int status_cmd(client& c, const settings& s) {
  auto v = c.expect("GET", "/status");
  if (s.json_output)
    return print_json(v), exit_ok;
  std::cout << fmt::format("{:<20}{}\n{:<20}{}\n{:<20}{}\n", "status", str(v, "status"),
                           "queued and running", num(v, "queued_and_running"), "running",
                           num(v, "running"));
  if (v.is_object())
    if (auto* st = v.get_object().if_contains("store"); st && st->is_object())
      std::cout << fmt::format("{:<20}{} ({} commits)\n", "store", str(*st, "status"), num(*st, "commits"));
  std::cout << "\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& q : arr(v, "queues"))
    rows.push_back({str(q, "name"), str(q, "workers"), str(q, "queued"), str(q, "running")});
  print_table({"QUEUE", "WORKERS", "QUEUED", "RUNNING"}, rows);
  return exit_ok;
}

int about_cmd(client& c, const settings& s) {
  auto v = c.expect("GET", "/about");
  if (s.json_output)
    return print_json(v), exit_ok;
  std::cout << fmt::format("{} {} ({})\n", str(v, "name"), str(v, "version"), str(v, "api"));
  if (v.is_object())
    if (auto* b = v.get_object().if_contains("build"); b && b->is_object())
      std::cout << fmt::format("built {} with compiler {}\n", str(*b, "date"), str(*b, "compiler"));
  if (v.is_object())
    if (auto* d = v.get_object().if_contains("dependencies"); d && d->is_object()) {
      std::string deps;
      for (const auto& kv : d->get_object())
        deps += fmt::format("{}{} {}", deps.empty() ? "" : ", ", std::string(kv.key()), to_text(kv.value()));
      std::cout << "dependencies: " << deps << "\n";
    }
  std::cout << "server: " << display_url(s.server) << std::endl;
  return exit_ok;
}

} // namespace

bool wants_client(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--server") == 0 || std::strncmp(argv[i], "--server=", 9) == 0)
      return true;
  if (const char* env = std::getenv("STEPFLOW_SERVER"); env && *env && argc > 1)
    for (const char* c : env_commands)
      if (std::strcmp(argv[1], c) == 0)
        return true;
  return false;
}

int run_client(int argc, char** argv, const cli_environment& env) {
  CLI::App app{"stepflow remote CLI: manage a running `stepflow serve` over its REST API", "stepflow"};
  app.set_version_flag("--version", "stepflow " + env.version);
  app.require_subcommand(1, 1);
  app.fallthrough();
  settings s;
  app.add_option("--server", s.server, "Server URL, e.g. http://127.0.0.1:8080 (or $STEPFLOW_SERVER)")
    ->envname("STEPFLOW_SERVER");
  app.add_option("--user", s.user, "User name (default isadmin, or $STEPFLOW_USER)")->envname("STEPFLOW_USER");
  auto* pw = app.add_option("--password", s.password, "Password (or $STEPFLOW_PASSWORD)");
  app.add_flag("--insecure", s.insecure, "Do not verify the server's TLS certificate");
  app.add_flag("--json", s.json_output, "Print the server's JSON instead of a table");

  auto group = [&](const char* name, const char* what) {
    auto* g = app.add_subcommand(name, what);
    g->require_subcommand(1, 1);
    g->fallthrough();
    return g;
  };
  auto sub = [](CLI::App* parent, const char* name, const char* what) {
    auto* x = parent->add_subcommand(name, what);
    x->fallthrough();
    return x;
  };
  std::string name, file, id, step;

  auto* apps = group("apps", "Applications: list, get, put, delete");
  auto* apps_list_c = sub(apps, "list", "List applications");
  auto* apps_get_c = sub(apps, "get", "Show an application");
  apps_get_c->add_option("name", name, "Application id")->required();
  auto* apps_put_c = sub(apps, "put", "Add or replace an application from a JSON file (- for stdin)");
  apps_put_c->add_option("file", file, "Application file")->required();
  auto* apps_del_c = sub(apps, "delete", "Delete an application");
  apps_del_c->add_option("name", name, "Application id")->required();

  auto* cfgs = group("configs", "Configuration objects: list, get, put, delete");
  auto* cfgs_list_c = sub(cfgs, "list", "List configurations (encrypted values masked)");
  auto* cfgs_get_c = sub(cfgs, "get", "Show a configuration (encrypted values masked)");
  cfgs_get_c->add_option("name", name, "Configuration name")->required();
  auto* cfgs_put_c = sub(cfgs, "put", "Add or replace a configuration from a JSON file (- for stdin)");
  cfgs_put_c->add_option("file", file, "Configuration file")->required();
  auto* cfgs_del_c = sub(cfgs, "delete", "Delete a configuration");
  cfgs_del_c->add_option("name", name, "Configuration name")->required();

  auto* steps = group("steps", "Step types: list, get");
  auto* steps_list_c = sub(steps, "list", "List step types");
  auto* steps_get_c = sub(steps, "get", "Show a step type and its parameters");
  steps_get_c->add_option("name", name, "Step type")->required();

  run_args ra;
  int priority = -1;
  auto* run = app.add_subcommand("run", "Run an application on the server");
  run->fallthrough();
  run->add_option("app", ra.app, "Application id")->required();
  run->add_option("--param", ra.params, "One-time parameter key=value (repeatable)");
  run->add_option("--config", ra.config, "Configuration name (overrides the application's)");
  run->add_option("--queue", ra.queue, "Queue name (default: default)");
  auto* prio = run->add_option("--priority", priority, "0 (lowest, default) to 9 (highest)");
  run->add_option("--log-level", ra.log_level, "debug, info, warning or error (or 10..40)");
  run->add_option("--wait", ra.wait, "Wait up to N seconds and print the steps; exit 1 unless it succeeded")
    ->check(CLI::NonNegativeNumber);

  auto* tasks = group("tasks", "Tasks (runs): get, list, replay, revoke, logs");
  auto* tasks_get_c = sub(tasks, "get", "Show a task and its steps");
  tasks_get_c->add_option("id", id, "Task id")->required();
  list_args la;
  auto* tasks_list_c = sub(tasks, "list", "List tasks, newest first");
  tasks_list_c->add_option("--app", la.app, "Only this application");
  tasks_list_c->add_option("--status", la.status, "pending, running, success, failed or revoked");
  tasks_list_c->add_option("--queue", la.queue, "Only this queue");
  tasks_list_c->add_option("--configuration", la.configuration, "Only this configuration");
  tasks_list_c->add_option("--since", la.since, "Created at or after (ISO-8601 or Unix seconds)");
  tasks_list_c->add_option("--until", la.until, "Created at or before (ISO-8601 or Unix seconds)");
  tasks_list_c->add_option("--limit", la.limit, "At most N tasks (default 20)")->check(CLI::Range(1, 10000));
  int replay_wait = -1;
  auto* tasks_replay_c = sub(tasks, "replay", "Run a task again (same variables, configuration, queue)");
  tasks_replay_c->add_option("id", id, "Task id")->required();
  tasks_replay_c->add_option("--wait", replay_wait, "Wait up to N seconds for the new run")
    ->check(CLI::NonNegativeNumber);
  bool terminate = false;
  auto* tasks_revoke_c = sub(tasks, "revoke", "Revoke a task (or every task of an application id)");
  tasks_revoke_c->add_option("id", id, "Task id or application id")->required();
  tasks_revoke_c->add_flag("--terminate", terminate, "Also stop the running step");
  auto* tasks_logs_c = sub(tasks, "logs", "Log lines of one step");
  tasks_logs_c->add_option("id", id, "Task id")->required();
  tasks_logs_c->add_option("step", step, "Step name or index")->required();

  auto* status = app.add_subcommand("status", "Server health: queues, workers, store (no login needed)");
  status->fallthrough();
  auto* about = app.add_subcommand("about", "Server version and build");
  about->fallthrough();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return exit_ok;
  } catch (const CLI::CallForAllHelp&) {
    std::cout << app.help("", CLI::AppFormatMode::All);
    return exit_ok;
  } catch (const CLI::CallForVersion& e) {
    std::cout << e.what() << "\n";
    return exit_ok;
  } catch (const CLI::ParseError& e) {
    std::string what = e.what();
    while (!what.empty() && (what.back() == '\n' || what.back() == '.'))
      what.pop_back();
    std::cerr << "stepflow: " << what << " (see stepflow --server URL --help)\n";
    return exit_usage;
  }
  if (s.server.empty()) {
    std::cerr << "stepflow: --server needs a URL such as http://127.0.0.1:8080\n";
    return exit_usage;
  }
  if (pw->count() > 0) {
    s.have_password = true;
  } else if (const char* p = std::getenv("STEPFLOW_PASSWORD"); p && *p) {
    s.password = p;
    s.have_password = true;
  }
  if (prio->count() > 0)
    ra.priority = priority;

  try {
    client c{s};
    if (apps_list_c->parsed())
      return apps_list(c, s);
    if (apps_get_c->parsed())
      return apps_get(c, s, name);
    if (apps_put_c->parsed())
      return apps_put(c, s, file);
    if (apps_del_c->parsed())
      return delete_named(c, s, "application", "applications", name);
    if (cfgs_list_c->parsed())
      return configs_list(c, s);
    if (cfgs_get_c->parsed())
      return configs_get(c, s, name);
    if (cfgs_put_c->parsed())
      return configs_put(c, s, file);
    if (cfgs_del_c->parsed())
      return delete_named(c, s, "configuration", "configurations", name);
    if (steps_list_c->parsed())
      return steps_list(c, s);
    if (steps_get_c->parsed())
      return steps_get(c, s, name);
    if (run->parsed())
      return run_app(c, s, ra);
    if (tasks_get_c->parsed())
      return tasks_get(c, s, id);
    if (tasks_list_c->parsed())
      return tasks_list(c, s, la);
    if (tasks_replay_c->parsed())
      return submit(c, s, "/tasks/" + c.esc(id) + "/replay", std::nullopt, replay_wait);
    if (tasks_revoke_c->parsed())
      return tasks_revoke(c, s, id, terminate);
    if (tasks_logs_c->parsed())
      return tasks_logs(c, s, id, step);
    if (status->parsed())
      return status_cmd(c, s);
    if (about->parsed())
      return about_cmd(c, s);
    std::cout << app.help();
    return exit_usage;
  } catch (const client_error& e) {
    std::cerr << "stepflow: " << e.what() << std::endl;
    return exit_usage;
  } catch (const std::exception& e) {
    std::cerr << "stepflow: internal error: " << e.what() << std::endl;
    return exit_usage;
  }
}

} // namespace stepflow::actors
