#pragma once
// Throwaway database servers for tests: a MariaDB (mariadb-install-db +
// mariadbd) and a PostgreSQL (initdb + postgres), each in its own temp dir,
// listening on 127.0.0.1 on a random port. The constructor waits (bounded)
// until the server answers and creates a password user and a database; the
// destructor stops the server (then kills what is left) and removes the
// directory. As root, mariadbd runs with --user=root and PostgreSQL runs as
// the "postgres" user (else "nobody"), since initdb refuses root. A server
// that cannot start throws std::runtime_error saying what is missing, with
// the tail of the server's log.
#include <cstdint>
#include <string>

#include <sys/types.h>

namespace stepflow::test {

class mariadb_server {
public:
  mariadb_server();
  ~mariadb_server();
  mariadb_server(const mariadb_server&) = delete;
  mariadb_server& operator=(const mariadb_server&) = delete;

  std::string host() const { return "127.0.0.1"; }
  uint16_t port() const noexcept { return port_; }
  /// A user with all privileges, reachable over TCP with password().
  std::string user() const { return "stepflow"; }
  const std::string& password() const noexcept { return password_; }
  std::string database() const { return "stepflow_test"; }
  pid_t pid() const noexcept { return pid_; }

  /// Runs `statements` as root through the mariadb client (over the unix
  /// socket, in database()); returns the rows tab-separated, one per line,
  /// without headers. Throws std::runtime_error with the client's output on
  /// failure.
  std::string sql(const std::string& statements) const;
  /// The server's error log so far.
  std::string log() const;

private:
  void stop() noexcept;

  std::string dir_;
  std::string socket_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
  std::string password_;
};

class postgres_server {
public:
  postgres_server();
  ~postgres_server();
  postgres_server(const postgres_server&) = delete;
  postgres_server& operator=(const postgres_server&) = delete;

  std::string host() const { return "127.0.0.1"; }
  uint16_t port() const noexcept { return port_; }
  /// The bootstrap superuser; TCP connections authenticate with
  /// password() (scram-sha-256).
  std::string user() const { return "stepflow"; }
  const std::string& password() const noexcept { return password_; }
  std::string database() const { return "stepflow_test"; }
  pid_t pid() const noexcept { return pid_; }

  /// Runs `statements` through psql (unix socket, database()); returns the
  /// rows unaligned ('|' between fields), one per line. Throws
  /// std::runtime_error with psql's output on failure.
  std::string sql(const std::string& statements) const;
  std::string log() const;

private:
  void stop() noexcept;

  std::string dir_;
  std::string bin_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
  std::string password_;
};

} // namespace stepflow::test
