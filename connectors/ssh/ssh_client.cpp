// The libssh adapter (see ssh_client.hpp). Every libssh handle is owned by a
// unique_ptr; every blocking libssh call is bounded by the session timeout,
// which is re-armed to the time left before each phase; the command's output
// is read in slices of at most 100 ms so the deadline and the cancel flag
// are honoured while it runs.
#include "ssh/ssh_client.hpp"

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>

#include <fmt/format.h>
#include <libssh/callbacks.h>
#include <libssh/libssh.h>

#include "stepflow/runtime/log_level.hpp"

namespace stepflow::connectors {

namespace {

using clock_type = std::chrono::steady_clock;

constexpr int poll_slice_ms = 100;
/// Bound for the polite goodbye (signal, channel close, disconnect).
constexpr long cleanup_timeout_ms = 1000;
constexpr std::size_t read_chunk = 16 * 1024;
constexpr uint32_t write_chunk = 32 * 1024;

// -- RAII over libssh handles ---------------------------------------------------

struct session_free {
  void operator()(ssh_session s) const noexcept {
    if (ssh_is_connected(s))
      ssh_disconnect(s);
    ssh_free(s);
  }
};
using session_ptr = std::unique_ptr<ssh_session_struct, session_free>;

struct channel_free {
  void operator()(ssh_channel c) const noexcept { ssh_channel_free(c); }
};
using channel_ptr = std::unique_ptr<ssh_channel_struct, channel_free>;

struct key_free {
  void operator()(ssh_key k) const noexcept { ssh_key_free(k); }
};
using key_ptr = std::unique_ptr<ssh_key_struct, key_free>;

struct cstring_free {
  void operator()(char* s) const noexcept { ssh_string_free_char(s); }
};
using cstring_ptr = std::unique_ptr<char, cstring_free>;

void init_libssh_once() {
  static std::once_flag once;
  std::call_once(once, [] { ssh_init(); });
}

std::string normalize_fingerprint(std::string_view fp) {
  std::string out(fp);
  while (!out.empty() && (out.back() == '=' || out.back() == ' '))
    out.pop_back();
  while (!out.empty() && out.front() == ' ')
    out.erase(out.begin());
  return out;
}

std::string auth_methods_text(int methods) {
  std::string out;
  auto add = [&](int bit, const char* name) {
    if (methods & bit) {
      if (!out.empty())
        out += ", ";
      out += name;
    }
  };
  add(SSH_AUTH_METHOD_PUBLICKEY, "publickey");
  add(SSH_AUTH_METHOD_PASSWORD, "password");
  add(SSH_AUTH_METHOD_INTERACTIVE, "keyboard-interactive");
  add(SSH_AUTH_METHOD_HOSTBASED, "hostbased");
  add(SSH_AUTH_METHOD_GSSAPI_MIC, "gssapi-with-mic");
  return out.empty() ? "none known" : out;
}

/// One call: a session, its phases, and the sentence prefix for errors.
class ssh_call {
public:
  ssh_call(const ssh_command_request& req, const ssh_logger& log)
    : req_(req), log_(log),
      prefix_(fmt::format("ssh {}@{}:{}", req.user, req.host, req.port)) {
  }

  caf::expected<ssh_command_result> run() {
    init_libssh_once();
    if (auto err = connect())
      return err;
    if (auto err = check_host_key())
      return err;
    if (auto err = authenticate())
      return err;
    return execute();
  }

private:
  // -- errors and time --------------------------------------------------------

  caf::error fail(errc code, std::string what) const {
    return make_error(code, fmt::format("{}: {}", prefix_, what));
  }

  /// libssh's last error text for the session (never holds a secret).
  std::string lib_error() const {
    const char* e = session_ ? ssh_get_error(session_.get()) : nullptr;
    return e && *e ? std::string(e) : std::string("unknown libssh error");
  }

  bool expired() const { return clock_type::now() >= req_.deadline; }

  caf::error timed_out(std::string_view phase) const {
    return fail(errc::timeout, fmt::format("timed out after {} s while {}",
                                           req_.timeout_seconds, phase));
  }

  caf::error check_cancelled(std::string_view phase) const {
    if (req_.cancelled && req_.cancelled->load())
      return fail(errc::cancelled, fmt::format("cancelled while {}", phase));
    return {};
  }

  /// Sets the session timeout to the time left (at most `cap_ms` when >= 0);
  /// an error when the deadline has passed or the step was cancelled.
  caf::error arm(std::string_view phase, long cap_ms = -1) {
    if (auto err = check_cancelled(phase))
      return err;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(req_.deadline
                                                                      - clock_type::now())
                  .count();
    if (left <= 0)
      return timed_out(phase);
    set_timeout(cap_ms >= 0 ? std::min<long>(left, cap_ms) : static_cast<long>(left));
    return {};
  }

