#include "support/db_servers.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace stepflow::test {

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

/// An unprivileged account to run a server as (root only).
struct account {
  uid_t uid = 0;
  gid_t gid = 0;
};

std::string random_hex(std::size_t n) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < n; ++i)
    out += digits[rng() % 16];
  return out;
}

std::string tail_of(const std::string& path, std::size_t max_bytes = 3000) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  auto s = ss.str();
  return s.size() > max_bytes ? "..." + s.substr(s.size() - max_bytes) : s;
}

uint16_t pick_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    throw std::runtime_error("db_servers: socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0
      || ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("db_servers: cannot pick a free port");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

/// Starts `argv` in its own session with stdin from /dev/null and
/// stdout+stderr appended to `log`; as `as` when given. The child gets
/// SIGKILL if the test process dies first.
pid_t spawn(const std::vector<std::string>& argv, const std::string& log, const account* as) {
  std::vector<char*> args;
  for (const auto& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0)
    throw std::runtime_error("db_servers: fork failed");
  if (pid == 0) {
    ::setsid();
    int in = ::open("/dev/null", O_RDONLY);
    int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (in >= 0)
      ::dup2(in, 0);
    if (out >= 0) {
      ::dup2(out, 1);
      ::dup2(out, 2);
    }
    if (as) {
      if (::setgroups(0, nullptr) != 0 || ::setgid(as->gid) != 0 || ::setuid(as->uid) != 0)
        ::_exit(126);
    }
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent)
      ::_exit(125);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  return pid;
}

/// Waits for `pid` at most `limit`; true when it exited (status in *status).
bool wait_exit(pid_t pid, std::chrono::milliseconds limit, int* status = nullptr) {
  auto end = std::chrono::steady_clock::now() + limit;
  for (;;) {
    int st = 0;
    pid_t r = ::waitpid(pid, &st, WNOHANG);
    if (r == pid) {
      if (status)
        *status = st;
      return true;
    }
    if (r < 0)
      return true; // not our child any more
    if (std::chrono::steady_clock::now() >= end)
      return false;
    std::this_thread::sleep_for(20ms);
  }
}

/// Runs a program to completion (bounded); returns its exit code (-1 when
/// killed or not run) and its combined output in *output.
int run(const std::vector<std::string>& argv, std::string* output, const account* as = nullptr,
        std::chrono::seconds limit = 60s) {
  char tmpl[] = "/tmp/stepflow-db-run-XXXXXX";
  int fd = ::mkstemp(tmpl);
  if (fd < 0)
    throw std::runtime_error("db_servers: mkstemp failed");
  ::close(fd);
  if (as)
    (void) ::chown(tmpl, as->uid, as->gid);
  pid_t pid = spawn(argv, tmpl, as);
  int status = 0;
  bool done = wait_exit(pid, limit, &status);
  if (!done) {
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);
    wait_exit(pid, 5s, &status);
  }
  if (output)
    *output = tail_of(tmpl, 1 << 20);
  ::unlink(tmpl);
  if (!done || !WIFEXITED(status))
    return -1;
  return WEXITSTATUS(status);
}

std::string find_program(const std::vector<std::string>& candidates, const std::string& what) {
  for (const auto& c : candidates)
    if (::access(c.c_str(), X_OK) == 0)
      return c;
  throw std::runtime_error("db_servers: " + what + " not found (looked for "
                           + candidates.front() + "); scripts/setup installs it");
}

/// The children of `pid` (from /proc), for a forced stop.
std::vector<pid_t> children_of(pid_t pid) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    auto name = entry.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit))
      continue;
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    std::getline(stat, line);
    auto close_paren = line.rfind(')');
    if (close_paren == std::string::npos)
      continue;
    std::istringstream rest(line.substr(close_paren + 2));
    char state = 0;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == pid)
      out.push_back(static_cast<pid_t>(std::stoi(name)));
  }
  return out;
}

/// Stops `pid` with `sig`, then SIGKILLs it, its process group and its
/// children if it is still there after `grace`.
void stop_process(pid_t pid, int sig, std::chrono::milliseconds grace) {
  if (pid <= 0)
    return;
  auto kids = children_of(pid);
  ::kill(pid, sig);
  if (!wait_exit(pid, grace)) {
    for (auto k : children_of(pid))
      kids.push_back(k);
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);
    wait_exit(pid, 5s);
  }
  // Children of a killed postmaster notice its death; make sure.
  auto end = std::chrono::steady_clock::now() + 5s;
  for (auto k : kids) {
    while (::kill(k, 0) == 0 && std::chrono::steady_clock::now() < end)
      std::this_thread::sleep_for(20ms);
    ::kill(k, SIGKILL);
  }
}

