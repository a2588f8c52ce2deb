#pragma once
// A fresh directory under $TMPDIR, removed with everything in it on scope exit.
#include <string>

namespace stepflow::test {

class temp_dir {
public:
  temp_dir();
  ~temp_dir();
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const std::string& path() const noexcept { return path_; }
  /// path() + "/" + name
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  /// Writes `content` to file(name) and returns that path.
  std::string write(const std::string& name, const std::string& content) const;

private:
  std::string path_;
};

/// Absolute path of the source tree ($STEPFLOW_SOURCE_DIR, else the tree
/// this test was built from).
std::string source_dir();

/// The stepflow binary: $STEPFLOW_BINARY (set by CTest), else the one beside
/// the tests directory (build/tests/<test> -> build/stepflow). Throws
/// std::runtime_error naming the path when there is none.
std::string stepflow_binary();

/// The whole file as text ("" when it cannot be read).
std::string read_text(const std::string& path);

} // namespace stepflow::test