  void set_timeout(long ms) {
    long sec = ms / 1000;
    long usec = (ms % 1000) * 1000;
    if (sec == 0 && usec == 0)
      usec = 1000; // 0/0 would mean "no timeout" to libssh
    ssh_options_set(session_.get(), SSH_OPTIONS_TIMEOUT, &sec);
    ssh_options_set(session_.get(), SSH_OPTIONS_TIMEOUT_USEC, &usec);
  }

  /// The error for a failed blocking call: a timeout when the deadline has
  /// passed, else errc::io_error with libssh's reason.
  caf::error io_failure(std::string_view phase) const {
    if (expired())
      return timed_out(phase);
    return fail(errc::io_error, fmt::format("{} failed: {}", phase, lib_error()));
  }

  std::string known_hosts_name() const {
    return req_.known_hosts_file.empty() ? std::string("~/.ssh/known_hosts")
                                         : req_.known_hosts_file;
  }

  // -- phases -----------------------------------------------------------------

  caf::error connect() {
    session_.reset(ssh_new());
    if (!session_)
      return fail(errc::internal, "libssh could not allocate a session");
    auto* s = session_.get();
    int port = req_.port;
    int verbosity = SSH_LOG_NOLOG;
    int no = 0;
    if (ssh_options_set(s, SSH_OPTIONS_HOST, req_.host.c_str()) != SSH_OK
        || ssh_options_set(s, SSH_OPTIONS_PORT, &port) != SSH_OK
        || ssh_options_set(s, SSH_OPTIONS_USER, req_.user.c_str()) != SSH_OK
        || ssh_options_set(s, SSH_OPTIONS_LOG_VERBOSITY, &verbosity) != SSH_OK
        // ~/.ssh/config of the process user must not change what a step does.
        || ssh_options_set(s, SSH_OPTIONS_PROCESS_CONFIG, &no) != SSH_OK)
      return fail(errc::invalid_argument, fmt::format("bad connection options: {}", lib_error()));
    if (!req_.known_hosts_file.empty()) {
      // An explicit file is the only one consulted.
      if (ssh_options_set(s, SSH_OPTIONS_KNOWNHOSTS, req_.known_hosts_file.c_str()) != SSH_OK
          || ssh_options_set(s, SSH_OPTIONS_GLOBAL_KNOWNHOSTS, req_.known_hosts_file.c_str())
               != SSH_OK)
        return fail(errc::invalid_argument,
                    fmt::format("bad known_hosts_file: {}", lib_error()));
    }
    if (auto err = arm("connecting"))
      return err;
    log_(log_level::debug, fmt::format("{}: connecting", prefix_));
    if (ssh_connect(s) != SSH_OK)
      return io_failure("connecting");
    return {};
  }

  caf::error check_host_key() {
    auto* s = session_.get();
    ssh_key raw_key = nullptr;
    if (ssh_get_server_publickey(s, &raw_key) != SSH_OK)
      return io_failure("reading the server's host key");
    key_ptr key{raw_key};
    unsigned char* hash = nullptr;
    size_t hash_len = 0;
    if (ssh_get_publickey_hash(key.get(), SSH_PUBLICKEY_HASH_SHA256, &hash, &hash_len) != SSH_OK)
      return fail(errc::internal, "cannot hash the server's host key");
    cstring_ptr fp_text{ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hash_len)};
    ssh_clean_pubkey_hash(&hash);
    if (!fp_text)
      return fail(errc::internal, "cannot format the server's host key fingerprint");
    auto fp = normalize_fingerprint(fp_text.get());

