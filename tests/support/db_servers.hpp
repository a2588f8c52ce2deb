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

/// What both servers share: the temp dir, the port on 127.0.0.1, a user
/// with all privileges reachable over TCP with password(), and a database.
class db_server {
public:
  db_server(const db_server&) = delete;
  db_server& operator=(const db_server&) = delete;

  std::string host() const { return "127.0.0.1"; }
  uint16_t port() const noexcept { return port_; }
  std::string user() const { return "stepflow"; }
  const std::string& password() const noexcept { return password_; }
  std::string database() const { return "stepflow_test"; }
  pid_t pid() const noexcept { return pid_; }

protected:
  db_server() = default;
  ~db_server() = default;
  /// Stops the server with `sig` (then kills what is left) and removes the
  /// directory.
  void stop(int sig) noexcept;

  std::string dir_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
  std::string password_;
};

/// user() is created for the tests.
class mariadb_server : public db_server {
public:
  mariadb_server();
  ~mariadb_server();

  /// Runs `statements` as root through the mariadb client (over the unix
  /// socket, in database()); returns the rows tab-separated, one per line,
  /// without headers. Throws std::runtime_error with the client's output on
  /// failure.
  std::string sql(const std::string& statements) const;
  /// The server's error log so far.
  std::string log() const;

private:
  std::string socket_;
};

/// user() is the bootstrap superuser; TCP connections authenticate with
/// password() (scram-sha-256).
class postgres_server : public db_server {
public:
  postgres_server();
  ~postgres_server();

  /// Runs `statements` through psql (unix socket, database()); returns the
  /// rows unaligned ('|' between fields), one per line. Throws
  /// std::runtime_error with psql's output on failure.
  std::string sql(const std::string& statements) const;
  /// The server's log so far.
  std::string log() const;

private:
  std::string bin_;
};

} // namespace stepflow::test
