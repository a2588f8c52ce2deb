#include "support/sshd_server.hpp"

#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/temp_dir.hpp"

extern char** environ;

namespace stepflow::test {

namespace {

constexpr const char* sshd_path = "/usr/sbin/sshd";
constexpr const char* keygen_path = "/usr/bin/ssh-keygen";

/// Spawns argv with stdin /dev/null and stdout+stderr into `out_path`.
pid_t spawn(const std::vector<std::string>& argv, const std::string& out_path) {
  std::vector<char*> args;
  for (const auto& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  return rc == 0 ? pid : -1;
}

/// waitpid with a bound; true when the child ended (status in *status).
bool wait_for(pid_t pid, int* status, std::chrono::milliseconds bound) {
  auto until = std::chrono::steady_clock::now() + bound;
  for (;;) {
    pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid || r < 0)
      return true;
    if (std::chrono::steady_clock::now() >= until)
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

bool can_connect(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

std::string first_line(const std::string& text) {
  auto nl = text.find('\n');
  return nl == std::string::npos ? text : text.substr(0, nl);
}

void keygen(const std::string& file) {
  std::string out;
  int rc = run_program({keygen_path, "-q", "-t", "ed25519", "-N", "", "-C", "stepflow-test", "-f",
                        file},
                       &out);
  if (rc != 0)
    throw std::runtime_error("sshd_server: ssh-keygen -t ed25519 failed (" + std::to_string(rc)
                             + "): " + out);
}

} // namespace

int run_program(const std::vector<std::string>& argv, std::string* output, int timeout_s) {
  temp_dir tmp;
  auto out_path = tmp.file("output");
  pid_t pid = spawn(argv, out_path);
  if (pid < 0)
    return -1;
  int status = 0;
  if (!wait_for(pid, &status, std::chrono::seconds(timeout_s))) {
    ::kill(pid, SIGKILL);
    wait_for(pid, &status, std::chrono::seconds(5));
    status = -1;
  }
  if (output)
    *output = read_text(out_path);
  if (status == -1 || !WIFEXITED(status))
    return -1;
  return WEXITSTATUS(status);
}

uint16_t free_tcp_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    throw std::runtime_error("free_tcp_port: socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0
      || ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("free_tcp_port: bind() failed");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

sshd_server::sshd_server(std::string dir, sshd_server_options opts) : dir_(std::move(dir)) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(sshd_path, ec))
    throw std::runtime_error(std::string("sshd_server: ") + sshd_path
                             + " is missing (install the Debian package openssh-server)");
  if (!fs::exists(keygen_path, ec))
    throw std::runtime_error(std::string("sshd_server: ") + keygen_path
                             + " is missing (install the Debian package openssh-client)");
  if (::geteuid() != 0)
    throw std::runtime_error("sshd_server: the test sshd needs root (privilege separation)");
  // sshd's privilege-separation directory.
  fs::create_directories("/run/sshd", ec);

  auto host_key = dir_ + "/host_ed25519";
  client_key_ = dir_ + "/client_ed25519";
  keygen(host_key);
  keygen(client_key_);
  host_pub_ = first_line(read_text(host_key + ".pub"));
  {
    std::ofstream(dir_ + "/authorized_keys") << read_text(client_key_ + ".pub");
  }
  std::string listing;
  if (run_program({keygen_path, "-l", "-E", "sha256", "-f", host_key + ".pub"}, &listing) != 0)
    throw std::runtime_error("sshd_server: ssh-keygen -l failed: " + listing);
  // "256 SHA256:xxxx comment (ED25519)"
  std::istringstream fields(listing);
  std::string bits;
  fields >> bits >> fingerprint_;
  if (fingerprint_.rfind("SHA256:", 0) != 0)
    throw std::runtime_error("sshd_server: unexpected ssh-keygen -l output: " + listing);

  log_file_ = dir_ + "/sshd.log";
  auto config = dir_ + "/sshd_config";
  // A port taken between free_tcp_port() and sshd's bind is retried.
  for (int attempt = 0; attempt < 5; ++attempt) {
    port_ = free_tcp_port();
    {
      std::ofstream cfg(config, std::ios::trunc);
      cfg << "Port " << port_ << "\n"
          << "ListenAddress 127.0.0.1\n"
          << "HostKey " << host_key << "\n"
          << "AuthorizedKeysFile " << dir_ << "/authorized_keys\n"
          << "StrictModes no\n"
          << "PidFile " << dir_ << "/sshd.pid\n"
          << "UsePAM no\n"
          << "PermitRootLogin yes\n"
          << "PubkeyAuthentication yes\n"
          << "PasswordAuthentication " << (opts.password_authentication ? "yes" : "no") << "\n"
          << "KbdInteractiveAuthentication no\n"
          << "MaxStartups 100\n"
          << "LogLevel VERBOSE\n";
    }
    pid_ = spawn({sshd_path, "-D", "-e", "-f", config}, log_file_);
    if (pid_ < 0)
      throw std::runtime_error(std::string("sshd_server: cannot start ") + sshd_path);
    // Listening within 10 s, or it exited (bad config, port taken).
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < until) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      if (can_connect(port_))
        return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    auto text = log();
    stop();
    if (text.find("Address already in use") == std::string::npos)
      throw std::runtime_error("sshd_server: sshd did not start listening on 127.0.0.1:"
                               + std::to_string(port_) + " within 10 s; its log: " + text);
  }
  throw std::runtime_error("sshd_server: no free port found for sshd after 5 attempts");
}

sshd_server::~sshd_server() {
  stop();
}

void sshd_server::stop() noexcept {
  if (pid_ <= 0)
    return;
  ::kill(pid_, SIGTERM);
  int status = 0;
  if (!wait_for(pid_, &status, std::chrono::seconds(5))) {
    ::kill(pid_, SIGKILL);
    wait_for(pid_, &status, std::chrono::seconds(5));
  }
  pid_ = -1;
}

std::string sshd_server::log() const {
  return read_text(log_file_);
}

} // namespace stepflow::test