    if (req_.host_key == ssh_host_key_policy::off) {
      log_(log_level::warning,
           fmt::format("{}: host key not checked (host_key_check off); the server presented {}",
                       prefix_, fp));
      return {};
    }
    if (!req_.host_key_fingerprint.empty()) {
      auto want = normalize_fingerprint(req_.host_key_fingerprint);
      if (want != fp)
        return fail(errc::step_failed,
                    fmt::format("the server's host key {} does not match host_key_fingerprint "
                                "{}; refusing to connect",
                                fp, want));
      return {};
    }
    switch (ssh_session_is_known_server(s)) {
      case SSH_KNOWN_HOSTS_OK:
        return {};
      case SSH_KNOWN_HOSTS_CHANGED:
        return fail(errc::step_failed,
                    fmt::format("the server's host key {} differs from the one in {} (possible "
                                "man-in-the-middle); refusing to connect",
                                fp, known_hosts_name()));
      case SSH_KNOWN_HOSTS_OTHER:
        return fail(errc::step_failed,
                    fmt::format("the server presented a {} host key ({}) but {} lists another "
                                "key type for it; refusing to connect",
                                ssh_key_type_to_char(ssh_key_type(key.get())), fp,
                                known_hosts_name()));
      case SSH_KNOWN_HOSTS_UNKNOWN:
      case SSH_KNOWN_HOSTS_NOT_FOUND:
        if (req_.host_key == ssh_host_key_policy::strict)
          return fail(errc::step_failed,
                      fmt::format("the server's host key {} is not in {} (host_key_check "
                                  "strict); add it there, set host_key_fingerprint, or use "
                                  "host_key_check accept-new",
                                  fp, known_hosts_name()));
        if (ssh_session_update_known_hosts(s) != SSH_OK)
          return fail(errc::io_error, fmt::format("cannot add the host key to {}: {}",
                                                  known_hosts_name(), lib_error()));
        log_(log_level::info, fmt::format("{}: new host, added host key {} to {}", prefix_, fp,
                                          known_hosts_name()));
        return {};
      case SSH_KNOWN_HOSTS_ERROR:
      default:
        return fail(errc::io_error,
                    fmt::format("cannot check {}: {}", known_hosts_name(), lib_error()));
    }
  }

  caf::error authenticate() {
    auto* s = session_.get();
    std::string tried;
    auto note = [&](const char* m) {
      if (!tried.empty())
        tried += ", ";
      tried += m;
    };
    const char* pass = req_.passphrase.empty() ? nullptr : req_.passphrase.c_str();
    if (!req_.private_key.empty() || !req_.private_key_file.empty()) {
      ssh_key raw = nullptr;
      if (!req_.private_key.empty()) {
        if (ssh_pki_import_privkey_base64(req_.private_key.c_str(), pass, nullptr, nullptr, &raw)
            != SSH_OK)
          return fail(errc::invalid_argument,
                      "private_key could not be read (not a private key in PEM or OpenSSH "
                      "format, or a wrong or missing passphrase)");
      } else if (ssh_pki_import_privkey_file(req_.private_key_file.c_str(), pass, nullptr,
                                             nullptr, &raw)
                 != SSH_OK) {
        return fail(errc::invalid_argument,
                    fmt::format("private_key_file {} could not be read (missing, unreadable, "
                                "not a private key, or a wrong or missing passphrase)",
                                req_.private_key_file));
      }
      key_ptr key{raw};
      if (auto err = arm("authenticating with the private key"))
        return err;
      note("publickey");
      int rc = ssh_userauth_publickey(s, nullptr, key.get());
      if (rc == SSH_AUTH_SUCCESS)
        return {};
      if (rc == SSH_AUTH_ERROR)
        return io_failure("authenticating with the private key");
    }
    if (!req_.password.empty()) {
      if (auto err = arm("authenticating with the password"))
        return err;
      note("password");
      int rc = ssh_userauth_password(s, nullptr, req_.password.c_str());
      if (rc == SSH_AUTH_SUCCESS)
        return {};
      if (rc == SSH_AUTH_ERROR)
        return io_failure("authenticating with the password");
      if (ssh_userauth_list(s, nullptr) & SSH_AUTH_METHOD_INTERACTIVE) {
        note("keyboard-interactive");
        rc = keyboard_interactive();
        if (rc == SSH_AUTH_SUCCESS)
          return {};
        if (auto err = check_cancelled("authenticating with keyboard-interactive"))
          return err;
        if (rc == SSH_AUTH_ERROR)
          return io_failure("authenticating with keyboard-interactive");
      }
    }
    return fail(errc::step_failed,
                fmt::format("authentication failed for user {} (tried: {}; the server accepts: "
                            "{})",
                            req_.user, tried, auth_methods_text(ssh_userauth_list(s, nullptr))));
  }

