#include "support/temp_dir.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace stepflow::test {

temp_dir::temp_dir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/stepflow-test-XXXXXX";
  if (!mkdtemp(tmpl.data()))
    throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

temp_dir::~temp_dir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string temp_dir::write(const std::string& name, const std::string& content) const {
  auto p = file(name);
  std::filesystem::create_directories(std::filesystem::path(p).parent_path());
  std::ofstream out(p, std::ios::binary);
  out << content;
  return p;
}

std::string source_dir() {
  if (const char* s = std::getenv("STEPFLOW_SOURCE_DIR"); s && *s)
    return s;
  return STEPFLOW_TEST_SOURCE_DIR;
}

std::string stepflow_binary() {
  if (const char* b = std::getenv("STEPFLOW_BINARY"); b && *b)
    return b;
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  auto guess = exe.parent_path().parent_path() / "stepflow";
  if (ec || !std::filesystem::is_regular_file(guess, ec))
    throw std::runtime_error("STEPFLOW_BINARY is not set and " + guess.string()
                             + " does not exist");
  return guess.string();
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

} // namespace stepflow::test
