#include "support/server_process.hpp"

#include <signal.h>
#include <sys/wait.h>

#include <cerrno>
#include <stdexcept>
#include <thread>

#include "support/temp_dir.hpp"

namespace stepflow::test {

namespace {

/// The port in a complete port file ("<port>\n"); 0 while there is none.
uint16_t read_port(const std::string& path) {
  auto text = read_text(path);
  if (text.empty() || text.back() != '\n')
    return 0;
  unsigned long port = 0;
  for (char c : text.substr(0, text.size() - 1)) {
    if (c < '0' || c > '9' || port > 65535)
      return 0;
    port = port * 10 + static_cast<unsigned long>(c - '0');
  }
  return port <= 65535 ? static_cast<uint16_t>(port) : 0;
}

} // namespace

server_options admin_server(const std::string& password, std::vector<std::string> args) {
  server_options o;
  o.args = std::move(args);
  o.env = {{"STEPFLOW_ADMIN_PASSWORD", password},
           {"STEPFLOW_SYNCPACKS_DIR", source_dir() + "/syncpacks"}};
  o.unset = {"STEPFLOW_ADMIN_USER"};
  return o;
}

server_process::server_process(const temp_dir& dir, server_options opts)
    : opts_(std::move(opts)), dir_(dir.path()) {
  data_dir_ = opts_.data_dir.empty() ? dir.file("data") : opts_.data_dir;
  out_path_ = dir.file(opts_.name + "-stdout.txt");
  err_path_ = dir.file(opts_.name + "-stderr.txt");
  start();
}

server_process::~server_process() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    (void) reap();
  }
}

void server_process::start() {
  if (pid_ > 0)
    throw std::logic_error("server_process::start: the server is running");
  auto port_file = dir_ + "/" + opts_.name + "-port-" + std::to_string(++starts_);
  std::vector<std::string> args{"serve",      "--listen", "127.0.0.1:0", "--data-dir",
                                data_dir_, "--port-file", port_file};
  args.insert(args.end(), opts_.args.begin(), opts_.args.end());
  pid_ = spawn_stepflow(args, opts_.env, opts_.unset, out_path_, err_path_, starts_ > 1);
  port_ = 0;
  auto output = [&] {
    return "\n--- server stdout ---\n" + out() + "\n--- server stderr ---\n" + err();
  };
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    if (auto port = read_port(port_file)) {
      port_ = port;
      return;
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      auto how = WIFEXITED(status) ? "exit code " + std::to_string(WEXITSTATUS(status))
                                   : "signal " + std::to_string(WTERMSIG(status));
      throw std::runtime_error("stepflow serve exited during start-up (" + how + ")" + output());
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid_, SIGKILL);
      (void) reap();
      throw std::runtime_error("stepflow serve wrote no port file within 30 s" + output());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

int server_process::terminate(std::chrono::milliseconds grace) {
  if (pid_ <= 0)
    return -1000;
  ::kill(pid_, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + grace;
  bool killed = false;
  int status = 0;
  for (;;) {
    auto w = ::waitpid(pid_, &status, WNOHANG);
    if (w == pid_)
      break;
    if (w < 0 && errno != EINTR) {
      pid_ = -1;
      return -1000;
    }
    if (!killed && std::chrono::steady_clock::now() > deadline) {
      ::kill(pid_, SIGKILL);
      killed = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  pid_ = -1;
  if (killed)
    return -SIGKILL;
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  return WIFSIGNALED(status) ? -WTERMSIG(status) : -1000;
}

int server_process::reap() {
  if (pid_ <= 0)
    throw std::logic_error("server_process::reap: no server to wait for");
  int status = 0;
  pid_t w;
  do {
    w = ::waitpid(pid_, &status, 0);
  } while (w < 0 && errno == EINTR);
  pid_ = -1;
  return status;
}

std::string server_process::url() const {
  return "http://127.0.0.1:" + std::to_string(port_);
}

std::string server_process::out() const {
  return read_text(out_path_);
}

std::string server_process::err() const {
  return read_text(err_path_);
}

} // namespace stepflow::test