  /// Answers every hidden prompt with the password, for at most 3 rounds.
  /// SSH_AUTH_ERROR also when the deadline passed or the step was cancelled.
  int keyboard_interactive() {
    auto* s = session_.get();
    if (arm("authenticating with keyboard-interactive"))
      return SSH_AUTH_ERROR;
    int rc = ssh_userauth_kbdint(s, nullptr, nullptr);
    for (int round = 0; rc == SSH_AUTH_INFO && round < 3; ++round) {
      int n = ssh_userauth_kbdint_getnprompts(s);
      for (int i = 0; i < n; ++i) {
        char echo = 0;
        ssh_userauth_kbdint_getprompt(s, static_cast<unsigned>(i), &echo);
        // A visible prompt asks for something other than the password.
        const char* answer = echo ? "" : req_.password.c_str();
        if (ssh_userauth_kbdint_setanswer(s, static_cast<unsigned>(i), answer) < 0)
          return SSH_AUTH_ERROR;
      }
      if (arm("authenticating with keyboard-interactive"))
        return SSH_AUTH_ERROR;
      rc = ssh_userauth_kbdint(s, nullptr, nullptr);
    }
    return rc == SSH_AUTH_INFO ? SSH_AUTH_DENIED : rc;
  }

  static void on_exit_signal(ssh_session, ssh_channel, const char* signal, int, const char*,
                             const char*, void* userdata) {
    auto* self = static_cast<ssh_call*>(userdata);
    self->result_.exit_signal = signal ? signal : "unknown";
  }

  /// Asks the server to stop the command, then closes the channel; bounded.
  void abandon(ssh_channel ch) {
    set_timeout(cleanup_timeout_ms);
    ssh_channel_request_send_signal(ch, "TERM");
    ssh_channel_close(ch);
  }

  enum class drained { more, eof, error, over_limit };

  /// Appends what is buffered on one stream.
  drained drain(ssh_channel ch, int is_stderr, std::string& into, char* buf) {
    for (;;) {
      int n = ssh_channel_read_nonblocking(ch, buf, static_cast<uint32_t>(read_chunk), is_stderr);
      if (n == SSH_EOF)
        return drained::eof;
      if (n == SSH_ERROR)
        return drained::error;
      if (n <= 0)
        return drained::more; // nothing buffered now
      into.append(buf, static_cast<std::size_t>(n));
      if (into.size() > req_.max_output_bytes)
        return drained::over_limit;
    }
  }

  caf::expected<ssh_command_result> execute() {
    auto* s = session_.get();
    if (auto err = arm("opening a channel"))
      return err;
    channel_ptr channel{ssh_channel_new(s)};
    if (!channel)
      return fail(errc::internal, "libssh could not allocate a channel");
    auto* ch = channel.get();
    if (ssh_channel_open_session(ch) != SSH_OK)
      return io_failure("opening a session channel");

    ssh_channel_callbacks_struct callbacks;
    std::memset(&callbacks, 0, sizeof(callbacks));
    callbacks.userdata = this;
    callbacks.channel_exit_signal_function = &ssh_call::on_exit_signal;
    ssh_callbacks_init(&callbacks);
    ssh_add_channel_callbacks(ch, &callbacks);
    // The callbacks struct lives on this stack frame: detach before leaving.
    struct detach {
      ssh_channel ch;
      ssh_channel_callbacks cb;
      ~detach() { ssh_remove_channel_callbacks(ch, cb); }
    } detach_guard{ch, &callbacks};

    if (auto err = arm("starting the command"))
      return err;
    auto started = clock_type::now();
    if (ssh_channel_request_exec(ch, req_.command.c_str()) != SSH_OK)
      return io_failure("starting the command");
    log_(log_level::debug, fmt::format("{}: command started ({} bytes of command line)", prefix_,
                                       req_.command.size()));

    std::size_t stdin_sent = 0;
    bool stdin_closed = false;
    auto close_stdin = [&]() -> bool {
      stdin_closed = true;
      return ssh_channel_send_eof(ch) == SSH_OK;
    };
    if (req_.stdin_data.empty() && !close_stdin())
      return io_failure("closing the command's input");

    std::string& out = result_.stdout_text;
    std::string& err_text = result_.stderr_text;
    std::unique_ptr<char[]> buf{new char[read_chunk]};
    for (;;) {
      if (req_.cancelled && req_.cancelled->load()) {
        abandon(ch);
        return fail(errc::cancelled, "cancelled while the command ran; asked the server to "
                                     "stop it (SIGTERM)");
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(req_.deadline
                                                                        - clock_type::now())
                    .count();
      if (left <= 0) {
        abandon(ch);
        return fail(errc::timeout,
                    fmt::format("timed out after {} s while the command ran; asked the server "
                                "to stop it (SIGTERM)",
                                req_.timeout_seconds));
      }
      set_timeout(left);
      // Feed stdin only as far as the remote window allows, so a command
      // that writes before it reads cannot deadlock us.
      while (!stdin_closed && !ssh_channel_is_eof(ch)) {
        uint32_t window = ssh_channel_window_size(ch);
        if (window == 0)
          break;
        auto rest = req_.stdin_data.size() - stdin_sent;
        auto n = static_cast<uint32_t>(std::min<std::size_t>({rest, window, write_chunk}));
        int w = ssh_channel_write(ch, req_.stdin_data.data() + stdin_sent, n);
        if (w == SSH_ERROR)
          return io_failure("writing the command's input");
        stdin_sent += static_cast<std::size_t>(w);
        if (stdin_sent >= req_.stdin_data.size() && !close_stdin())
          return io_failure("closing the command's input");
        if (w == 0)
          break;
      }
      int rc = ssh_channel_poll_timeout(ch, static_cast<int>(std::min<long long>(left,
                                                                                 poll_slice_ms)),
                                        0);
      if (rc == SSH_ERROR)
        return io_failure("reading the command's output");
      auto r_out = drain(ch, 0, out, buf.get());
      auto r_err = drain(ch, 1, err_text, buf.get());
      if (r_out == drained::error || r_err == drained::error)
        return io_failure("reading the command's output");
      if (r_out == drained::over_limit || r_err == drained::over_limit) {
        abandon(ch);
        return fail(errc::step_failed,
                    fmt::format("the command's {} exceeded max_output_bytes ({} bytes); asked "
                                "the server to stop it (SIGTERM)",
                                r_out == drained::over_limit ? "stdout" : "stderr",
                                req_.max_output_bytes));
      }
      if (r_out == drained::eof && r_err == drained::eof)
        break;
    }

    if (auto err = arm("waiting for the exit status"))
      return err;
    int status = ssh_channel_get_exit_status(ch);
    if (status < 0 && result_.exit_signal.empty()) {
      if (expired())
        return timed_out("waiting for the exit status");
      return fail(errc::io_error, fmt::format("the server closed the channel without an exit "
                                              "status ({})",
                                              lib_error()));
    }
    result_.exit_status = result_.exit_signal.empty() ? status : -1;
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - started)
                .count();
    if (result_.exit_signal.empty())
      log_(log_level::info, fmt::format("{}: exit status {} after {} ms ({} bytes stdout, {} "
                                        "bytes stderr)",
                                        prefix_, status, ms, out.size(), err_text.size()));
    else
      log_(log_level::info, fmt::format("{}: killed by signal {} after {} ms", prefix_,
                                        result_.exit_signal, ms));
    set_timeout(cleanup_timeout_ms);
    ssh_channel_close(ch);
    result_.stdout_text = sanitize_utf8(result_.stdout_text);
    result_.stderr_text = sanitize_utf8(result_.stderr_text);
    return std::move(result_);
  }