std::string make_dir(const char* prefix, const account* owner) {
  std::string tmpl = std::string("/tmp/") + prefix + "-XXXXXX";
  if (!::mkdtemp(tmpl.data()))
    throw std::runtime_error("db_servers: mkdtemp failed");
  if (owner && ::chown(tmpl.c_str(), owner->uid, owner->gid) != 0)
    throw std::runtime_error("db_servers: cannot chown " + tmpl);
  return tmpl;
}

bool is_root() {
  return ::geteuid() == 0;
}

account unprivileged() {
  for (const char* name : {"postgres", "nobody"})
    if (passwd* pw = ::getpwnam(name))
      return account{pw->pw_uid, pw->pw_gid};
  throw std::runtime_error("db_servers: running as root and there is no 'postgres' or 'nobody' "
                           "user to run PostgreSQL as");
}

/// Starts a server, up to 3 times on a fresh port each (a port taken in the
/// meantime makes the server exit): `argv_for(port)` is its command line,
/// its output goes to `log_file`, and it runs as `as` when given. It is ready
/// once `ready(port)` succeeds, polled for at most 60 s while it runs. Sets
/// `port` and returns the pid; throws "<what> did not become ready:" and
/// `log_tail()` of the last attempt when none got ready.
pid_t start_server(const std::function<std::vector<std::string>(uint16_t)>& argv_for,
                   const std::string& log_file, const account* as,
                   const std::function<bool(uint16_t)>& ready,
                   const std::function<std::string()>& log_tail, const std::string& what,
                   uint16_t& port) {
  std::string last_log;
  for (int attempt = 0; attempt < 3; ++attempt) {
    port = pick_port();
    pid_t pid = spawn(argv_for(port), log_file, as);
    auto end = std::chrono::steady_clock::now() + 60s;
    while (std::chrono::steady_clock::now() < end) {
      if (wait_exit(pid, 0ms))
        break; // exited (port taken?)
      if (ready(port))
        return pid;
      std::this_thread::sleep_for(100ms);
    }
    stop_process(pid, SIGKILL, 1s);
    last_log = log_tail();
  }
  throw std::runtime_error(what + " did not become ready:\n" + last_log);
}

} // namespace

void db_server::stop(int sig) noexcept {
  stop_process(pid_, sig, 20s);
  pid_ = -1;
  if (!dir_.empty()) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
}

// -- MariaDB -----------------------------------------------------------------

mariadb_server::mariadb_server() {
  auto install = find_program({"/usr/bin/mariadb-install-db", "/usr/bin/mysql_install_db"},
                              "mariadb-install-db (package mariadb-server)");
  auto server = find_program({"/usr/sbin/mariadbd", "/usr/sbin/mysqld"},
                             "mariadbd (package mariadb-server)");
  find_program({"/usr/bin/mariadb"}, "the mariadb client (package mariadb-client)");
  dir_ = make_dir("stepflow-mariadb", nullptr);
  socket_ = dir_ + "/sock";
  password_ = "Pw-" + random_hex(16);
  try {
    std::vector<std::string> args{install, "--no-defaults", "--datadir=" + dir_ + "/data",
                                  "--auth-root-authentication-method=normal", "--skip-test-db"};
    if (is_root())
      args.push_back("--user=root");
    std::string out;
    if (run(args, &out, nullptr, 120s) != 0)
      throw std::runtime_error("MariaDB test server: mariadb-install-db failed:\n" + out);
    auto argv_for = [&](uint16_t port) {
      std::vector<std::string> argv{server,
                                    "--no-defaults",
                                    "--datadir=" + dir_ + "/data",
                                    "--port=" + std::to_string(port),
                                    "--socket=" + socket_,
                                    "--bind-address=127.0.0.1",
                                    "--pid-file=" + dir_ + "/mariadbd.pid",
                                    "--log-error=" + dir_ + "/error.log",
                                    "--skip-name-resolve",
                                    "--innodb-buffer-pool-size=16M",
                                    "--innodb-log-file-size=8M",
                                    "--max-connections=200"};
      if (is_root())
        argv.push_back("--user=root");
      return argv;
    };
    // Ready when the client can ping it.
    auto ready = [&](uint16_t) {
      return run({"/usr/bin/mariadb-admin", "--no-defaults", "--socket=" + socket_, "-uroot",
                  "--connect-timeout=2", "ping"},
                 nullptr, nullptr, 10s)
             == 0;
    };
    pid_ = start_server(argv_for, dir_ + "/stdout.log", nullptr, ready, [this] { return log(); },
                        "MariaDB test server: mariadbd", port_);
    std::string out2;
    std::string setup = "CREATE DATABASE stepflow_test; "
                        "CREATE USER 'stepflow'@'127.0.0.1' IDENTIFIED BY '" + password_ + "'; "
                        "CREATE USER 'stepflow'@'localhost' IDENTIFIED BY '" + password_ + "'; "
                        "GRANT ALL ON *.* TO 'stepflow'@'127.0.0.1'; "
                        "GRANT ALL ON *.* TO 'stepflow'@'localhost'; FLUSH PRIVILEGES;";
    if (run({"/usr/bin/mariadb", "--no-defaults", "--socket=" + socket_, "-uroot", "-e", setup},
            &out2)
        != 0)
      throw std::runtime_error("MariaDB test server: creating the test user failed:\n" + out2);
  } catch (...) {
    stop(SIGTERM);
    throw;
  }
}

