// The SQL connector against real servers: a throwaway MariaDB and
// PostgreSQL (tests/support/db_servers), PostgreSQL again through Debian's
// psqlODBC driver, and a SQLite file. Servers start once per test process
// (each TEST_CASE runs in its own process under CTest) and stop at exit.
#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "sql/sql.hpp"
#include "sql/sql_text.hpp"
#include "stepflow/runtime/json.hpp"
#include "stepflow/runtime/step.hpp"
#include "support/db_servers.hpp"
#include "support/step_fixture.hpp"
#include "support/temp_dir.hpp"

using namespace stepflow;
namespace sqlc = stepflow::connectors::sql;

namespace {

constexpr auto safety_bound = std::chrono::seconds(60);
const char* psqlodbc_driver = "/usr/lib/x86_64-linux-gnu/odbc/psqlodbcw.so";

test::mariadb_server& mariadb() {
  static test::mariadb_server server;
  return server;
}

test::postgres_server& postgres() {
  static test::postgres_server server;
  return server;
}

/// A connector and the registry holding its steps.
struct harness {
  explicit harness(json::object options = {}) {
    connectors::connector_setup setup;
    setup.options = &options;
    auto made = connectors::make_sql_connector(setup);
    REQUIRE_MESSAGE(made, (made ? "" : message_of(made.error())));
    conn = *made;
    REQUIRE(!conn->add_steps(registry));
  }

  struct result {
    step_outcome outcome;
    std::vector<log_line> logs;
  };

  /// Checks and runs step `file` once; a check() error becomes a failure.
  result run(const std::string& file, json::object params,
             std::vector<std::pair<std::string, json::value>> inputs = {},
             std::function<void(step_context&)> during = nullptr) {
    auto* type = registry.find(file);
    REQUIRE_MESSAGE(type, file);
    if (auto err = type->check(params))
      return {step_outcome::failure(message_of(err)), {}};
    auto ctx = test::make_step_context(file.c_str(), std::move(params), "sql");
    ctx->application = "sql_test";
    for (auto& [name, data] : inputs)
      ctx->inputs.emplace_back(name, std::make_shared<const json::value>(std::move(data)));
    test::started_step run{*type, ctx};
    if (during)
      during(*ctx);
    auto out = run.wait(safety_bound);
    return {std::move(out), ctx->take_logs()};
  }

  /// Runs and requires success; returns the data.
  json::value ok(const std::string& file, json::object params,
                 std::vector<std::pair<std::string, json::value>> inputs = {}) {
    auto r = run(file, std::move(params), std::move(inputs));
    REQUIRE_MESSAGE(r.outcome.ok, r.outcome.error);
    return r.outcome.data;
  }

  std::shared_ptr<connectors::connector> conn;
  step_registry registry;
};

json::object with(json::object base, json::object extra) {
  for (auto& kv : extra)
    base[kv.key()] = kv.value();
  return base;
}

json::object mysql_params() {
  auto& s = mariadb();
  return json::object{{"host", s.host()},
                      {"port", s.port()},
                      {"user", s.user()},
                      {"password", s.password()},
                      {"database", s.database()},
                      {"timeout", 20}};
}

json::object pg_params() {
  auto& s = postgres();
  return json::object{{"driver", "postgresql"},     {"host", s.host()},
                      {"port", s.port()},           {"user", s.user()},
                      {"password", s.password()},   {"database", s.database()},
                      {"timeout", 20}};
}

json::object odbc_params() {
  auto& s = postgres();
  return json::object{
    {"driver", "odbc"},
    {"connection_string",
     std::string("Driver=") + psqlodbc_driver + ";Server=127.0.0.1;Port=" + std::to_string(s.port())
       + ";Database=" + s.database() + ";BoolsAsChar=0;ByteaAsLongVarBinary=1"},
    {"user", s.user()},
    {"password", s.password()},
    {"timeout", 20}};
}

const json::object& row(const json::value& rows, std::size_t i) {
  REQUIRE(rows.is_array());
  REQUIRE(rows.get_array().size() > i);
  return rows.get_array()[i].get_object();
}

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r'))
    s.pop_back();
  return s;
}

void no_secret(const harness::result& r, const std::string& secret) {
  CHECK(r.outcome.error.find(secret) == std::string::npos);
  for (const auto& l : r.logs)
    CHECK(l.message.find(secret) == std::string::npos);
}

/// A `during` for harness::run: cancels the step once its statement has had
/// 300 ms to start.
void cancel_soon(step_context& ctx) {
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ctx.cancelled = true;
}

/// A query of a missing table fails naming the backend (and `code`), a wrong
/// password fails naming the backend (and `denial`); neither shows the
/// password.
void check_errors_hide_password(harness& h, const std::string& file, const json::object& base,
                                const std::string& password, const std::string& backend,
                                const std::string& code = "", const std::string& denial = "") {
  auto r = h.run(file, with(base, {{"query", "SELECT * FROM no_such_table"}}));
  REQUIRE_FALSE(r.outcome.ok);
  CHECK(r.outcome.error.find(backend) != std::string::npos);
  if (!code.empty())
    CHECK(r.outcome.error.find(code) != std::string::npos);
  no_secret(r, password);
  auto wrong = "Wrong-" + password;
  auto denied = h.run(file, with(base, {{"password", wrong}, {"query", "SELECT 1"}}));
  REQUIRE_FALSE(denied.outcome.ok);
  CHECK(denied.outcome.error.find(backend) != std::string::npos);
  if (!denial.empty())
    CHECK(denied.outcome.error.find(denial) != std::string::npos);
  no_secret(denied, wrong);
}

