// The SQL connector's step types and factory. run() only reads parameters
// and posts a job to the connector's blocking_pool; the job takes a pooled
// connection, runs the statement(s) with bound values and calls done.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "sql/connection_pool.hpp"
#include "sql/sql.hpp"
#include "sql/sql_backend.hpp"
#include "sql/sql_text.hpp"
#include "stepflow/runtime/blocking_pool.hpp"
#include "stepflow/runtime/log_level.hpp"

namespace stepflow::connectors {

namespace sql {
namespace {

constexpr double default_timeout_s = 30;

enum class operation { select, insert, describe };
/// mysql: PowerFlow's MySQL steps; sl1: the same against the SL1 database
/// (MariaDB, port 7706 by default); mssql: ODBC with FreeTDS; generic: any.
enum class flavour { mysql, sl1, mssql, generic };

/// What every step of the connector shares. Members are destroyed in
/// reverse order: the workers (running what is queued) before the pool.
struct shared_state {
  shared_state(pool_options popts, blocking_pool_options bopts)
    : pool(popts, make_backends()), workers(bopts) {}

  static std::vector<std::unique_ptr<sql_backend>> make_backends() {
    std::vector<std::unique_ptr<sql_backend>> out(4);
    out[static_cast<std::size_t>(driver_kind::mysql)] = make_mysql_backend();
    out[static_cast<std::size_t>(driver_kind::postgresql)] = make_postgresql_backend();
    out[static_cast<std::size_t>(driver_kind::sqlite)] = make_sqlite_backend();
    out[static_cast<std::size_t>(driver_kind::odbc)] = make_odbc_backend();
    return out;
  }

