#pragma once
// A real OpenSSH server for tests: generates a host key and a client key in
// a directory, writes authorized_keys and an sshd_config listening on
// 127.0.0.1 on a random port, runs `/usr/sbin/sshd -D -e -f <config>` and
// stops it in the destructor. Needs openssh-server and root (sshd's
// privilege separation); without them the constructor throws a
// std::runtime_error saying what is missing.
#include <cstdint>
#include <string>
#include <vector>

#include <sys/types.h>

namespace stepflow::test {

struct sshd_server_options {
  /// Allow password authentication (sshd checks /etc/shadow; UsePAM is no).
  bool password_authentication = false;
};

class sshd_server {
public:
  /// Files go into `dir`, which must exist and outlive the server.
  explicit sshd_server(std::string dir, sshd_server_options opts = {});
  ~sshd_server();
  sshd_server(const sshd_server&) = delete;
  sshd_server& operator=(const sshd_server&) = delete;

  uint16_t port() const noexcept { return port_; }
  /// The host key's fingerprint as ssh-keygen -l prints it ("SHA256:...").
  const std::string& host_key_fingerprint() const noexcept { return fingerprint_; }
  /// The host public key line ("ssh-ed25519 AAAA... comment").
  const std::string& host_public_key() const noexcept { return host_pub_; }
  /// A client private key authorized for every user (OpenSSH format).
  const std::string& client_key_file() const noexcept { return client_key_; }
  /// What sshd has written to its stderr so far (for failure messages).
  std::string log() const;

private:
  void stop() noexcept;

  std::string dir_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
  std::string fingerprint_;
  std::string host_pub_;
  std::string client_key_;
  std::string log_file_;
};

/// Runs `argv` (argv[0] an absolute path) with stdin from /dev/null and
/// stdout+stderr captured into `output`; returns its exit status (-1 when it
/// could not run or was killed). Waits at most `timeout_s` seconds, then
/// kills it.
int run_program(const std::vector<std::string>& argv, std::string* output = nullptr,
                int timeout_s = 30);

/// A TCP port on 127.0.0.1 that was free a moment ago.
uint16_t free_tcp_port();

} // namespace stepflow::test
