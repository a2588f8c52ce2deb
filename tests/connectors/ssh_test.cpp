// SSHCommand against a real OpenSSH server (tests/support/sshd_server) on
// 127.0.0.1, through libssh on a real blocking_pool.
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include <signal.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include "ssh/ssh.hpp"
#include "ssh/ssh_client.hpp"
#include "ssh/ssh_command_step.hpp"
#include "stepflow/runtime/blocking_pool.hpp"
#include "stepflow/runtime/json.hpp"
#include "stepflow/runtime/step.hpp"
#include "support/sshd_server.hpp"
#include "support/step_fixture.hpp"
#include "support/temp_dir.hpp"

using namespace stepflow;
using stepflow::connectors::make_ssh_command_step;
using stepflow::connectors::ssh_step_settings;

namespace {

constexpr auto safety_bound = std::chrono::seconds(60);

std::shared_ptr<step_context> make_context(json::object params) {
  return test::make_step_context("SSHCommand", std::move(params), "ssh");
}

/// Runs `step` with `ctx`; the outcome of its one done() call.
step_outcome run_step(const step_type& step, std::shared_ptr<step_context> ctx) {
  return test::run_step(step, std::move(ctx), safety_bound);
}

std::string str(const json::value& v, std::string_view key) {
  auto* p = v.is_object() ? v.get_object().if_contains(key) : nullptr;
  return p && p->is_string() ? std::string(p->get_string()) : std::string("<missing>");
}

int64_t num(const json::value& v, std::string_view key) {
  auto* p = v.is_object() ? v.get_object().if_contains(key) : nullptr;
  return p && p->is_number() ? p->to_number<int64_t>() : -999;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

/// A temp dir, a running sshd, a pool and an SSHCommand step.
struct fixture {
  test::temp_dir dir;
  std::unique_ptr<test::sshd_server> sshd;
  std::shared_ptr<blocking_pool> pool =
    std::make_shared<blocking_pool>(blocking_pool_options{2, 100});
  std::shared_ptr<const step_type> step;

  explicit fixture(test::sshd_server_options opts = {}, ssh_step_settings settings = {}) {
    try {
      sshd = std::make_unique<test::sshd_server>(dir.path(), opts);
    } catch (const std::exception& e) {
      FAIL("cannot start the test sshd: " << e.what());
    }
    step = make_ssh_command_step("SSHCommand", pool, settings);
  }

  /// Key authentication as root, host key pinned by fingerprint.
  json::object params(std::string command) const {
    return json::object{{"host", "127.0.0.1"},
                        {"port", sshd->port()},
                        {"user", "root"},
                        {"private_key_file", sshd->client_key_file()},
                        {"host_key_fingerprint", sshd->host_key_fingerprint()},
                        {"command", std::move(command)},
                        {"timeout", 20}};
  }

  step_outcome run(json::object p) const { return run_step(*step, make_context(std::move(p))); }
};

} // namespace

TEST_CASE("the SSH connector's options are validated once, naming the field") {
  auto ok = connectors::parse_ssh_connector_options(
    {{"threads", 2}, {"max_output_bytes", 4096}, {"known_hosts_file", "/tmp/kh"}});
  REQUIRE(ok);
  CHECK(ok->threads == 2);
  CHECK(ok->max_output_bytes == 4096);
  CHECK(ok->known_hosts_file == "/tmp/kh");
  auto error = [](json::object o) {
    auto r = connectors::parse_ssh_connector_options(o);
    REQUIRE_FALSE(r);
    return message_of(r.error());
  };
  CHECK(error({{"threads", 0}}) == "ssh.threads must be a whole number from 1 to 256");
  CHECK(error({{"threads", "many"}}) == "ssh.threads must be a number");
  CHECK(error({{"max_output_bytes", 100}})
        == "ssh.max_output_bytes must be a whole number from 1024 to 1073741824");
  CHECK(error({{"known_hosts_file", 3}}) == "ssh.known_hosts_file must be a string");
  CHECK(error({{"bogus", 1}}) == "ssh: unknown option \"bogus\"");
}

TEST_CASE("shell_quote makes one literal POSIX shell word") {
  using connectors::shell_quote;
  CHECK(shell_quote("") == "''");
  CHECK(shell_quote("a b") == "'a b'");
  CHECK(shell_quote("it's") == "'it'\\''s'");
  CHECK(shell_quote("$(id) `id` \\ \"") == "'$(id) `id` \\ \"'");
  CHECK(connectors::ssh_command_line("ls -l", {"a b", "c"}) == "ls -l 'a b' 'c'");
  CHECK(connectors::ssh_command_line("uptime", {}) == "uptime");
}

TEST_CASE("sanitize_utf8 keeps valid text and replaces invalid bytes") {
  using connectors::sanitize_utf8;
  CHECK(sanitize_utf8("plain \xC3\xA9t\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80") ==
        "plain \xC3\xA9t\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80");
  CHECK(sanitize_utf8("a\xFF" "b") == "a\xEF\xBF\xBD" "b");
  CHECK(sanitize_utf8("\xC3") == "\xEF\xBF\xBD");
  CHECK(sanitize_utf8("\xED\xA0\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"); // surrogate
}

TEST_CASE("SSHCommand check() rejects bad parameters with the parameter's name") {
  auto pool = std::make_shared<blocking_pool>(blocking_pool_options{1, 10});
  auto step = make_ssh_command_step("SSHCommand", pool, {});
  json::object good{{"host", "h"}, {"user", "u"}, {"password", "p"}, {"command", "true"}};
  CHECK(!step->check(good));
  auto with = [&](std::string_view key, json::value v) {
    auto p = good;
    p[key] = std::move(v);
    return message_of(step->check(p));
  };
  auto without = [&](std::string_view key) {
    auto p = good;
    p.erase(key);
    return message_of(step->check(p));
  };
  CHECK(contains(without("host"), "\"host\""));
  CHECK(contains(without("command"), "\"command\""));
  CHECK(contains(without("password"), "needs a credential"));
  CHECK(contains(with("port", 70000), "\"port\""));
  CHECK(contains(with("port", "ssh"), "\"port\""));
  CHECK(contains(with("timeout", -1), "\"timeout\""));
  CHECK(contains(with("host_key_check", "yes"), "\"host_key_check\""));
  CHECK(contains(with("host_key_fingerprint", "MD5:aa"), "\"host_key_fingerprint\""));
  CHECK(contains(with("args", "x"), "\"args\""));
  CHECK(contains(with("args", json::array{"ok", json::object{}}), "\"args\"[1]"));
  CHECK(contains(with("host", "root@h"), "\"host\""));
  CHECK(contains(with("fail_on_nonzero", "maybe"), "\"fail_on_nonzero\""));
  auto both = good;
  both["private_key"] = "k";
  both["private_key_file"] = "/k";
  CHECK(contains(message_of(step->check(both)), "not both"));
  // The password never appears in an error.
  auto secret = good;
  secret["password"] = "s3cr3t-pw";
  secret["port"] = 0;
  CHECK(!contains(message_of(step->check(secret)), "s3cr3t-pw"));
}

TEST_CASE("SSHCommand runs a command with key authentication and returns its output") {
  fixture f;
  auto out = f.run(f.params("echo hello; echo oops >&2; printf 'no newline'"));
  INFO(out.error, " sshd log: ", f.sshd->log());
  REQUIRE(out.ok);
  CHECK(num(out.data, "exit_status") == 0);
  CHECK(str(out.data, "stdout") == "hello\nno newline");
  CHECK(str(out.data, "stderr") == "oops\n");
  CHECK(str(out.data, "host") == "127.0.0.1");
  CHECK(!out.data.get_object().contains("signal"));
}

TEST_CASE("SSHCommand authenticates with private_key text and fails on a non-zero exit") {
  fixture f;
  auto p = f.params("echo partial; echo first problem >&2; echo last problem >&2; exit 3");
  p.erase("private_key_file");
  p["private_key"] = test::read_text(f.sshd->client_key_file());
  auto ctx = make_context(p);
  auto out = run_step(*f.step, ctx);
  REQUIRE(!out.ok);
  CHECK(contains(out.error, "status 3"));
  CHECK(contains(out.error, "last problem"));
  CHECK(contains(out.error, "root@127.0.0.1"));
  // The output is still the step's data.
  CHECK(num(out.data, "exit_status") == 3);
  CHECK(str(out.data, "stdout") == "partial\n");
  CHECK(contains(str(out.data, "stderr"), "first problem"));
  // Key material is never logged.
  for (auto& line : ctx->take_logs())
    CHECK(!contains(line.message, "PRIVATE KEY"));

  SUBCASE("fail_on_nonzero false saves the exit status as data") {
    p["fail_on_nonzero"] = false;
    auto again = f.run(p);
    REQUIRE(again.ok);
    CHECK(num(again.data, "exit_status") == 3);
  }
}

TEST_CASE("SSHCommand reports a command killed by a signal") {
  fixture f;
  auto out = f.run(f.params("kill -KILL $$"));
  REQUIRE(!out.ok);
  CHECK(contains(out.error, "signal KILL"));
  CHECK(str(out.data, "signal") == "KILL");
  CHECK(num(out.data, "exit_status") == -1);
}

TEST_CASE("SSHCommand args arrive literally, one word each") {
  fixture f;
  auto marker = f.dir.file("pwned");
  auto p = f.params("printf '[%s]\\n'");
  p["args"] = json::array{"two words", "it's \"quoted\"", "$(touch " + marker + ")",
                          "`touch " + marker + "`", "a;b|c&d", "", 42, "new\nline"};
  auto out = f.run(p);
  INFO(out.error);
  REQUIRE(out.ok);
  CHECK(str(out.data, "stdout")
        == "[two words]\n[it's \"quoted\"]\n[$(touch " + marker + ")]\n[`touch " + marker
             + "`]\n[a;b|c&d]\n[]\n[42]\n[new\nline]\n");
  CHECK(!std::filesystem::exists(marker));
}

TEST_CASE("SSHCommand passes stdin to the command") {
  fixture f;
  auto p = f.params("cat");
  p["stdin"] = "line one\nline two\n";
  auto out = f.run(p);
  INFO(out.error);
  REQUIRE(out.ok);
  CHECK(str(out.data, "stdout") == "line one\nline two\n");

  SUBCASE("larger than the SSH window, while the command writes") {
    p["command"] = "tee /dev/stderr | wc -c";
    p["stdin"] = std::string(3 * 1024 * 1024 + 17, 'x');
    auto big = f.run(p);
    INFO(big.error);
    REQUIRE(big.ok);
    CHECK(str(big.data, "stdout") == std::to_string(3 * 1024 * 1024 + 17) + "\n");
    CHECK(str(big.data, "stderr").size() == 3 * 1024 * 1024 + 17);
  }
}

namespace {

/// Kills the remote command whose pid it wrote to `pid_file` (OpenSSH does
/// not honour signal requests for root sessions, so a command that outlived
/// its step would otherwise keep running after the test).
struct remote_pid_reaper {
  std::string pid_file;
  ~remote_pid_reaper() {
    auto text = test::read_text(pid_file);
    auto pid = std::atoi(text.c_str());
    if (pid > 1)
      ::kill(pid, SIGKILL);
  }
};

} // namespace

TEST_CASE("SSHCommand fails with a timeout message when the command outlives timeout") {
  fixture f;
  remote_pid_reaper reaper{f.dir.file("remote.pid")};
  auto p = f.params("echo $$ > " + reaper.pid_file + "; exec sleep 30");
  p["timeout"] = 1;
  auto out = f.run(p);
  REQUIRE(!out.ok);
  CHECK(contains(out.error, "timed out after 1 s"));
}

TEST_CASE("SSHCommand stops when the step is cancelled") {
  fixture f;
  remote_pid_reaper reaper{f.dir.file("remote.pid")};
  auto ctx = make_context(f.params("echo $$ > " + reaper.pid_file + "; exec sleep 30"));
  test::started_step run{*f.step, ctx};
  // Cancel once the command runs (bounded wait).
  for (int i = 0; i < 500 && test::read_text(reaper.pid_file).empty(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ctx->cancelled = true;
  auto out = run.wait(safety_bound);
  REQUIRE(!out.ok);
  CHECK(contains(out.error, "cancelled"));
}

TEST_CASE("SSHCommand fails when the output exceeds max_output_bytes") {
  ssh_step_settings settings;
  settings.max_output_bytes = 4096;
  fixture f({}, settings);
  auto out = f.run(f.params("head -c 100000 /dev/zero | tr '\\0' x"));
  REQUIRE(!out.ok);
  CHECK(contains(out.error, "max_output_bytes"));
}

TEST_CASE("SSHCommand strict host key checking refuses unknown and changed keys") {
  fixture f;
  auto p = f.params("echo hi");
  p.erase("host_key_fingerprint");
  p["host_key_check"] = "strict";

  SUBCASE("a wrong fingerprint") {
    p["host_key_fingerprint"] = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    auto out = f.run(p);
    REQUIRE(!out.ok);
    CHECK(contains(out.error, "does not match host_key_fingerprint"));
  }
  SUBCASE("a host missing from known_hosts") {
    p["known_hosts_file"] = f.dir.write("empty_known_hosts", "");
    auto out = f.run(p);
    REQUIRE(!out.ok);
    CHECK(contains(out.error, "is not in"));
    CHECK(contains(out.error, f.sshd->host_key_fingerprint()));
  }
  SUBCASE("a changed key in known_hosts") {
    auto other = f.dir.file("other_key");
    REQUIRE(test::run_program({"/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                               other})
            == 0);
    auto pub = test::read_text(other + ".pub");
    p["known_hosts_file"] = f.dir.write(
      "changed_known_hosts", "[127.0.0.1]:" + std::to_string(f.sshd->port()) + " " + pub);
    auto out = f.run(p);
    REQUIRE(!out.ok);
    CHECK(contains(out.error, "refusing to connect"));
    CHECK(contains(out.error, "differs"));
  }
  SUBCASE("the right key in known_hosts is accepted") {
    p["known_hosts_file"] = f.dir.write("good_known_hosts", "[127.0.0.1]:"
                                                              + std::to_string(f.sshd->port())
                                                              + " " + f.sshd->host_public_key()
                                                              + "\n");
    auto out = f.run(p);
    INFO(out.error);
    REQUIRE(out.ok);
    CHECK(str(out.data, "stdout") == "hi\n");
  }
}

TEST_CASE("SSHCommand accept-new adds an unknown host to known_hosts, then trusts it") {
  fixture f;
  auto known = f.dir.file("ssh/known_hosts");
  auto p = f.params("echo first");
  p.erase("host_key_fingerprint");
  p["host_key_check"] = "accept-new";
  p["known_hosts_file"] = known;
  auto out = f.run(p);
  INFO(out.error);
  REQUIRE(out.ok);
  auto written = test::read_text(known);
  CHECK(contains(written, "[127.0.0.1]:" + std::to_string(f.sshd->port())));
  // The key blob ("ssh-ed25519 AAAA...") is the server's.
  auto blob = f.sshd->host_public_key().substr(0, f.sshd->host_public_key().rfind(' '));
  CHECK(contains(written, blob));

  p["host_key_check"] = "strict";
  p["command"] = "echo second";
  auto strict = f.run(p);
  INFO(strict.error);
  REQUIRE(strict.ok);
  CHECK(str(strict.data, "stdout") == "second\n");
}

TEST_CASE("SSHCommand host_key_check off connects to any key") {
  fixture f;
  auto p = f.params("echo off");
  p.erase("host_key_fingerprint");
  p["host_key_check"] = "off";
  p["known_hosts_file"] = f.dir.write("empty_known_hosts", "");
  auto ctx = make_context(p);
  auto out = run_step(*f.step, ctx);
  INFO(out.error);
  REQUIRE(out.ok);
  bool warned = false;
  for (auto& line : ctx->take_logs())
    warned = warned || contains(line.message, "host key not checked");
  CHECK(warned);
}

TEST_CASE("SSHCommand to a port nobody listens on fails clearly") {
  auto pool = std::make_shared<blocking_pool>(blocking_pool_options{1, 10});
  auto step = make_ssh_command_step("SSHCommand", pool, {});
  test::temp_dir dir;
  auto port = test::free_tcp_port();
  auto out = run_step(*step, make_context(json::object{{"host", "127.0.0.1"},
                                                       {"port", port},
                                                       {"user", "root"},
                                                       {"password", "x"},
                                                       {"command", "true"},
                                                       {"timeout", 10}}));
  REQUIRE(!out.ok);
  INFO(out.error);
  CHECK(contains(out.error, "127.0.0.1:" + std::to_string(port)));
  CHECK(contains(out.error, "connecting failed"));
}

TEST_CASE("SSHCommand authentication failures are clear and never show the secret") {
  test::sshd_server_options opts;
  opts.password_authentication = true;
  fixture f(opts);

  SUBCASE("a wrong password") {
    auto p = f.params("true");
    p.erase("private_key_file");
    p["password"] = "not-the-password-42";
    auto ctx = make_context(p);
    auto out = run_step(*f.step, ctx);
    REQUIRE(!out.ok);
    CHECK(contains(out.error, "authentication failed for user root"));
    CHECK(contains(out.error, "password"));
    CHECK(!contains(out.error, "not-the-password-42"));
    for (auto& line : ctx->take_logs())
      CHECK(!contains(line.message, "not-the-password-42"));
  }
  SUBCASE("a key the server does not know") {
    auto other = f.dir.file("unknown_key");
    REQUIRE(test::run_program({"/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                               other})
            == 0);
    auto p = f.params("true");
    p["private_key_file"] = other;
    auto out = f.run(p);
    REQUIRE(!out.ok);
    CHECK(contains(out.error, "authentication failed"));
    CHECK(contains(out.error, "publickey"));
  }
  SUBCASE("a private key file that does not exist") {
    auto p = f.params("true");
    p["private_key_file"] = f.dir.file("no_such_key");
    auto out = f.run(p);
    REQUIRE(!out.ok);
    CHECK(contains(out.error, "could not be read"));
  }
  SUBCASE("an encrypted key with its passphrase, and with a wrong one") {
    auto enc = f.dir.file("encrypted_key");
    REQUIRE(test::run_program({"/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N",
                               "pass phrase", "-f", enc})
            == 0);
    {
      auto keys = test::read_text(f.dir.file("authorized_keys"));
      f.dir.write("authorized_keys", keys + test::read_text(enc + ".pub"));
    }
    auto p = f.params("echo unlocked");
    p["private_key_file"] = enc;
    p["passphrase"] = "pass phrase";
    auto out = f.run(p);
    INFO(out.error);
    REQUIRE(out.ok);
    CHECK(str(out.data, "stdout") == "unlocked\n");
    p["passphrase"] = "wrong phrase";
    auto bad = f.run(p);
    REQUIRE(!bad.ok);
    CHECK(contains(bad.error, "could not be read"));
    CHECK(!contains(bad.error, "wrong phrase"));
  }
}

namespace {

/// A local user with a password for the test's lifetime (useradd/userdel).
struct temp_user {
  std::string name = "sfssh" + std::to_string(::getpid());
  std::string password = "Pw-" + std::to_string(::getpid()) + "-ok";
  bool created = false;

  temp_user() {
    std::string out;
    if (test::run_program({"/usr/sbin/useradd", "-M", "-s", "/bin/sh", name}, &out) != 0)
      throw std::runtime_error("useradd " + name + " failed: " + out);
    created = true;
    if (test::run_program({"/bin/sh", "-c", "echo '" + name + ":" + password + "' | chpasswd"},
                          &out)
        != 0)
      throw std::runtime_error("chpasswd for " + name + " failed: " + out);
  }
  ~temp_user() {
    if (created)
      test::run_program({"/usr/sbin/userdel", "-f", name});
  }
};

} // namespace

TEST_CASE("SSHCommand authenticates with a password") {
  test::sshd_server_options opts;
  opts.password_authentication = true;
  fixture f(opts);
  std::unique_ptr<temp_user> user;
  try {
    user = std::make_unique<temp_user>();
  } catch (const std::exception& e) {
    FAIL("cannot create a test user: " << e.what());
  }
  auto p = f.params("id -un");
  p.erase("private_key_file");
  p["user"] = user->name;
  p["password"] = user->password;
  auto ctx = make_context(p);
  auto out = run_step(*f.step, ctx);
  INFO(out.error, " sshd log: ", f.sshd->log());
  REQUIRE(out.ok);
  CHECK(str(out.data, "stdout") == user->name + "\n");
  for (auto& line : ctx->take_logs())
    CHECK(!contains(line.message, user->password));
}
