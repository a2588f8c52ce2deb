#include "support/binary_runner.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "support/temp_dir.hpp"

extern char** environ;

namespace stepflow::test {

int spawn_stepflow(const std::vector<std::string>& args, const env_vars& env,
                   const std::vector<std::string>& unset, const std::string& out_path,
                   const std::string& err_path, bool append) {
  std::vector<std::string> argv_s{stepflow_binary()};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  auto named = [](const std::string& e, const std::string& k) {
    return e.compare(0, k.size() + 1, k + "=") == 0;
  };
  std::vector<std::string> env_s;
  for (char** e = environ; e && *e; ++e) {
    std::string kv{*e};
    bool dropped = false;
    for (auto& [k, v] : env)
      dropped |= named(kv, k);
    for (auto& k : unset)
      dropped |= named(kv, k);
    if (!dropped)
      env_s.push_back(std::move(kv));
  }
  for (auto& [k, v] : env)
    env_s.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env_s)
    envp.push_back(e.data());
  envp.push_back(nullptr);
  int mode = O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), mode, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), mode, 0644);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0)
    throw std::runtime_error(std::string("posix_spawn failed: ") + std::strerror(rc));
  return pid;
}

running_binary::running_binary(const temp_dir& dir, const std::vector<std::string>& args,
                               const env_vars& env, const std::vector<std::string>& unset) {
  static std::atomic<int> counter{0};
  auto n = ++counter;
  out_path_ = dir.file("stdout-" + std::to_string(n) + ".txt");
  err_path_ = dir.file("stderr-" + std::to_string(n) + ".txt");
  pid_ = spawn_stepflow(args, env, unset, out_path_, err_path_);
}

running_binary::~running_binary() {
  if (!waited_)
    wait(30);
}

binary_result running_binary::wait(double timeout_s) {
  binary_result r;
  int status = 0;
  auto deadline = std::chrono::steady_clock::now()
                  + std::chrono::milliseconds(static_cast<long>(timeout_s * 1000));
  for (;;) {
    auto w = ::waitpid(pid_, &status, WNOHANG);
    if (w == pid_)
      break;
    if (w < 0 && errno != EINTR)
      break;
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      r.timed_out = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  waited_ = true;
  if (WIFEXITED(status))
    r.exit_code = WEXITSTATUS(status);
  else if (WIFSIGNALED(status))
    r.signal = WTERMSIG(status);
  r.out = read_text(out_path_);
  r.err = read_text(err_path_);
  return r;
}

binary_result run_stepflow(const temp_dir& dir, const std::vector<std::string>& args,
                           const env_vars& env) {
  running_binary b{dir, args, env};
  return b.wait();
}

} // namespace stepflow::test
