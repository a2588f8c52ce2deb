#pragma once
// Runs the real stepflow binary for integration tests: stdout and stderr go
// to files in a temp dir, extra environment variables are added to the
// test's own (and named ones removed), and the child can be waited for now
// or later.
#include <string>
#include <utility>
#include <vector>

namespace stepflow::test {

class temp_dir;

struct binary_result {
  int exit_code = -1;     ///< -1 when it did not exit normally
  int signal = 0;         ///< the signal that ended it, if any
  bool timed_out = false; ///< wait() ran out of time and killed it (signal is SIGKILL)
  std::string out;
  std::string err;
};

using env_vars = std::vector<std::pair<std::string, std::string>>;

/// Starts the stepflow binary with `args`: stdin /dev/null, stdout and
/// stderr to `out_path` and `err_path` (truncated, or appended to when
/// `append`), the environment ours with `env` set and `unset` removed. The
/// child's pid; throws std::runtime_error when posix_spawn fails.
int spawn_stepflow(const std::vector<std::string>& args, const env_vars& env,
                   const std::vector<std::string>& unset, const std::string& out_path,
                   const std::string& err_path, bool append = false);

/// A started child; wait() is called by the destructor when not done before.
class running_binary {
public:
  /// Output goes to fresh files stdout-<n>.txt and stderr-<n>.txt in `dir`.
  running_binary(const temp_dir& dir, const std::vector<std::string>& args, const env_vars& env,
                 const std::vector<std::string>& unset = {});
  ~running_binary();
  running_binary(const running_binary&) = delete;
  running_binary& operator=(const running_binary&) = delete;

  int pid() const noexcept { return pid_; }
  /// Waits for the child (at most `timeout_s`, then SIGKILL) and reads its output.
  binary_result wait(double timeout_s = 120);

private:
  int pid_ = -1;
  bool waited_ = false;
  std::string out_path_;
  std::string err_path_;
};

/// Runs the binary to completion.
binary_result run_stepflow(const temp_dir& dir, const std::vector<std::string>& args,
                           const env_vars& env = {});

} // namespace stepflow::test