/// On `one` (one pool thread, one connection): `slow_query` past a 1 s
/// timeout and `cancelled_query` cancelled both fail saying so, and the
/// thread and the connection serve the next run.
void check_timeout_and_cancel(harness& one, const std::string& file, const json::object& base,
                              const std::string& slow_query, const std::string& cancelled_query) {
  auto slow = one.run(file, with(base, {{"query", slow_query}, {"timeout", 1}}));
  REQUIRE_FALSE(slow.outcome.ok);
  CHECK(slow.outcome.error.find("timeout") != std::string::npos);
  auto cancelled = one.run(file, with(base, {{"query", cancelled_query}}), {}, cancel_soon);
  REQUIRE_FALSE(cancelled.outcome.ok);
  CHECK(cancelled.outcome.error.find("cancel") != std::string::npos);
  // The single pool thread and connection are free again.
  one.ok(file, with(base, {{"query", "SELECT 1 AS one"}}));
}

/// Runs `file` with `params` five times in each of six threads at once; how
/// many of the 30 runs succeeded.
int concurrent_successes(harness& h, const std::string& file, const json::object& params) {
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  for (int t = 0; t < 6; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 5; ++i)
        if (h.run(file, params).outcome.ok)
          ++good;
    });
  for (auto& t : threads)
    t.join();
  return good.load();
}

} // namespace

// -- pure helpers ------------------------------------------------------------

TEST_CASE("identifiers are validated, never escaped") {
  CHECK(sqlc::plain_identifier("devices"));
  CHECK(sqlc::plain_identifier("_x1$"));
  CHECK_FALSE(sqlc::plain_identifier(""));
  CHECK_FALSE(sqlc::plain_identifier("1abc"));
  CHECK_FALSE(sqlc::plain_identifier("a b"));
  CHECK_FALSE(sqlc::plain_identifier("a`b"));
  CHECK_FALSE(sqlc::plain_identifier("a\"b"));
  CHECK_FALSE(sqlc::plain_identifier("a;b"));
  CHECK_FALSE(sqlc::plain_identifier("t\xc3\xa9"));
  auto two = sqlc::split_identifier("public.devices", 2, "table");
  REQUIRE(two);
  CHECK(two->size() == 2);
  CHECK_FALSE(sqlc::split_identifier("a.b.c", 2, "table"));
  CHECK_FALSE(sqlc::split_identifier("a..b", 3, "table"));
  auto bad = sqlc::split_identifier("x; DROP TABLE y", 2, "table");
  REQUIRE_FALSE(bad);
  CHECK(message_of(bad.error()).find("not a plain identifier") != std::string::npos);
}

TEST_CASE("named placeholders become positional outside literals and comments") {
  json::object named{{"id", 7}, {"name", "x"}};
  auto q = sqlc::bind_named("SELECT ':id', \"a:id\", x::text /* :id */ FROM t WHERE id = :id "
                            "AND n = :name AND m = :id -- :name",
                            named, sqlc::driver_kind::postgresql,
                            sqlc::placeholder_style::dollar_number);
  REQUIRE(q);
  CHECK(q->sql
        == "SELECT ':id', \"a:id\", x::text /* :id */ FROM t WHERE id = $1 AND n = $2 AND m = $1 "
           "-- :name");
  CHECK(q->params.size() == 2);
  auto m = sqlc::bind_named("SELECT 'it\\'s :id', `:id` FROM t WHERE a = :id OR b = :id", named,
                            sqlc::driver_kind::mysql, sqlc::placeholder_style::question_mark);
  REQUIRE(m);
  CHECK(m->sql == "SELECT 'it\\'s :id', `:id` FROM t WHERE a = ? OR b = ?");
  CHECK(m->params.size() == 2);
  auto d = sqlc::bind_named("SELECT $$ :id $$, $tag$ :name $tag$, :id", named,
                            sqlc::driver_kind::postgresql, sqlc::placeholder_style::dollar_number);
  REQUIRE(d);
  CHECK(d->sql == "SELECT $$ :id $$, $tag$ :name $tag$, $1");
  auto missing = sqlc::bind_named("SELECT :nope", named, sqlc::driver_kind::sqlite,
                                  sqlc::placeholder_style::question_mark);
  REQUIRE_FALSE(missing);
  CHECK(message_of(missing.error()).find(":nope") != std::string::npos);
}

TEST_CASE("the decimal rule, base64 and redaction") {
  CHECK(sqlc::decimal_value("42") == json::value(42));
  CHECK(sqlc::decimal_value("-0012.500") == json::value(-12.5));
  CHECK(sqlc::decimal_value("12.00") == json::value(12));
  CHECK(sqlc::decimal_value("123456789012345678") == json::value(123456789012345678LL));
  CHECK(sqlc::decimal_value("18446744073709551615") == json::value(18446744073709551615ULL));
  CHECK(sqlc::decimal_value("123456789012345678901") == json::value("123456789012345678901"));
  CHECK(sqlc::decimal_value("0.000123") == json::value(0.000123));
  CHECK(sqlc::decimal_value("1234567890.1234567") == json::value("1234567890.1234567"));
  CHECK(sqlc::decimal_value("NaN") == json::value("NaN"));
  CHECK(sqlc::base64("") == "");
  CHECK(sqlc::base64("f") == "Zg==");
  CHECK(sqlc::base64("fo") == "Zm8=");
  CHECK(sqlc::base64("foobar") == "Zm9vYmFy");
  CHECK(sqlc::base64(std::string("\x00\x01\xff", 3)) == "AAH/");
  CHECK(sqlc::redact("login failed for s3cret!", {"s3cret!"}) == "login failed for ***");
  CHECK(sqlc::redact("DRIVER=x;UID=u;PWD={a;b};", {}) == "DRIVER=x;UID=u;PWD=***;");
  sqlc::target t;
  t.driver = sqlc::driver_kind::odbc;
  t.connection_string = "Driver=x;Pwd=hunter22;Server=h";
  auto s = t.secrets();
  CHECK(std::find(s.begin(), s.end(), "hunter22") != s.end());
  CHECK(t.describe().find("hunter22") == std::string::npos);
}

// -- connector and checks ------------------------------------------------------

