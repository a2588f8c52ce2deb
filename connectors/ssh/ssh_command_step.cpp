// SSHCommand: runs one command on a remote host through SSH (libssh, via the
// adapter in ssh_client.hpp). run() validates the parameters and posts the
// call to the connector's blocking_pool; the pool thread calls `done`.
#include "ssh/ssh_command_step.hpp"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "ssh/ssh_client.hpp"
#include "stepflow/runtime/json.hpp"
#include "stepflow/runtime/log_level.hpp"

namespace stepflow::connectors {

namespace {

constexpr double default_timeout_s = 60;
constexpr double max_timeout_s = 7 * 24 * 3600;
constexpr std::size_t stderr_tail_lines = 5;
constexpr std::size_t stderr_tail_chars = 600;

/// A scalar as text: strings as-is, integers without a fraction, booleans
/// as true/false; nullopt for null, arrays and objects.
std::optional<std::string> scalar_text(const json::value& v) {
  if (v.is_string())
    return std::string(v.get_string());
  if (v.is_int64())
    return std::to_string(v.get_int64());
  if (v.is_uint64())
    return std::to_string(v.get_uint64());
  if (v.is_double()) {
    double d = v.get_double();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15)
      return std::to_string(static_cast<long long>(d));
    return fmt::format("{}", d);
  }
  if (v.is_bool())
    return std::string(v.get_bool() ? "true" : "false");
  return std::nullopt;
}

/// The last lines of `text` (non-empty ones), joined with " | ", bounded.
std::string stderr_tail(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    auto nl = text.find('\n');
    auto line = text.substr(0, nl);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' '))
      line.remove_suffix(1);
    if (!line.empty())
      lines.push_back(line);
    if (nl == std::string_view::npos)
      break;
    text.remove_prefix(nl + 1);
  }
  if (lines.empty())
    return "(nothing on stderr)";
  std::string out;
  auto first = lines.size() > stderr_tail_lines ? lines.size() - stderr_tail_lines : 0;
  for (auto i = first; i < lines.size(); ++i) {
    if (!out.empty())
      out += " | ";
    out += lines[i];
  }
  if (out.size() > stderr_tail_chars)
    out = "..." + out.substr(out.size() - stderr_tail_chars);
  return sanitize_utf8(out);
}

/// The parameters turned into a request (deadline not set yet), and the
/// parts the step itself uses.
struct parsed_params {
  ssh_command_request req;
  bool fail_on_nonzero = true;
};

class ssh_command_step final : public step_type {
public:
  ssh_command_step(std::string name, std::shared_ptr<blocking_pool> pool,
                   ssh_step_settings settings)
    : pool_(std::move(pool)), settings_(std::move(settings)) {
    info_.name = std::move(name);
    info_.friendly_name = "Run a command through an SSH tunnel";
    info_.description =
      "Runs one command on a remote host over SSH and saves {\"exit_status\", \"stdout\", "
      "\"stderr\", \"host\"}. The command is passed as is to the remote user's shell; quoting "
      "data into it is the application author's responsibility (use args for values: each is "
      "appended as one single-quoted word). A non-zero exit status fails the step (unless "
      "fail_on_nonzero is false), with the output kept as the step's data.";
    info_.version = "1.0.0";
    info_.syncpack = "base_steps";
    auto add = [&](std::string pname, std::string type, json::value def, std::string description,
                   bool required = false) {
      add_param(info_.params, std::move(pname), std::move(type), std::move(def),
                std::move(description), required);
    };
    add("host", "string", nullptr, "Host name or address of the SSH server.", true);
    add("port", "number", 22, "TCP port of the SSH server.");
    add("user", "string", nullptr, "User to log in as.", true);
    add("password", "string", nullptr,
        "Password (tried after a private key; also answers keyboard-interactive prompts). "
        "Never logged.");
    add("private_key", "string", nullptr,
        "Private key text (PEM or OpenSSH format). Never logged.");
    add("private_key_file", "string", nullptr,
        "Path of a private key file on the stepflow host (instead of private_key).");
    add("passphrase", "string", nullptr, "Passphrase of an encrypted private key.");
    add("command", "string", nullptr,
        "The command line, passed as is to the remote user's shell. The step never builds it "
        "from data; quoting values into it is the application author's responsibility.",
        true);
    add("args", "array", json::array{},
        "Values appended to command, each as one POSIX single-quoted word (spaces, quotes, $ "
        "and backquotes arrive literally).");
    add("stdin", "string", nullptr,
        "Text sent to the command's standard input, which is then closed.");
    add("timeout", "number", default_timeout_s,
        "Seconds for the whole call: connect, authenticate, run, exit status.");
    add("host_key_check", "string", "strict",
        "\"strict\": the host key must match host_key_fingerprint or be in known_hosts_file; "
        "\"accept-new\": like strict, but an unknown host is added to known_hosts_file; "
        "\"off\": no check (insecure).");
    add("known_hosts_file", "string", nullptr,
        "known_hosts file to check (default: the connector's known_hosts_file option, else "
        "~/.ssh/known_hosts of the stepflow user).");
    add("host_key_fingerprint", "string", nullptr,
        "Expected host key fingerprint, \"SHA256:...\" as ssh-keygen -l prints it; when set, it "
        "decides the check instead of known_hosts_file.");
    add("fail_on_nonzero", "boolean", true,
        "Fail the step when the command's exit status is not 0 (or it was killed).");
  }

