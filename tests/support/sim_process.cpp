#include "support/sim_process.hpp"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <memory>
#include <stdexcept>
#include <thread>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace stepflow::test {

std::string simulator_path() {
  if (const char* b = std::getenv("STEPFLOW_BINARY"); b && *b)
    return (std::filesystem::path(b).parent_path() / "stepflow-sim").string();
  return (std::filesystem::read_symlink("/proc/self/exe").parent_path().parent_path()
          / "stepflow-sim")
    .string();
}

sim_process::sim_process(const std::string& kind, const std::vector<std::string>& args) {
  auto exe = simulator_path();
  if (!std::filesystem::exists(exe))
    throw std::runtime_error(exe + " does not exist: build the stepflow-sim target");
  auto port_file = dir_.file("port");
  std::vector<std::string> argv_s{exe, kind, "--port", "0", "--port-file", port_file};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_ = ::fork();
  if (pid_ == 0) {
    int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, 1);
    ::dup2(devnull, 2);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  if (pid_ < 0)
    throw std::runtime_error("sim_process: fork failed");
  for (int i = 0; i < 300 && !std::filesystem::exists(port_file); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto port = read_text(port_file);
  if (port.empty()) {
    stop();
    throw std::runtime_error(exe + " did not start within 30 s");
  }
  url_ = "http://127.0.0.1:" + port.substr(0, port.find('\n'));
}

sim_process::~sim_process() {
  stop();
}

void sim_process::stop() noexcept {
  if (pid_ <= 0)
    return;
  ::kill(pid_, SIGTERM);
  int status = 0;
  for (int i = 0; i < 100; ++i) {
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

caf::expected<http_response> fetch(http_client& client, http_request req) {
  auto promise = std::make_shared<std::promise<caf::expected<http_response>>>();
  auto future = promise->get_future();
  auto url = req.url;
  client.submit(std::move(req), [promise](caf::expected<http_response> r) {
    promise->set_value(std::move(r));
  });
  if (future.wait_for(std::chrono::seconds(60)) != std::future_status::ready)
    throw std::runtime_error("fetch: no answer from " + url + " within 60 s");
  return future.get();
}

json::value sim_call(http_client& client, const sim_process& sim, const std::string& path,
                     const std::string& body) {
  http_request req;
  req.url = sim.url() + path;
  if (!body.empty()) {
    req.method = "POST";
    req.body = body;
  }
  auto res = fetch(client, req);
  if (!res)
    throw std::runtime_error("sim_call " + path + ": " + message_of(res.error()));
  auto v = parse_json(res->body, path);
  if (!v)
    throw std::runtime_error("sim_call " + path + ": " + message_of(v.error()));
  return *v;
}

std::int64_t sim_stat(http_client& client, const sim_process& sim, const char* name) {
  auto s = sim_call(client, sim, "/_stats");
  return s.at(name).to_number<std::int64_t>();
}

} // namespace stepflow::test