TEST_CASE("connector options are validated once, in the factory") {
  auto make = [](json::object o) {
    connectors::connector_setup setup;
    setup.options = &o;
    return connectors::make_sql_connector(setup);
  };
  auto unknown = make({{"pool", 3}});
  REQUIRE_FALSE(unknown);
  CHECK(message_of(unknown.error()) == "sql: unknown option \"pool\"");
  auto zero = make({{"pool_size", 0}});
  REQUIRE_FALSE(zero);
  CHECK(message_of(zero.error()) == "sql.pool_size must be a whole number from 1 to 1000");
  auto frac = make({{"threads", 2.5}});
  REQUIRE_FALSE(frac);
  CHECK(message_of(frac.error()).find("sql.threads") != std::string::npos);
  auto text = make({{"idle_timeout", "soon"}});
  REQUIRE_FALSE(text);
  CHECK(message_of(text.error()).find("sql.idle_timeout") != std::string::npos);
  auto negative = make({{"idle_timeout", -1}});
  REQUIRE_FALSE(negative);
  CHECK(message_of(negative.error()) == "sql.idle_timeout must be a number from 0.001 to 604800");
  REQUIRE(make({{"pool_size", 2}, {"threads", 3}, {"idle_timeout", 0.5}}));

  harness h;
  for (auto [file, friendly] :
       std::vector<std::pair<std::string, std::string>>{{"MySQLSelect", "MySQL Select"},
                                                        {"MySQLInsert", "MySQL Insert"},
                                                        {"MySQLDescribe", "MySQL Describe"},
                                                        {"MSSQLSelect", "MS-SQL Select"},
                                                        {"MSSQLInsert", "MS-SQL Insert"},
                                                        {"MSSQLDescribe", "MS-SQL Describe"},
                                                        {"SQLSelect", "SQL Select"},
                                                        {"SQLInsert", "SQL Insert"},
                                                        {"SQLDescribe", "SQL Describe"},
                                                        {"SL1DatabaseSelect", "SL1 Database Select"},
                                                        {"SL1DatabaseDescribe", "SL1 Database Describe"}}) {
    auto* type = h.registry.find(file);
    REQUIRE_MESSAGE(type, file);
    CHECK(type->info().friendly_name == friendly);
  }
  // The SL1 database is read, not written; it listens on 7706 by default.
  CHECK(h.registry.find("SL1DatabaseInsert") == nullptr);
  auto* sl1 = h.registry.find("SL1DatabaseSelect");
  REQUIRE(sl1);
  bool port_7706 = false;
  for (const auto& p : sl1->info().params)
    port_7706 = port_7706 || (p.name == "port" && p.default_value == json::value(7706));
  CHECK(port_7706);
}

TEST_CASE("step parameters are checked before a run") {
  harness h;
  auto check = [&](const std::string& file, json::object p) {
    return h.registry.find(file)->check(p);
  };
  auto err = check("MySQLSelect", {{"query", "SELECT 1"}});
  REQUIRE(err);
  CHECK(message_of(err).find("host") != std::string::npos);
  err = check("SQLSelect", {{"driver", "oracle"}, {"host", "h"}, {"query", "SELECT 1"}});
  REQUIRE(err);
  CHECK(message_of(err).find("driver") != std::string::npos);
  err = check("SQLSelect", {{"driver", "sqlite"}, {"query", "SELECT 1"}});
  REQUIRE(err);
  CHECK(message_of(err).find("path") != std::string::npos);
  err = check("MySQLSelect", {{"host", "h"}, {"query", "SELECT 1"}, {"params", "x"}});
  REQUIRE(err);
  CHECK(message_of(err).find("params") != std::string::npos);
  err = check("MySQLSelect", {{"host", "h"}, {"port", 70000}, {"query", "SELECT 1"}});
  REQUIRE(err);
  CHECK(message_of(err).find("port") != std::string::npos);
  err = check("MySQLInsert", {{"host", "h"}, {"table", "t; DROP TABLE t"}, {"rows", json::array{}}});
  REQUIRE(err);
  CHECK(message_of(err).find("not a plain identifier") != std::string::npos);
  err = check("MySQLInsert",
              {{"host", "h"}, {"table", "t"}, {"rows", json::array{json::object{{"a`b", 1}}}}});
  REQUIRE(err);
  CHECK(message_of(err).find("a`b") != std::string::npos);
  err = check("MSSQLSelect", {{"query", "SELECT 1"}});
  REQUIRE(err);
  CHECK(message_of(err).find("host") != std::string::npos);
  CHECK_FALSE(check("MSSQLSelect", {{"host", "sql.example.com"}, {"query", "SELECT 1"}}));
  CHECK_FALSE(check("SQLDescribe", {{"driver", "sqlite"}, {"path", "/tmp/x.db"}, {"table", "main.t"}}));
}

// -- MariaDB -------------------------------------------------------------------