  const step_info& info() const noexcept override { return info_; }

  caf::error check(const json::object& params) const override {
    if (auto err = step_type::check(params))
      return err;
    auto parsed = parse(params);
    if (!parsed)
      return std::move(parsed.error());
    return {};
  }

  void run(std::shared_ptr<step_context> ctx, step_done done) const override {
    std::optional<parsed_params> parsed;
    try {
      if (ctx->cancelled.load())
        return done(step_outcome::failure(
          fmt::format("{} was cancelled before it connected", info_.name)));
      auto p = parse(ctx->params);
      if (!p)
        return done(step_outcome::failure(message_of(p.error())));
      parsed = std::move(*p);
    } catch (const std::exception& e) {
      return done(step_outcome::failure(fmt::format("{}: {}", info_.name, e.what())));
    }
    auto& req = parsed->req;
    req.deadline = std::chrono::steady_clock::now()
                   + std::chrono::milliseconds(std::llround(req.timeout_seconds * 1000));
    req.cancelled = &ctx->cancelled;
    auto job = [ctx, done, parsed = std::move(*parsed), name = info_.name]() mutable {
      step_outcome out;
      try {
        out = execute(*ctx, parsed, name);
      } catch (const std::exception& e) {
        out = step_outcome::failure(fmt::format("{}: {}", name, e.what()));
      } catch (...) {
        out = step_outcome::failure(fmt::format("{}: unknown error", name));
      }
      done(std::move(out));
    };
    if (!pool_->post(std::move(job)))
      done(step_outcome::failure(fmt::format(
        "{}: the SSH connector is shutting down or has too many commands queued; the command "
        "was not run",
        info_.name)));
  }

private:
  static step_outcome execute(step_context& ctx, parsed_params& p, const std::string& name) {
    auto log = [&ctx](int level, std::string message) { ctx.log(level, std::move(message)); };
    auto result = run_ssh_command(p.req, log);
    if (!result)
      return step_outcome::failure(fmt::format("{}: {}", name, message_of(result.error())));
    json::object data{{"exit_status", result->exit_status},
                      {"stdout", std::move(result->stdout_text)},
                      {"stderr", std::move(result->stderr_text)},
                      {"host", p.req.host}};
    if (!result->exit_signal.empty())
      data["signal"] = result->exit_signal;
    bool failed = result->exit_status != 0;
    if (failed && p.fail_on_nonzero) {
      auto where = fmt::format("ssh {}@{}:{}", p.req.user, p.req.host, p.req.port);
      auto tail = stderr_tail(data["stderr"].get_string());
      auto why = result->exit_signal.empty()
                   ? fmt::format("{}: {}: the command exited with status {}: {}", name, where,
                                 result->exit_status, tail)
                   : fmt::format("{}: {}: the command was killed by signal {}: {}", name, where,
                                 result->exit_signal, tail);
      return step_outcome::failure(std::move(why), std::move(data));
    }
    return step_outcome::success(std::move(data));
  }