  connection_pool pool;
  statement_watchdog watchdog;
  blocking_pool workers;
};

const json::value* get(const json::object& params, std::string_view name) {
  auto it = params.find(name);
  return it == params.end() || it->value().is_null() ? nullptr : &it->value();
}

std::string text_of(const json::object& params, std::string_view name) {
  auto* v = get(params, name);
  return v ? to_text(*v) : std::string{};
}

/// A number, or a string holding one; nullopt-like NaN when absent.
caf::expected<double> number_of(const json::object& params, std::string_view name,
                                double fallback) {
  auto* v = get(params, name);
  if (!v)
    return fallback;
  if (v->is_number())
    return v->to_number<double>();
  if (v->is_string()) {
    std::string s(v->get_string());
    if (s.empty())
      return fallback;
    char* end = nullptr;
    double d = std::strtod(s.c_str(), &end);
    if (end && *end == '\0')
      return d;
  }
  return make_error(errc::invalid_definition,
                    fmt::format("parameter \"{}\" must be a number", name));
}

caf::expected<driver_kind> parse_driver(std::string_view text) {
  auto d = lower(text);
  if (d == "mysql" || d == "mariadb")
    return driver_kind::mysql;
  if (d == "postgresql" || d == "postgres" || d == "pg")
    return driver_kind::postgresql;
  if (d == "sqlite" || d == "sqlite3")
    return driver_kind::sqlite;
  if (d == "odbc" || d == "mssql")
    return driver_kind::odbc;
  return make_error(errc::invalid_definition,
                    fmt::format("parameter \"driver\" must be one of mysql, postgresql, sqlite, "
                                "odbc (got {})",
                                quote_json(text)));
}

/// The connection target a step's parameters describe.
caf::expected<target> target_from(const json::object& params, flavour f) {
  target t;
  if (f == flavour::mysql || f == flavour::sl1) {
    t.driver = driver_kind::mysql;
  } else if (f == flavour::mssql) {
    t.driver = driver_kind::odbc;
  } else {
    auto d = parse_driver(text_of(params, "driver"));
    if (!d)
      return std::move(d.error());
    t.driver = *d;
  }
  t.host = text_of(params, "host");
  t.user = text_of(params, "user");
  if (t.user.empty())
    t.user = text_of(params, "username");
  t.password = text_of(params, "password");
  t.database = text_of(params, "database");
  t.path = text_of(params, "path");
  t.dsn = text_of(params, "dsn");
  t.connection_string = text_of(params, "connection_string");
  t.driver_name = text_of(params, "driver_name");
  if (f == flavour::mssql && t.driver_name.empty())
    t.driver_name = "FreeTDS";
  int default_port = 0;
  if (t.driver == driver_kind::mysql)
    default_port = f == flavour::sl1 ? 7706 : 3306;
  else if (t.driver == driver_kind::postgresql)
    default_port = 5432;
  else if (f == flavour::mssql)
    default_port = 1433;
  auto port = number_of(params, "port", default_port);
  if (!port)
    return std::move(port.error());
  if (*port != std::floor(*port) || *port < 0 || *port > 65535)
    return make_error(errc::invalid_definition,
                      "parameter \"port\" must be a TCP port number (1-65535)");
  t.port = static_cast<int>(*port);
  auto timeout = number_of(params, "timeout", default_timeout_s);
  if (!timeout)
    return std::move(timeout.error());
  if (!std::isfinite(*timeout) || *timeout <= 0)
    return make_error(errc::invalid_definition,
                      "parameter \"timeout\" must be a positive number of seconds");
  t.timeout = std::chrono::milliseconds(std::llround(std::min(*timeout, 86'400.0) * 1000));
  switch (t.driver) {
    case driver_kind::mysql:
    case driver_kind::postgresql:
      if (t.host.empty())
        return make_error(errc::invalid_definition, "parameter \"host\" is required");
      break;
    case driver_kind::sqlite:
      if (t.path.empty())
        return make_error(errc::invalid_definition,
                          "parameter \"path\" (the database file) is required for sqlite");
      break;
    case driver_kind::odbc:
      if (t.connection_string.empty() && t.dsn.empty() && (t.host.empty() || t.driver_name.empty()))
        return make_error(errc::invalid_definition,
                          f == flavour::mssql
                            ? "parameter \"host\" (or \"dsn\" or \"connection_string\") is required"
                            : "ODBC needs \"connection_string\", \"dsn\", or \"driver_name\" "
                              "with \"host\"");
      break;
  }
  return t;
}

std::size_t max_table_parts(driver_kind d) {
  return d == driver_kind::odbc ? 3 : 2;
}

/// The rows to insert: the "rows" parameter, else the step's input data;
/// an object is one row.
caf::expected<json::array> rows_of(const json::value& v, std::string_view source) {
  json::array rows;
  if (v.is_object())
    rows.push_back(v);
  else if (v.is_array())
    rows = v.get_array();
  else if (!v.is_null())
    return make_error(errc::invalid_argument,
                      fmt::format("{} must be an array of objects (or one object)", source));
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (!rows[i].is_object() || rows[i].get_object().empty())
      return make_error(errc::invalid_argument,
                        fmt::format("{}[{}] must be an object of column to value", source, i));
    for (const auto& kv : rows[i].get_object())
      if (!plain_identifier(kv.key()))
        return make_error(errc::invalid_argument,
                          fmt::format("{}[{}]: column {} is not a plain identifier (letters, "
                                      "digits, '_' and '$', starting with a letter or '_')",
                                      source, i, quote_json(kv.key())));
  }
  return rows;
}

class sql_step final : public step_type {
public:
  sql_step(std::shared_ptr<shared_state> state, operation op, flavour f)
    : state_(std::move(state)), op_(op), flavour_(f) {
    std::string prefix = f == flavour::mysql   ? "MySQL"
                         : f == flavour::sl1   ? "SL1Database"
                         : f == flavour::mssql ? "MSSQL"
                                               : "SQL";
    std::string friendly = f == flavour::mysql   ? "MySQL"
                           : f == flavour::sl1   ? "SL1 Database"
                           : f == flavour::mssql ? "MS-SQL"
                                                 : "SQL";
    std::string verb = op == operation::select ? "Select"
                       : op == operation::insert ? "Insert"
                                                 : "Describe";
    info_.name = prefix + verb;
    info_.friendly_name = friendly + " " + verb;
    info_.version = "1.0.0";
    info_.syncpack = "base_steps";
    std::string where = f == flavour::mysql   ? "a MySQL/MariaDB database (e.g. the SL1 database "
                                                "on port 7706)"
                        : f == flavour::sl1   ? "the SL1 database (MariaDB, port 7706 by default)"
                        : f == flavour::mssql ? "a Microsoft SQL Server database through ODBC "
                                                "(FreeTDS by default)"
                                              : "a MySQL, PostgreSQL, SQLite or ODBC database";
    switch (op) {
      case operation::select:
        info_.description = "Runs one parameterised query on " + where
                            + " and saves the rows as a list of objects (a statement without "
                              "rows saves {rows_affected, last_insert_id}).";
        break;
      case operation::insert:
        info_.description = "Inserts rows (the \"rows\" parameter, else the input data) into a "
                            "table of "
                            + where
                            + " with bound values, in one transaction; saves {rows_affected, "
                              "last_insert_id}.";
        break;
      case operation::describe:
        info_.description = "Saves the columns of a table of " + where
                            + ": [{name, type, nullable, key, default, position}].";
        break;
    }
    auto add = [&](std::string name, std::string type, json::value def, std::string description,
                   bool required = false) {
      add_param(info_.params, std::move(name), std::move(type), std::move(def), std::move(description),
                required);
    };
    if (f == flavour::generic)
      add("driver", "string", nullptr, "mysql, postgresql, sqlite or odbc.", true);
    add("host", "string", nullptr, "Server host name or address (e.g. ${config.db_host}).",
        f == flavour::mysql || f == flavour::sl1);
    add("port", "number",
        f == flavour::mysql   ? json::value(3306)
        : f == flavour::sl1   ? json::value(7706)
        : f == flavour::mssql ? json::value(1433)
                              : json::value(nullptr),
        f == flavour::generic ? "Server port (default 3306 for mysql, 5432 for postgresql)."
                              : "Server port (the SL1 database listens on 7706).");
    add("user", "string", "", "User name (alias: username).");
    add("username", "string", "", "Alias of user.");
    add("password", "string", "", "Password; never logged or shown in errors.");
    add("database", "string", "", "Database (schema) to use; empty for the server's default.");
    if (f == flavour::generic)
      add("path", "string", "", "sqlite: the database file (created when missing).");
    if (f == flavour::mssql || f == flavour::generic) {
      add("driver_name", "string", f == flavour::mssql ? json::value("FreeTDS") : json::value(""),
          "odbc: the ODBC driver (odbcinst.ini name or .so path) used with host, port, database.");
      add("dsn", "string", "", "odbc: a DSN from odbc.ini instead of host/driver_name.");
      add("connection_string", "string", "",
          "odbc: a whole connection string (user/password are appended unless it sets UID/PWD).");
    }
    add("timeout", "number", default_timeout_s,
        "Seconds allowed for waiting for a pooled connection, connecting and the statement.");
    switch (op) {
      case operation::select:
        add("query", "string", nullptr,
            "The SQL, with placeholders: positional ('?', or $1.. for postgresql) with params as "
            "an array, or :name with params as an object.",
            true);
        add("params", "any", json::array{},
            "Values bound to the placeholders: an array (positional) or an object (named).");
        break;
      case operation::insert:
        add("table", "string", nullptr, "Table name, optionally schema.table (plain identifiers).",
            true);
        add("rows", "any", nullptr,
            "Array of objects (column to value), or one object; absent: the input data.");
        break;
      case operation::describe:
        add("table", "string", nullptr, "Table name, optionally schema.table.", true);
        add("schema", "string", "", "Schema (database) holding the table; default: the current one.");
        break;
    }
  }

  const step_info& info() const noexcept override { return info_; }

  caf::error check(const json::object& params) const override {
    if (auto err = step_type::check(params))
      return err;
    auto bad = [&](std::string what) {
      return make_error(errc::invalid_definition, fmt::format("{}: {}", info_.name, what));
    };
    auto t = target_from(params, flavour_);
    if (!t)
      return bad(message_of(t.error()));
    switch (op_) {
      case operation::select: {
        auto* q = get(params, "query");
        if (!q || !q->is_string() || q->get_string().empty())
          return bad("parameter \"query\" must be a non-empty string");
        if (auto* p = get(params, "params"); p && !p->is_array() && !p->is_object())
          return bad("parameter \"params\" must be an array (positional) or an object (named)");
        break;
      }
      case operation::insert:
      case operation::describe: {
        auto* table = get(params, "table");
        if (!table || !table->is_string())
          return bad("parameter \"table\" must be a string");
        auto parts = split_identifier(
          table->get_string(), op_ == operation::describe ? 2 : max_table_parts(t->driver), "table");
        if (!parts)
          return bad(message_of(parts.error()));
        if (op_ == operation::describe) {
          auto schema = text_of(params, "schema");
          if (!schema.empty() && !plain_identifier(schema))
            return bad(fmt::format("schema {} is not a plain identifier", quote_json(schema)));
        }
        if (op_ == operation::insert)
          if (auto* rows = get(params, "rows"))
            if (auto r = rows_of(*rows, "rows"); !r)
              return bad(message_of(r.error()));
        break;
      }
    }
    return {};
  }

  void run(std::shared_ptr<step_context> ctx, step_done done) const override {
    auto* state = state_.get();
    const sql_step* self = this;
    auto job = [state, self, ctx, done]() {
      step_outcome out;
      try {
        out = self->execute(*state, *ctx);
      } catch (const std::exception& e) {
        out = step_outcome::failure(fmt::format("{}: {}", self->info_.name, e.what()));
      } catch (...) {
        out = step_outcome::failure(fmt::format("{}: unexpected failure", self->info_.name));
      }
      done(std::move(out));
    };
    if (!state->workers.post(std::move(job)))
      done(step_outcome::failure(fmt::format(
        "{}: the SQL connector is busy or shutting down (its job queue is full)", info_.name)));
  }

private:
  step_outcome fail(const target& t, const caf::error& err) const {
    return step_outcome::failure(
      redact(fmt::format("{}: {}", info_.name, message_of(err)), t.secrets()));
  }

  step_outcome execute(shared_state& state, step_context& ctx) const {
    auto started = std::chrono::steady_clock::now();
    auto t = target_from(ctx.params, flavour_);
    if (!t)
      return step_outcome::failure(fmt::format("{}: {}", info_.name, message_of(t.error())));
    query_control ctl;
    ctl.cancelled = &ctx.cancelled;
    ctl.deadline = started + t->timeout;
    if (auto err = ctl.check(info_.name))
      return fail(*t, err);
    step_outcome out;
    switch (op_) {
      case operation::select:
        out = select(state, ctx, *t, ctl);
        break;
      case operation::insert:
        out = insert(state, ctx, *t, ctl);
        break;
      case operation::describe:
        out = describe(state, ctx, *t, ctl);
        break;
    }
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - started)
                .count();
    if (out.ok)
      ctx.log(log_level::info,
              redact(fmt::format("{} on {}: {} in {} ms", info_.friendly_name, t->describe(),
                                 op_ == operation::describe
                                   ? fmt::format("{} column(s)", out.data.get_array().size())
                                   : summary(out.data),
                                 ms),
                     t->secrets()));
    return out;
  }

  static std::string summary(const json::value& data) {
    if (data.is_array())
      return fmt::format("{} row(s)", data.get_array().size());
    if (data.is_object())
      if (auto it = data.get_object().find("rows_affected"); it != data.get_object().end())
        return fmt::format("{} row(s) affected", to_text(it->value()));
    return "done";
  }

  /// Runs `fn(connection)` on a pooled connection. A read (select,
  /// describe) that fails because a reused connection turned out broken is
  /// retried once on a new connection.
  template <class Fn>
  auto with_connection(shared_state& state, const target& t, const query_control& ctl,
                       bool retry, Fn&& fn) const -> decltype(fn(std::declval<sql_connection&>())) {
    for (int attempt = 0;; ++attempt) {
      auto lease = state.pool.acquire(t, ctl);
      if (!lease)
        return std::move(lease.error());
      auto watch = state.watchdog.watch(&ctl, &**lease);
      auto res = fn(**lease);
      if (res || !retry || attempt > 0 || !lease->reused() || code_of(res.error()) != errc::unavailable
          || (*lease)->usable())
        return res;
      lease->discard();
    }
  }

  step_outcome select(shared_state& state, step_context& ctx, const target& t,
                      const query_control& ctl) const {
    auto query = text_of(ctx.params, "query");
    if (query.empty())
      return step_outcome::failure(fmt::format("{}: parameter \"query\" is required", info_.name));
    bound_statement stmt;
    auto* p = get(ctx.params, "params");
    if (p && p->is_object()) {
      auto style = t.driver == driver_kind::postgresql ? placeholder_style::dollar_number
                                                       : placeholder_style::question_mark;
      auto bound = bind_named(query, p->get_object(), t.driver, style);
      if (!bound)
        return fail(t, bound.error());
      stmt = std::move(*bound);
    } else {
      stmt.sql = query;
      if (p && p->is_array())
        for (const auto& v : p->get_array())
          stmt.params.push_back(to_param(v));
      else if (p)
        return step_outcome::failure(fmt::format(
          "{}: parameter \"params\" must be an array (positional) or an object (named)",
          info_.name));
    }
    ctx.log(log_level::debug, redact(fmt::format("query: {}", stmt.sql), t.secrets()));
    auto res = with_connection(state, t, ctl, true, [&](sql_connection& c) {
      return c.query(stmt.sql, stmt.params, ctl);
    });
    if (!res)
      return fail(t, res.error());
    if (res->has_rows)
      return step_outcome::success(std::move(res->rows));
    return step_outcome::success(json::object{{"rows_affected", res->rows_affected},
                                              {"last_insert_id", res->last_insert_id}});
  }

  step_outcome insert(shared_state& state, step_context& ctx, const target& t,
                      const query_control& ctl) const {
    auto parts = split_identifier(text_of(ctx.params, "table"), max_table_parts(t.driver), "table");
    if (!parts)
      return fail(t, parts.error());
    caf::expected<json::array> rows{json::array{}};
    if (auto* r = get(ctx.params, "rows"))
      rows = rows_of(*r, "rows");
    else
      rows = rows_of(ctx.joined_input(), "the input data");
    if (!rows)
      return fail(t, rows.error());
    json::object result{{"rows_affected", 0}, {"last_insert_id", nullptr}};
    if (rows->empty())
      return step_outcome::success(std::move(result));
    auto lease = state.pool.acquire(t, ctl);
    if (!lease)
      return fail(t, lease.error());
    sql_connection& conn = **lease;
    auto watch = state.watchdog.watch(&ctl, &conn);
    std::string table;
    for (const auto& part : *parts)
      table += (table.empty() ? "" : ".") + conn.quote_identifier(part);
    bool transaction = rows->size() > 1;
    if (transaction)
      if (auto err = conn.begin(ctl))
        return fail(t, err);
    int64_t affected = 0;
    json::value last_id = nullptr;
    for (std::size_t i = 0; i < rows->size(); ++i) {
      const auto& row = (*rows)[i].get_object();
      std::string columns;
      std::string values;
      std::vector<sql_param> params;
      std::size_t n = 0;
      for (const auto& kv : row) {
        ++n;
        columns += (n > 1 ? ", " : "") + conn.quote_identifier(kv.key());
        values += n > 1 ? ", " : "";
        values += conn.placeholders() == placeholder_style::dollar_number ? fmt::format("${}", n)
                                                                           : std::string("?");
        params.push_back(to_param(kv.value()));
      }
      auto sql = fmt::format("INSERT INTO {} ({}) VALUES ({})", table, columns, values);
      auto res = conn.query(sql, params, ctl);
      if (!res) {
        if (transaction && conn.usable())
          (void) conn.rollback(ctl);
        auto why = message_of(res.error());
        return step_outcome::failure(redact(
          transaction ? fmt::format("{}: row {}: {} (no row was inserted)", info_.name, i, why)
                      : fmt::format("{}: {}", info_.name, why),
          t.secrets()));
      }
      affected += std::max<int64_t>(res->rows_affected, 0);
      if (!res->last_insert_id.is_null())
        last_id = res->last_insert_id;
    }
    if (transaction)
      if (auto err = conn.commit(ctl))
        return fail(t, err);
    result["rows_affected"] = affected;
    result["last_insert_id"] = last_id;
    return step_outcome::success(std::move(result));
  }

  step_outcome describe(shared_state& state, step_context& ctx, const target& t,
                        const query_control& ctl) const {
    auto name = text_of(ctx.params, "table");
    auto parts = split_identifier(name, 2, "table");
    if (!parts)
      return fail(t, parts.error());
    auto schema = text_of(ctx.params, "schema");
    if (!schema.empty() && !plain_identifier(schema))
      return step_outcome::failure(
        fmt::format("{}: schema {} is not a plain identifier", info_.name, quote_json(schema)));
    std::string table = parts->back();
    if (parts->size() == 2)
      schema = parts->front();
    auto res = with_connection(state, t, ctl, true, [&](sql_connection& c) {
      return c.describe(schema, table, ctl);
    });
    if (!res)
      return fail(t, res.error());
    if (res->empty())
      return step_outcome::failure(
        fmt::format("{}: {}: table {} was not found{}", info_.name, driver_label(t.driver),
                    quote_json(name), schema.empty() ? "" : " in " + quote_json(schema)));
    return step_outcome::success(std::move(*res));
  }

  std::shared_ptr<shared_state> state_;
  operation op_;
  flavour flavour_;
  step_info info_;
};

class sql_connector final : public connector {
public:
  explicit sql_connector(std::shared_ptr<shared_state> state) : state_(std::move(state)) {}

  caf::error add_steps(step_registry& registry) override {
    for (auto f : {flavour::mysql, flavour::sl1, flavour::mssql, flavour::generic})
      for (auto op : {operation::select, operation::insert, operation::describe}) {
        if (f == flavour::sl1 && op == operation::insert)
          continue; // SL1's database is read, not written, by integrations
        if (auto err = registry.add(std::make_shared<sql_step>(state_, op, f)))
          return err;
      }
    return {};
  }

private:
  std::shared_ptr<shared_state> state_;
};

} // namespace
} // namespace sql

caf::expected<std::shared_ptr<connector>> make_sql_connector(const connector_setup& setup) {
  static const json::object empty;
  const json::object& o = setup.options ? *setup.options : empty;
  constexpr std::string_view scope = "sql";
  if (auto err = reject_unknown(o, scope, {"pool_size", "threads", "idle_timeout"}))
    return err;
  auto pool_size = option_whole_number(o, scope, "pool_size", 4, 1, 1000);
  if (!pool_size)
    return std::move(pool_size.error());
  auto threads = option_whole_number(o, scope, "threads", 8, 1, 256);
  if (!threads)
    return std::move(threads.error());
  auto idle = option_number_in(o, scope, "idle_timeout", 300, 0.001, 7 * 86'400.0);
  if (!idle)
    return std::move(idle.error());
  sql::pool_options popts;
  popts.pool_size = static_cast<std::size_t>(*pool_size);
  popts.idle_timeout = std::chrono::milliseconds(std::llround(*idle * 1000));
  blocking_pool_options bopts;
  bopts.threads = static_cast<std::size_t>(*threads);
  auto state = std::make_shared<sql::shared_state>(popts, bopts);
  return std::shared_ptr<connector>(std::make_shared<sql::sql_connector>(std::move(state)));
}

} // namespace stepflow::connectors