TEST_CASE("MySQL steps against a real MariaDB") {
  auto& server = mariadb();
  server.sql("DROP TABLE IF EXISTS people; DROP TABLE IF EXISTS typed;"
             "CREATE TABLE people (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100) NOT NULL, "
             "age INT NULL, email VARCHAR(100) UNIQUE, created TIMESTAMP NOT NULL DEFAULT "
             "CURRENT_TIMESTAMP) CHARSET utf8mb4;"
             "INSERT INTO people (name, age) VALUES ('ann', 31), ('bob', 45), ('cy', NULL);");
  harness h;
  auto base = mysql_params();

  SUBCASE("the SL1 database steps are the MySQL steps with SL1's defaults") {
    auto rows = h.ok("SL1DatabaseSelect",
                     with(base, {{"query", "SELECT name FROM people WHERE age > ? ORDER BY name"},
                                 {"params", json::array{40}}}));
    REQUIRE(rows.as_array().size() == 1);
    CHECK(row(rows, 0).at("name") == json::value("bob"));
  }

  SUBCASE("select with bound params of every type") {
    auto rows = h.ok("MySQLSelect",
                     with(base, {{"query", "SELECT ? AS i, ? AS neg, ? AS big, ? AS d, ? AS s, "
                                           "? AS b, ? AS n, ? AS j, ? + 1 AS sum"},
                                 {"params", json::array{42, -7, 9007199254740993LL, 2.5,
                                                        "h\xc3\xa9llo", true, nullptr,
                                                        json::object{{"a", 1}}, 41}}}));
    auto& r = row(rows, 0);
    CHECK(r.at("i") == json::value(42));
    CHECK(r.at("neg") == json::value(-7));
    CHECK(r.at("big") == json::value(9007199254740993LL));
    CHECK(r.at("d") == json::value(2.5));
    CHECK(r.at("s") == json::value("h\xc3\xa9llo"));
    CHECK(r.at("b") == json::value(1)); // MySQL has no boolean type: TINYINT 1
    CHECK(r.at("n").is_null());
    CHECK(r.at("j") == json::value("{\"a\":1}"));
    CHECK(r.at("sum") == json::value(42));
    // The session carries the server-side statement limit (the step's timeout).
    auto limit = h.ok("MySQLSelect", with(base, {{"query", "SELECT @@SESSION.max_statement_time AS m"}}));
    CHECK(row(limit, 0).at("m") == json::value(20.0));
  }

  SUBCASE("typed results and NULLs") {
    server.sql("CREATE TABLE typed (i BIGINT, u BIGINT UNSIGNED, small TINYINT, dec2 DECIMAL(10,2), "
               "dec_big DECIMAL(30,10), f FLOAT, d DOUBLE, dt DATE, ts DATETIME(6), t TIME, "
               "y YEAR, bit1 BIT(1), bits BIT(8), vb VARBINARY(10), bl BLOB, txt TEXT, "
               "vc VARCHAR(20), js JSON, e ENUM('a','b'), nul INT);"
               "INSERT INTO typed VALUES (-5, 18446744073709551615, 7, 12.50, "
               "12345678901234567890.0123456789, 0.1, 0.1, '2024-02-29', "
               "'2024-02-29 13:14:15.123456', '-01:02:03', 2024, b'1', b'00000101', "
               "0x0001FF, 'bytes', 'long text', 'caf\xc3\xa9', '{\"k\": [1, 2]}', 'b', NULL);");
    auto rows = h.ok("MySQLSelect", with(base, {{"query", "SELECT * FROM typed"}}));
    auto& r = row(rows, 0);
    CHECK(r.at("i") == json::value(-5));
    CHECK(r.at("u") == json::value(18446744073709551615ULL));
    CHECK(r.at("small") == json::value(7));
    CHECK(r.at("dec2") == json::value(12.5));
    CHECK(r.at("dec_big") == json::value("12345678901234567890.0123456789"));
    CHECK(r.at("f") == json::value(0.1));
    CHECK(r.at("d") == json::value(0.1));
    CHECK(r.at("dt") == json::value("2024-02-29"));
    CHECK(r.at("ts") == json::value("2024-02-29T13:14:15.123456"));
    CHECK(r.at("t") == json::value("-01:02:03"));
    CHECK(r.at("y") == json::value(2024));
    CHECK(r.at("bit1") == json::value(true));
    CHECK(r.at("bits") == json::value(5));
    CHECK(r.at("vb") == json::value("AAH/"));
    CHECK(r.at("bl") == json::value(sqlc::base64("bytes")));
    CHECK(r.at("txt") == json::value("long text"));
    CHECK(r.at("vc") == json::value("caf\xc3\xa9"));
    CHECK(r.at("js").is_string()); // MariaDB's JSON is LONGTEXT
    CHECK(r.at("e") == json::value("b"));
    CHECK(r.at("nul").is_null());
  }

  SUBCASE("named params") {
    auto rows = h.ok("MySQLSelect",
                     with(base, {{"query", "SELECT name FROM people WHERE age > :min AND name <> "
                                           ":skip ORDER BY name"},
                                 {"params", json::object{{"min", 30}, {"skip", "zed"}}}}));
    REQUIRE(rows.get_array().size() == 2);
    CHECK(row(rows, 0).at("name") == json::value("ann"));
    CHECK(row(rows, 1).at("name") == json::value("bob"));
    auto update = h.ok("MySQLSelect", with(base, {{"query", "UPDATE people SET age = age + 1 "
                                                            "WHERE age IS NOT NULL"}}));
    CHECK(update.at("rows_affected") == json::value(2));
  }

  SUBCASE("insert rows and input data") {
    auto out = h.ok("MySQLInsert",
                    with(base, {{"table", "people"},
                                {"rows", json::array{json::object{{"name", "dee"}, {"age", 20}},
                                                     json::object{{"name", "eve"}, {"age", nullptr}}}}}));
    CHECK(out.at("rows_affected") == json::value(2));
    REQUIRE(out.at("last_insert_id").is_int64());
    CHECK(out.at("last_insert_id").get_int64() >= 5);
    auto from_input = h.ok("MySQLInsert", with(base, {{"table", "stepflow_test.people"}}),
                           {{"Fetch", json::array{json::object{{"name", "fay"}, {"age", 50}}}}});
    CHECK(from_input.at("rows_affected") == json::value(1));
    CHECK(trimmed(server.sql("SELECT COUNT(*) FROM people")) == "6");
    CHECK(trimmed(server.sql("SELECT age FROM people WHERE name = 'eve'")) == "NULL");
    // A failing row rolls the whole insert back.
    auto failed = h.run("MySQLInsert",
                        with(base, {{"table", "people"},
                                    {"rows", json::array{json::object{{"name", "gus"}},
                                                         json::object{{"nosuch", 1}}}}}));
    REQUIRE_FALSE(failed.outcome.ok);
    CHECK(failed.outcome.error.find("row 1") != std::string::npos);
    CHECK(trimmed(server.sql("SELECT COUNT(*) FROM people WHERE name = 'gus'")) == "0");
  }

  SUBCASE("describe") {
    auto cols = h.ok("MySQLDescribe", with(base, {{"table", "people"}}));
    REQUIRE(cols.get_array().size() == 5);
    auto& id = row(cols, 0);
    CHECK(id.at("name") == json::value("id"));
    CHECK(id.at("type") == json::value("int(11)"));
    CHECK(id.at("nullable") == json::value(false));
    CHECK(id.at("key") == json::value("primary"));
    CHECK(id.at("extra") == json::value("auto_increment"));
    CHECK(row(cols, 2).at("nullable") == json::value(true));
    CHECK(row(cols, 3).at("key") == json::value("unique"));
    CHECK(row(cols, 1).at("key").is_null());
    auto missing = h.run("MySQLDescribe", with(base, {{"table", "nope"}}));
    REQUIRE_FALSE(missing.outcome.ok);
    CHECK(missing.outcome.error.find("not found") != std::string::npos);
  }

  SUBCASE("a SQL error names the backend and never the password") {
    check_errors_hide_password(h, "MySQLSelect", base, server.password(), "MySQL", "1146",
                               "Access denied");
    auto count = h.run("MySQLSelect", with(base, {{"query", "SELECT ?"}, {"params", json::array{}}}));
    REQUIRE_FALSE(count.outcome.ok);
    CHECK(count.outcome.error.find("placeholder") != std::string::npos);
  }

  SUBCASE("a bad identifier is rejected and nothing runs") {
    auto r = h.run("MySQLInsert", with(base, {{"table", "people; DROP TABLE people"},
                                              {"rows", json::array{json::object{{"name", "x"}}}}}));
    REQUIRE_FALSE(r.outcome.ok);
    CHECK(r.outcome.error.find("not a plain identifier") != std::string::npos);
    auto col = h.run("MySQLInsert",
                     with(base, {{"table", "people"}}),
                     {{"in", json::array{json::object{{"name`) VALUES ('x'); --", 1}}}}});
    REQUIRE_FALSE(col.outcome.ok);
    CHECK(col.outcome.error.find("not a plain identifier") != std::string::npos);
    CHECK(trimmed(server.sql("SELECT COUNT(*) FROM people")) == "3");
  }

  SUBCASE("an injection attempt through params stays data") {
    auto none = h.ok("MySQLSelect", with(base, {{"query", "SELECT * FROM people WHERE name = ?"},
                                               {"params", json::array{"x' OR '1'='1"}}}));
    CHECK(none.get_array().empty());
    std::string evil = "Robert'); DROP TABLE people; -- \\' \"";
    h.ok("MySQLInsert", with(base, {{"table", "people"}, {"rows", json::object{{"name", evil}}}}));
    auto back = h.ok("MySQLSelect", with(base, {{"query", "SELECT name FROM people WHERE name = :n"},
                                               {"params", json::object{{"n", evil}}}}));
    REQUIRE(back.get_array().size() == 1);
    CHECK(row(back, 0).at("name") == json::value(evil));
    CHECK(trimmed(server.sql("SELECT COUNT(*) FROM people")) == "4");
  }

  SUBCASE("the pool keeps the connection count bounded over many runs") {
    auto connections = [&] {
      return std::stoi(trimmed(server.sql(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'stepflow'")));
    };
    auto threads_connected = [&] {
      auto line = trimmed(server.sql("SHOW STATUS LIKE 'Threads_connected'"));
      return std::stoi(line.substr(line.find('\t') + 1));
    };
    harness pooled{json::object{{"pool_size", 2}, {"threads", 6}}};
    int before = threads_connected();
    CHECK(connections() == 0);
    for (int i = 0; i < 20; ++i)
      pooled.ok("MySQLSelect", with(base, {{"query", "SELECT ? AS n"}, {"params", json::array{i}}}));
    CHECK(connections() == 1); // sequential runs share one connection
    // Concurrent runs: at most pool_size connections.
    CHECK(concurrent_successes(pooled, "MySQLSelect",
                               with(base, {{"query", "SELECT SLEEP(0.02) AS s"}}))
          == 30);
    int open = connections();
    CHECK(open >= 1);
    CHECK(open <= 2);
    CHECK(threads_connected() <= before + 2);
  }

  SUBCASE("a connection killed on the server is discarded and reopened") {
    h.ok("MySQLSelect", with(base, {{"query", "SELECT 1 AS one"}}));
    auto id = trimmed(server.sql(
      "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'stepflow'"));
    REQUIRE_FALSE(id.empty());
    server.sql("KILL " + id);
    for (int i = 0; i < 100 && !trimmed(server.sql("SELECT COUNT(*) FROM information_schema."
                                                   "PROCESSLIST WHERE USER = 'stepflow'"))
                                  .starts_with("0");
         ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    auto again = h.run("MySQLSelect", with(base, {{"query", "SELECT CONNECTION_ID() AS id"}}));
    REQUIRE_MESSAGE(again.outcome.ok, again.outcome.error);
    CHECK(to_text(row(again.outcome.data, 0).at("id")) != id);
  }

  SUBCASE("a timeout or a cancel stops the statement without wedging a thread") {
    harness one{json::object{{"threads", 1}, {"pool_size", 1}}};
    check_timeout_and_cancel(one, "MySQLSelect", base, "SELECT SLEEP(20)", "SELECT SLEEP(20) AS s");
    // Nothing is left running on the server.
    CHECK(trimmed(server.sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE "
                             "INFO LIKE 'SELECT SLEEP%'"))
          == "0");
  }
}

// -- PostgreSQL ---------------------------------------------------------------

TEST_CASE("PostgreSQL steps against a real PostgreSQL") {
  auto& server = postgres();
  server.sql("DROP TABLE IF EXISTS people; DROP TABLE IF EXISTS typed; "
             "CREATE TABLE people (id SERIAL PRIMARY KEY, name TEXT NOT NULL, age INT, "
             "email TEXT UNIQUE, created TIMESTAMPTZ NOT NULL DEFAULT now()); "
             "INSERT INTO people (name, age) VALUES ('ann', 31), ('bob', 45), ('cy', NULL);");
  harness h;
  auto base = pg_params();

  SUBCASE("select with bound params of every type") {
    auto rows = h.ok("SQLSelect",
                     with(base, {{"query", "SELECT $1 AS i, $2 AS big, $3 AS d, $4 AS s, $5 AS b, "
                                           "$6::int AS n, $7::jsonb AS j, $1 + 1 AS sum"},
                                 {"params", json::array{42, 9007199254740993LL, 2.5,
                                                        "h\xc3\xa9llo", true, nullptr,
                                                        json::object{{"a", 1}}}}}));
    auto& r = row(rows, 0);
    CHECK(r.at("i") == json::value(42));
    CHECK(r.at("big") == json::value(9007199254740993LL));
    CHECK(r.at("d") == json::value(2.5));
    CHECK(r.at("s") == json::value("h\xc3\xa9llo"));
    CHECK(r.at("b") == json::value(true));
    CHECK(r.at("n").is_null());
    CHECK(r.at("j") == json::value(json::object{{"a", 1}}));
    CHECK(r.at("sum") == json::value(43));
  }

  SUBCASE("typed results and NULLs") {
    server.sql("CREATE TABLE typed (i8 BIGINT, i2 SMALLINT, num NUMERIC(10,2), num_big NUMERIC, "
               "r REAL, d DOUBLE PRECISION, dt DATE, ts TIMESTAMP(3), tz TIMESTAMPTZ, t TIME, "
               "b BOOLEAN, by BYTEA, txt TEXT, js JSON, jb JSONB, arr INT[], u UUID, nul INT); "
               "INSERT INTO typed VALUES (-5, 7, 12.50, 12345678901234567890.0123456789, 0.1, "
               "0.1, '2024-02-29', '2024-02-29 13:14:15.123', '2024-02-29 13:14:15+02', "
               "'01:02:03', false, '\\x0001ff', 'caf\xc3\xa9', '{\"k\": [1, 2]}', "
               "'{\"x\": null}', '{1,2}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', NULL);");
    auto rows = h.ok("SQLSelect", with(base, {{"query", "SELECT * FROM typed"}}));
    auto& r = row(rows, 0);
    CHECK(r.at("i8") == json::value(-5));
    CHECK(r.at("i2") == json::value(7));
    CHECK(r.at("num") == json::value(12.5));
    CHECK(r.at("num_big") == json::value("12345678901234567890.0123456789"));
    CHECK(r.at("r") == json::value(0.1));
    CHECK(r.at("d") == json::value(0.1));
    CHECK(r.at("dt") == json::value("2024-02-29"));
    CHECK(r.at("ts") == json::value("2024-02-29T13:14:15.123"));
    CHECK(r.at("tz") == json::value("2024-02-29T11:14:15+00:00"));
    CHECK(r.at("t") == json::value("01:02:03"));
    CHECK(r.at("b") == json::value(false));
    CHECK(r.at("by") == json::value("AAH/"));
    CHECK(r.at("txt") == json::value("caf\xc3\xa9"));
    CHECK(r.at("js") == json::value(json::object{{"k", json::array{1, 2}}}));
    CHECK(r.at("jb") == json::value(json::object{{"x", nullptr}}));
    CHECK(r.at("arr") == json::value("{1,2}"));
    CHECK(r.at("u") == json::value("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"));
    CHECK(r.at("nul").is_null());
  }

  SUBCASE("named params with casts") {
    auto rows = h.ok("SQLSelect",
                     with(base, {{"query", "SELECT name, :min::int AS m FROM people WHERE age > "
                                           ":min AND name <> :skip ORDER BY name"},
                                 {"params", json::object{{"min", 30}, {"skip", "zed"}}}}));
    REQUIRE(rows.get_array().size() == 2);
    CHECK(row(rows, 0).at("name") == json::value("ann"));
    CHECK(row(rows, 0).at("m") == json::value(30));
  }

  SUBCASE("insert rows and input data, describe") {
    auto out = h.ok("SQLInsert",
                    with(base, {{"table", "public.people"},
                                {"rows", json::array{json::object{{"name", "dee"}, {"age", 20}},
                                                     json::object{{"name", "eve"}}}}}));
    CHECK(out.at("rows_affected") == json::value(2));
    CHECK(out.at("last_insert_id").is_null());
    h.ok("SQLInsert", with(base, {{"table", "people"}}),
         {{"Fetch", json::object{{"name", "fay"}, {"email", "f@example.com"}}}});
    CHECK(trimmed(server.sql("SELECT COUNT(*) FROM people")) == "6");
    auto cols = h.ok("SQLDescribe", with(base, {{"table", "people"}}));
    REQUIRE(cols.get_array().size() == 5);
    CHECK(row(cols, 0).at("name") == json::value("id"));
    CHECK(row(cols, 0).at("type") == json::value("integer"));
    CHECK(row(cols, 0).at("key") == json::value("primary"));
    CHECK(row(cols, 0).at("nullable") == json::value(false));
    CHECK(to_text(row(cols, 0).at("default")).find("nextval") != std::string::npos);
    CHECK(row(cols, 2).at("nullable") == json::value(true));
    CHECK(row(cols, 3).at("key") == json::value("unique"));
    auto missing = h.run("SQLDescribe", with(base, {{"table", "nope"}}));
    REQUIRE_FALSE(missing.outcome.ok);
    CHECK(missing.outcome.error.find("not found") != std::string::npos);
  }

  SUBCASE("errors name the backend; injection stays data") {
    check_errors_hide_password(h, "SQLSelect", base, server.password(), "PostgreSQL", "42P01",
                               "password authentication failed");
    std::string evil = "x'); DROP TABLE people; --";
    h.ok("SQLInsert", with(base, {{"table", "people"}, {"rows", json::object{{"name", evil}}}}));
    auto back = h.ok("SQLSelect", with(base, {{"query", "SELECT name FROM people WHERE name = $1"},
                                             {"params", json::array{evil}}}));
    REQUIRE(back.get_array().size() == 1);
    CHECK(row(back, 0).at("name") == json::value(evil));
    auto bad = h.run("SQLInsert", with(base, {{"table", "people\" --"},
                                             {"rows", json::object{{"name", "x"}}}}));
    REQUIRE_FALSE(bad.outcome.ok);
    CHECK(trimmed(server.sql("SELECT COUNT(*) FROM people")) == "4");
  }

  SUBCASE("a timeout or a cancel stops the statement without wedging a thread") {
    harness one{json::object{{"threads", 1}, {"pool_size", 1}}};
    check_timeout_and_cancel(one, "SQLSelect", base, "SELECT pg_sleep(30)", "SELECT pg_sleep(30)");
  }

  SUBCASE("the pool keeps the connection count bounded; a killed connection is reopened") {
    auto connections = [&] {
      return std::stoi(trimmed(server.sql("SELECT COUNT(*) FROM pg_stat_activity WHERE "
                                          "application_name = 'stepflow'")));
    };
    harness pooled{json::object{{"pool_size", 3}, {"threads", 6}}};
    CHECK(concurrent_successes(pooled, "SQLSelect", with(base, {{"query", "SELECT pg_sleep(0.02)"}}))
          == 30);
    int open = connections();
    CHECK(open >= 1);
    CHECK(open <= 3);
    // Kill every server-side connection of the pool, then run again.
    server.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
               "application_name = 'stepflow'");
    for (int i = 0; i < 100 && connections() > 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    auto again = pooled.run("SQLSelect", with(base, {{"query", "SELECT 1 AS one"}}));
    REQUIRE_MESSAGE(again.outcome.ok, again.outcome.error);
    CHECK(connections() == 1);
  }
}

// -- ODBC ----------------------------------------------------------------------

TEST_CASE("ODBC steps through psqlODBC against a real PostgreSQL") {
  REQUIRE_MESSAGE(std::filesystem::exists(psqlodbc_driver),
                  "the odbc-postgresql package is needed (scripts/setup installs it)");
  auto& server = postgres();
  server.sql("DROP TABLE IF EXISTS people; "
             "CREATE TABLE people (id SERIAL PRIMARY KEY, name VARCHAR(50) NOT NULL, age INT, "
             "score NUMERIC(6,2), seen TIMESTAMP(3), ok BOOLEAN, raw BYTEA); "
             "INSERT INTO people (name, age, score, seen, ok, raw) VALUES "
             "('ann', 31, 12.50, '2024-02-29 13:14:15.125', true, '\\x0001ff'), "
             "('bob', NULL, NULL, NULL, NULL, NULL);");
  harness h;
  auto base = odbc_params();

  SUBCASE("select with bound params and typed results") {
    auto rows = h.ok("SQLSelect",
                     with(base, {{"query", "SELECT id, name, age, score, seen, ok, raw, "
                                           "CAST(? AS BIGINT) AS big, CAST(? AS TEXT) AS s, "
                                           "CAST(? AS DOUBLE PRECISION) AS d FROM people WHERE "
                                           "name = ? OR age > ? ORDER BY id"},
                                 {"params", json::array{9007199254740993LL, "h\xc3\xa9llo", 2.5,
                                                        "bob", 30}}}));
    REQUIRE(rows.get_array().size() == 2);
    auto& a = row(rows, 0);
    CHECK(a.at("name") == json::value("ann"));
    CHECK(a.at("age") == json::value(31));
    CHECK(a.at("score") == json::value(12.5));
    CHECK(a.at("seen") == json::value("2024-02-29T13:14:15.125"));
    CHECK(a.at("ok") == json::value(true));
    CHECK(a.at("raw") == json::value("AAH/"));
    CHECK(a.at("big") == json::value(9007199254740993LL));
    CHECK(a.at("s") == json::value("h\xc3\xa9llo"));
    CHECK(a.at("d") == json::value(2.5));
    auto& b = row(rows, 1);
    CHECK(b.at("age").is_null());
    CHECK(b.at("score").is_null());
    CHECK(b.at("ok").is_null());
    CHECK(b.at("raw").is_null());
    auto named = h.ok("SQLSelect", with(base, {{"query", "SELECT name FROM people WHERE name = :n"},
                                              {"params", json::object{{"n", "ann"}}}}));
    CHECK(named.get_array().size() == 1);
  }

  SUBCASE("insert, describe, errors, injection") {
    auto out = h.ok("SQLInsert",
                    with(base, {{"table", "people"},
                                {"rows", json::array{json::object{{"name", "dee"}, {"age", 20}},
                                                     json::object{{"name", "x'); DROP TABLE people; --"}}}}}));
    CHECK(out.at("rows_affected") == json::value(2));
    CHECK(trimmed(server.sql("SELECT COUNT(*) FROM people")) == "4");
    CHECK(trimmed(server.sql("SELECT COUNT(*) FROM people WHERE name LIKE 'x''); DROP%'")) == "1");
    auto cols = h.ok("SQLDescribe", with(base, {{"table", "people"}}));
    REQUIRE(cols.get_array().size() == 7);
    CHECK(row(cols, 0).at("name") == json::value("id"));
    CHECK(row(cols, 0).at("key") == json::value("primary"));
    CHECK(row(cols, 1).at("nullable") == json::value(false));
    CHECK(row(cols, 2).at("nullable") == json::value(true));
    check_errors_hide_password(h, "SQLSelect", base, server.password(), "ODBC");
  }

  SUBCASE("the MS-SQL steps build their connection string from host, port and driver_name") {
    auto& s = server;
    json::object p{{"driver_name", psqlodbc_driver}, {"host", "127.0.0.1"},
                   {"port", s.port()},             {"database", s.database()},
                   {"user", s.user()},             {"password", s.password()}};
    auto rows = h.ok("MSSQLSelect", with(p, {{"query", "SELECT name FROM people WHERE age = ?"},
                                             {"params", json::array{31}}}));
    REQUIRE(rows.get_array().size() == 1);
    CHECK(row(rows, 0).at("name") == json::value("ann"));
    auto ins = h.ok("MSSQLInsert", with(p, {{"table", "people"}, {"rows", json::object{{"name", "gus"}}}}));
    CHECK(ins.at("rows_affected") == json::value(1));
    auto cols = h.ok("MSSQLDescribe", with(p, {{"table", "people"}}));
    CHECK(cols.get_array().size() == 7);
  }

  SUBCASE("a cancel interrupts the ODBC statement (SQLCancel)") {
    auto cancelled =
      h.run("SQLSelect", with(base, {{"query", "SELECT pg_sleep(20)"}}), {}, cancel_soon);
    REQUIRE_FALSE(cancelled.outcome.ok);
    CHECK(cancelled.outcome.error.find("cancelled") != std::string::npos);
    h.ok("SQLSelect", with(base, {{"query", "SELECT 1 AS one"}}));
    CHECK(trimmed(server.sql("SELECT COUNT(*) FROM pg_stat_activity WHERE query LIKE "
                             "'SELECT pg_sleep(20)%' AND state = 'active'"))
          == "0");
  }

  SUBCASE("a killed connection is reopened") {
    h.ok("SQLSelect", with(base, {{"query", "SELECT 1 AS one"}}));
    server.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
               "'stepflow_test' AND pid <> pg_backend_pid()");
    auto again = h.run("SQLSelect", with(base, {{"query", "SELECT 2 AS two"}}));
    REQUIRE_MESSAGE(again.outcome.ok, again.outcome.error);
    CHECK(row(again.outcome.data, 0).at("two") == json::value(2));
  }
}

// -- SQLite --------------------------------------------------------------------

TEST_CASE("SQLite file database") {
  test::temp_dir dir;
  auto path = dir.file("app.db");
  json::object base{{"driver", "sqlite"}, {"path", path}};
  {
    harness h;
    h.ok("SQLSelect", with(base, {{"query", "CREATE TABLE devices (id INTEGER PRIMARY KEY, "
                                            "name TEXT NOT NULL, up BOOLEAN, load REAL, "
                                            "raw BLOB, note TEXT DEFAULT 'none')"}}));
    auto out = h.ok("SQLInsert",
                    with(base, {{"table", "devices"},
                                {"rows", json::array{json::object{{"name", "r1"}, {"up", true},
                                                                  {"load", 0.25}},
                                                     json::object{{"name", "r2"}, {"up", false},
                                                                  {"note", nullptr}}}}}));
    CHECK(out.at("rows_affected") == json::value(2));
    CHECK(out.at("last_insert_id") == json::value(2));
    auto upd = h.ok("SQLSelect", with(base, {{"query", "UPDATE devices SET raw = X'0001FF' WHERE id = ?"},
                                             {"params", json::array{1}}}));
    CHECK(upd.at("rows_affected") == json::value(1));
    CHECK(upd.at("last_insert_id").is_null());
    auto ddl = h.ok("SQLSelect", with(base, {{"query", "CREATE TABLE other (x INTEGER)"}}));
    CHECK(ddl.at("rows_affected") == json::value(0));
  }
  REQUIRE(std::filesystem::exists(path));
  harness h; // a new connector: the data is in the file
  auto rows = h.ok("SQLSelect", with(base, {{"query", "SELECT * FROM devices WHERE id >= :min "
                                                      "ORDER BY id"},
                                            {"params", json::object{{"min", 1}}}}));
  REQUIRE(rows.get_array().size() == 2);
  auto& r1 = row(rows, 0);
  CHECK(r1.at("id") == json::value(1));
  CHECK(r1.at("name") == json::value("r1"));
  CHECK(r1.at("up") == json::value(true));
  CHECK(r1.at("load") == json::value(0.25));
  CHECK(r1.at("raw") == json::value("AAH/"));
  CHECK(r1.at("note") == json::value("none"));
  auto& r2 = row(rows, 1);
  CHECK(r2.at("up") == json::value(false));
  CHECK(r2.at("load").is_null());
  CHECK(r2.at("note").is_null());
  auto cols = h.ok("SQLDescribe", with(base, {{"table", "devices"}}));
  REQUIRE(cols.get_array().size() == 6);
  CHECK(row(cols, 0).at("key") == json::value("primary"));
  CHECK(row(cols, 1).at("nullable") == json::value(false));
  CHECK(row(cols, 5).at("default") == json::value("'none'"));
  auto dup = h.ok("SQLSelect", with(base, {{"query", "SELECT 1 AS a, 2 AS a, 3 AS a"}}));
  CHECK(row(dup, 0) == json::object{{"a", 1}, {"a_2", 2}, {"a_3", 3}});
  auto err = h.run("SQLSelect", with(base, {{"query", "SELECT nope FROM devices"}}));
  REQUIRE_FALSE(err.outcome.ok);
  CHECK(err.outcome.error.find("SQLite") != std::string::npos);
  auto two = h.run("SQLSelect", with(base, {{"query", "SELECT 1; DROP TABLE devices"}}));
  REQUIRE_FALSE(two.outcome.ok);
  CHECK(two.outcome.error.find("more than one statement") != std::string::npos);
  // An endless query is interrupted at the step's timeout.
  auto endless = h.run("SQLSelect", with(base, {{"query", "WITH RECURSIVE c(x) AS (SELECT 1 UNION "
                                                          "ALL SELECT x + 1 FROM c) SELECT count(*) "
                                                          "FROM c"},
                                                {"timeout", 0.5}}));
  REQUIRE_FALSE(endless.outcome.ok);
  CHECK(endless.outcome.error.find("timeout") != std::string::npos);
  CHECK(h.ok("SQLSelect", with(base, {{"query", "SELECT count(*) AS n FROM devices"}}))
          .at(0)
          .at("n")
        == json::value(2));
}

TEST_CASE("MS-SQL steps go through the FreeTDS driver and fail clearly when nobody listens") {
  harness h;
  std::string secret = "Secret-Pw-123";
  // Port 1 (tcpmux) is never served on a test machine.
  auto r = h.run("MSSQLSelect", json::object{{"host", "127.0.0.1"},
                                             {"port", 1},
                                             {"user", "sa"},
                                             {"password", secret},
                                             {"database", "master"},
                                             {"timeout", 5},
                                             {"query", "SELECT 1"}});
  REQUIRE_FALSE(r.outcome.ok);
  CHECK(r.outcome.error.find("MSSQLSelect: ODBC: cannot connect to ODBC sa@127.0.0.1:1/master")
        != std::string::npos);
  // tdsodbc registers "FreeTDS" in /etc/odbcinst.ini; the driver answers.
  WARN(r.outcome.error.find("[FreeTDS]") != std::string::npos);
  no_secret(r, secret);
}