  caf::expected<parsed_params> parse(const json::object& params) const {
    auto bad = [&](std::string what) {
      return make_error(errc::invalid_definition, fmt::format("{}: {}", info_.name, what));
    };
    auto get = [&](std::string_view key) -> const json::value* {
      auto it = params.find(key);
      return it == params.end() || it->value().is_null() ? nullptr : &it->value();
    };
    // A string (numbers and booleans printed); "" when absent.
    std::optional<caf::error> failure;
    auto text = [&](std::string_view key) -> std::string {
      auto* v = get(key);
      if (!v)
        return {};
      if (auto s = scalar_text(*v))
        return *s;
      failure = bad(fmt::format("parameter \"{}\" must be a string", key));
      return {};
    };

    parsed_params out;
    auto& r = out.req;
    r.host = text("host");
    r.user = text("user");
    r.password = text("password");
    r.private_key = text("private_key");
    r.private_key_file = text("private_key_file");
    r.passphrase = text("passphrase");
    r.command = text("command");
    r.stdin_data = text("stdin");
    r.known_hosts_file = text("known_hosts_file");
    r.host_key_fingerprint = text("host_key_fingerprint");
    auto policy = text("host_key_check");
    if (failure)
      return std::move(*failure);

    if (r.host.empty())
      return bad("parameter \"host\" must be a non-empty host name or address");
    for (char c : r.host)
      if (c == '@' || c == ' ' || c == '\t' || c == '\n' || c == '\r')
        return bad(fmt::format("parameter \"host\" is not a host name or address: {}",
                               quote_json(r.host)));
    if (r.user.empty())
      return bad("parameter \"user\" must be a non-empty user name");
    if (r.command.empty())
      return bad("parameter \"command\" must be a non-empty command line");
    if (r.command.find('\0') != std::string::npos)
      return bad("parameter \"command\" must not contain a NUL character");
    if (!r.private_key.empty() && !r.private_key_file.empty())
      return bad("set either parameter \"private_key\" or \"private_key_file\", not both");
    if (r.password.empty() && r.private_key.empty() && r.private_key_file.empty())
      return bad("needs a credential: parameter \"password\", \"private_key\" or "
                 "\"private_key_file\"");

    r.port = 22;
    if (auto* v = get("port")) {
      double port = -1;
      if (v->is_number())
        port = v->to_number<double>();
      else if (v->is_string() && !v->get_string().empty()) {
        std::string s(v->get_string());
        char* end = nullptr;
        port = std::strtod(s.c_str(), &end);
        if (!end || *end != '\0')
          port = -1;
      }
      if (!(port >= 1 && port <= 65535) || port != std::floor(port))
        return bad("parameter \"port\" must be a TCP port number (1 to 65535)");
      r.port = static_cast<uint16_t>(port);
    }

    r.timeout_seconds = default_timeout_s;
    if (auto* v = get("timeout")) {
      double t = -1;
      if (v->is_number())
        t = v->to_number<double>();
      else if (v->is_string() && !v->get_string().empty()) {
        std::string s(v->get_string());
        char* end = nullptr;
        t = std::strtod(s.c_str(), &end);
        if (!end || *end != '\0')
          t = -1;
      }
      if (!std::isfinite(t) || t <= 0 || t > max_timeout_s)
        return bad(fmt::format("parameter \"timeout\" must be a positive number of seconds (at "
                               "most {})",
                               max_timeout_s));
      r.timeout_seconds = t;
    }

    if (policy.empty())
      policy = "strict";
    if (!parse_ssh_host_key_policy(policy, r.host_key))
      return bad(fmt::format("parameter \"host_key_check\" must be \"strict\", \"accept-new\" or "
                             "\"off\", not {}",
                             quote_json(policy)));
    if (!r.host_key_fingerprint.empty() && r.host_key_fingerprint.rfind("SHA256:", 0) != 0)
      return bad("parameter \"host_key_fingerprint\" must be a SHA256 fingerprint as ssh-keygen "
                 "-l prints it (\"SHA256:...\")");
    if (r.known_hosts_file.empty())
      r.known_hosts_file = settings_.known_hosts_file;

    std::vector<std::string> args;
    if (auto* v = get("args")) {
      if (!v->is_array())
        return bad("parameter \"args\" must be an array of strings");
      for (std::size_t i = 0; i < v->get_array().size(); ++i) {
        auto s = scalar_text(v->get_array()[i]);
        if (!s)
          return bad(fmt::format("parameter \"args\"[{}] must be a string, number or boolean",
                                 i));
        if (s->find('\0') != std::string::npos)
          return bad(fmt::format("parameter \"args\"[{}] must not contain a NUL character", i));
        args.push_back(std::move(*s));
      }
    }
    r.command = ssh_command_line(r.command, args);

    if (auto* v = get("fail_on_nonzero")) {
      if (v->is_bool())
        out.fail_on_nonzero = v->get_bool();
      else if (v->is_string() && (v->get_string() == "true" || v->get_string() == "false"))
        out.fail_on_nonzero = v->get_string() == "true";
      else if (v->is_number())
        out.fail_on_nonzero = v->to_number<double>() != 0;
      else
        return bad("parameter \"fail_on_nonzero\" must be true or false");
    }
    r.max_output_bytes = settings_.max_output_bytes;
    return out;
  }

  std::shared_ptr<blocking_pool> pool_;
  ssh_step_settings settings_;
  step_info info_;
};

} // namespace

std::shared_ptr<const step_type> make_ssh_command_step(std::string name,
                                                        std::shared_ptr<blocking_pool> pool,
                                                        ssh_step_settings settings) {
  return std::make_shared<const ssh_command_step>(std::move(name), std::move(pool),
                                                  std::move(settings));
}

} // namespace stepflow::connectors