mariadb_server::~mariadb_server() {
  stop(SIGTERM);
}

std::string mariadb_server::sql(const std::string& statements) const {
  std::string out;
  int rc = run({"/usr/bin/mariadb", "--no-defaults", "--socket=" + socket_, "-uroot", "-N", "-B",
                "--database=stepflow_test", "-e", statements},
               &out);
  if (rc != 0)
    throw std::runtime_error("mariadb client failed for <" + statements + ">: " + out);
  return out;
}

std::string mariadb_server::log() const {
  return tail_of(dir_ + "/error.log") + tail_of(dir_ + "/stdout.log");
}

// -- PostgreSQL ----------------------------------------------------------------

namespace {

std::string postgres_bin() {
  if (const char* b = std::getenv("STEPFLOW_PG_BIN"); b && *b)
    return b;
  std::vector<std::string> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec))
    if (::access((entry.path() / "bin/initdb").c_str(), X_OK) == 0)
      found.push_back((entry.path() / "bin").string());
  if (found.empty())
    throw std::runtime_error("PostgreSQL test server: no /usr/lib/postgresql/<version>/bin/initdb "
                             "(package postgresql); scripts/setup installs it");
  std::sort(found.begin(), found.end(), [](const std::string& a, const std::string& b) {
    return std::stoi(fs::path(a).parent_path().filename().string())
           < std::stoi(fs::path(b).parent_path().filename().string());
  });
  return found.back();
}

} // namespace

postgres_server::postgres_server() {
  bin_ = postgres_bin();
  account owner{};
  const account* as = nullptr;
  if (is_root()) {
    owner = unprivileged();
    as = &owner;
  }
  dir_ = make_dir("stepflow-postgres", as);
  password_ = "Pw-" + random_hex(16);
  try {
    {
      std::ofstream pw(dir_ + "/pwfile");
      pw << password_ << "\n";
    }
    if (as)
      (void) ::chown((dir_ + "/pwfile").c_str(), as->uid, as->gid);
    std::string out;
    if (run({bin_ + "/initdb", "-D", dir_ + "/data", "-U", "stepflow", "--pwfile=" + dir_ + "/pwfile",
             "-A", "scram-sha-256", "--auth-local=trust", "--no-sync", "-E", "UTF8", "--locale=C"},
            &out, as, 120s)
        != 0)
      throw std::runtime_error("PostgreSQL test server: initdb failed:\n" + out);
    auto argv_for = [&](uint16_t port) {
      return std::vector<std::string>{bin_ + "/postgres",
                                      "-D", dir_ + "/data",
                                      "-p", std::to_string(port),
                                      "-k", dir_,
                                      "-c", "listen_addresses=127.0.0.1",
                                      "-c", "fsync=off",
                                      "-c", "full_page_writes=off",
                                      "-c", "shared_buffers=16MB",
                                      "-c", "max_connections=100"};
    };
    auto ready = [&](uint16_t port) {
      return run({bin_ + "/pg_isready", "-q", "-h", dir_, "-p", std::to_string(port), "-t", "2"},
                 nullptr, nullptr, 10s)
             == 0;
    };
    std::string logfile = dir_ + "/postgres.log";
    if (as) {
      int fd = ::open(logfile.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0)
        ::close(fd);
    }
    pid_ = start_server(argv_for, logfile, as, ready, [this] { return log(); },
                        "PostgreSQL test server: postgres", port_);
    std::string out2;
    if (run({bin_ + "/psql", "-X", "-q", "-h", dir_, "-p", std::to_string(port_), "-U", "stepflow",
             "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", "CREATE DATABASE stepflow_test"},
            &out2)
        != 0)
      throw std::runtime_error("PostgreSQL test server: creating the test database failed:\n"
                               + out2);
  } catch (...) {
    stop(SIGINT);
    throw;
  }
}

postgres_server::~postgres_server() {
  stop(SIGINT); // fast shutdown: disconnects clients, then exits
}

std::string postgres_server::sql(const std::string& statements) const {
  std::string out;
  int rc = run({bin_ + "/psql", "-X", "-q", "-A", "-t", "-h", dir_, "-p", std::to_string(port_),
                "-U", "stepflow", "-d", "stepflow_test", "-v", "ON_ERROR_STOP=1", "-c", statements},
               &out);
  if (rc != 0)
    throw std::runtime_error("psql failed for <" + statements + ">: " + out);
  return out;
}

std::string postgres_server::log() const {
  return tail_of(dir_ + "/postgres.log");
}

} // namespace stepflow::test