  const ssh_command_request& req_;
  const ssh_logger& log_;
  std::string prefix_;
  session_ptr session_;
  ssh_command_result result_;
};

} // namespace

bool parse_ssh_host_key_policy(std::string_view text, ssh_host_key_policy& out) noexcept {
  if (text == "strict")
    out = ssh_host_key_policy::strict;
  else if (text == "accept-new")
    out = ssh_host_key_policy::accept_new;
  else if (text == "off")
    out = ssh_host_key_policy::off;
  else
    return false;
  return true;
}

caf::expected<ssh_command_result> run_ssh_command(const ssh_command_request& req,
                                                  const ssh_logger& log) {
  ssh_logger quiet = [](int, std::string) {};
  ssh_call call{req, log ? log : quiet};
  auto result = call.run();
  return result;
}

std::string shell_quote(std::string_view arg) {
  std::string out;
  out.reserve(arg.size() + 2);
  out += '\'';
  for (char c : arg) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  out += '\'';
  return out;
}

std::string ssh_command_line(std::string_view command, const std::vector<std::string>& args) {
  std::string out(command);
  for (const auto& a : args) {
    out += ' ';
    out += shell_quote(a);
  }
  return out;
}

std::string sanitize_utf8(std::string_view text) {
  static constexpr std::string_view replacement = "\xEF\xBF\xBD";
  std::string out;
  out.reserve(text.size());
  auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  std::size_t i = 0;
  while (i < text.size()) {
    unsigned char c = byte(i);
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    std::size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF; // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0)
        lo = 0xA0;
      else if (c == 0xED)
        hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0)
        lo = 0x90;
      else if (c == 0xF4)
        hi = 0x8F;
    }
    bool ok = len != 0 && i + len <= text.size();
    for (std::size_t k = 1; ok && k < len; ++k) {
      unsigned char b = byte(i + k);
      if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF))
        ok = false;
    }
    if (ok) {
      out.append(text.substr(i, len));
      i += len;
    } else {
      out += replacement;
      ++i;
    }
  }
  return out;
}

} // namespace stepflow::connectors
