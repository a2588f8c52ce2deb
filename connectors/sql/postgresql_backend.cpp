// The PostgreSQL adapter over libpq: PQconnectdbParams with connect_timeout
// and a server-side statement_timeout; each statement is sent with
// PQsendQueryParams (typed parameters, text results) and awaited in
// 100 ms slices so a cancelled or overdue step sends PQcancel instead of
// waiting for ever.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>

#include <poll.h>

#include <libpq-fe.h>

#include <fmt/format.h>

#include "sql/sql_backend.hpp"
#include "sql/sql_text.hpp"

namespace stepflow::connectors::sql {

namespace {

// Type OIDs from pg_type (stable across versions).
constexpr Oid oid_bool = 16;
constexpr Oid oid_bytea = 17;
constexpr Oid oid_int8 = 20;
constexpr Oid oid_int2 = 21;
constexpr Oid oid_int4 = 23;
constexpr Oid oid_oid = 26;
constexpr Oid oid_json = 114;
constexpr Oid oid_float4 = 700;
constexpr Oid oid_float8 = 701;
constexpr Oid oid_date = 1082;
constexpr Oid oid_time = 1083;
constexpr Oid oid_timestamp = 1114;
constexpr Oid oid_timestamptz = 1184;
constexpr Oid oid_timetz = 1266;
constexpr Oid oid_numeric = 1700;
constexpr Oid oid_jsonb = 3802;

std::string trim_message(const char* m) {
  std::string s = m ? m : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
    s.pop_back();
  return s;
}

std::string hex_decode(std::string_view hex) {
  std::string out;
  out.reserve(hex.size() / 2);
  auto nib = [](char c) -> int {
    if (c >= '0' && c <= '9')
      return c - '0';
    if (c >= 'a' && c <= 'f')
      return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
      return c - 'A' + 10;
    return 0;
  };
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
    out += static_cast<char>(nib(hex[i]) * 16 + nib(hex[i + 1]));
  return out;
}

/// "2024-01-02 03:04:05.5+00" -> "2024-01-02T03:04:05.5+00:00". Values that
/// are not plain dates ("infinity", BC dates) are left as the server wrote them.
std::string iso_timestamp(std::string_view text) {
  std::string s(text);
  if (s.size() < 19 || s[10] != ' ' || s.find("BC") != std::string::npos)
    return s;
  s[10] = 'T';
  // A trailing numeric offset "+hh" or "+hh:mm[:ss]".
  auto sign = s.find_last_of("+-");
  if (sign != std::string::npos && sign >= 19) {
    auto offset = s.substr(sign + 1);
    if (offset.size() == 2)
      s += ":00";
  }
  return s;
}

json::value convert(Oid type, const char* value, int length) {
  std::string_view v(value, static_cast<std::size_t>(length));
  switch (type) {
    case oid_bool:
      return v == "t";
    case oid_int2:
    case oid_int4:
    case oid_int8:
    case oid_oid:
      return decimal_value(v);
    case oid_float4:
    case oid_float8: {
      if (v == "NaN" || v == "Infinity" || v == "-Infinity")
        return json::string(v);
      return std::strtod(std::string(v).c_str(), nullptr);
    }
    case oid_numeric:
      return decimal_value(v);
    case oid_bytea:
      if (v.size() >= 2 && v[0] == '\\' && v[1] == 'x')
        return json::string(base64(hex_decode(v.substr(2))));
      return json::string(base64(v));
    case oid_json:
    case oid_jsonb:
      if (auto parsed = parse_json(v, "JSON column"))
        return std::move(*parsed);
      return json::string(v);
    case oid_timestamp:
    case oid_timestamptz:
      return json::string(iso_timestamp(v));
    case oid_date:
    case oid_time:
    case oid_timetz:
    default:
      return json::string(v);
  }
}

struct result_deleter {
  void operator()(PGresult* r) const noexcept { PQclear(r); }
};
using result_ptr = std::unique_ptr<PGresult, result_deleter>;

class pg_connection final : public sql_connection {
public:
  pg_connection(PGconn* conn, std::vector<std::string> secrets)
    : conn_(conn), cancel_(PQgetCancel(conn)), secrets_(std::move(secrets)) {}
  ~pg_connection() override { close(); }

  caf::expected<query_result> query(const std::string& sql, const std::vector<sql_param>& params,
                                    const query_control& ctl) override {
    if (auto err = ctl.check("the PostgreSQL statement"))
      return err;
    if (!conn_)
      return make_error(errc::unavailable, "PostgreSQL: the connection is closed");
    std::vector<Oid> types(params.size(), 0);
    std::vector<std::string> texts(params.size());
    std::vector<const char*> values(params.size(), nullptr);
    for (std::size_t k = 0; k < params.size(); ++k) {
      const auto& p = params[k];
      switch (p.type) {
        case sql_param::kind::null:
          continue;
        case sql_param::kind::boolean:
          types[k] = oid_bool;
          texts[k] = p.b ? "true" : "false";
          break;
        case sql_param::kind::integer:
          types[k] = p.i >= std::numeric_limits<int32_t>::min()
                         && p.i <= std::numeric_limits<int32_t>::max()
                       ? oid_int4
                       : oid_int8;
          texts[k] = std::to_string(p.i);
          break;
        case sql_param::kind::unsigned_integer:
          types[k] = oid_numeric;
          texts[k] = std::to_string(p.u);
          break;
        case sql_param::kind::real:
          types[k] = oid_float8;
          if (std::isnan(p.d))
            texts[k] = "NaN";
          else if (std::isinf(p.d))
            texts[k] = p.d > 0 ? "Infinity" : "-Infinity";
          else
            texts[k] = fmt::format("{}", p.d); // shortest round-trip form
          break;
        case sql_param::kind::text:
        case sql_param::kind::json:
          texts[k] = p.s; // untyped: the server infers from context
          break;
      }
      values[k] = texts[k].c_str();
    }
    if (!PQsendQueryParams(conn_, sql.c_str(), static_cast<int>(params.size()), types.data(),
                           values.data(), nullptr, nullptr, 0))
      return connection_error("cannot send the statement");
    auto res = await_result(ctl);
    if (!res)
      return std::move(res.error());
    PGresult* r = res->get();
    query_result out;
    auto status = PQresultStatus(r);
    if (status == PGRES_TUPLES_OK) {
      out.has_rows = true;
      int nrows = PQntuples(r);
      int ncols = PQnfields(r);
      std::vector<std::string> names;
      for (int c = 0; c < ncols; ++c)
        names.emplace_back(PQfname(r, c));
      auto keys = unique_column_names(names);
      out.rows.reserve(static_cast<std::size_t>(nrows));
      for (int i = 0; i < nrows; ++i) {
        json::object row;
        for (int c = 0; c < ncols; ++c) {
          if (PQgetisnull(r, i, c))
            row[keys[c]] = nullptr;
          else
            row[keys[c]] = convert(PQftype(r, c), PQgetvalue(r, i, c), PQgetlength(r, i, c));
        }
        out.rows.push_back(std::move(row));
      }
    }
    const char* tuples = PQcmdTuples(r);
    if (tuples && *tuples && !out.has_rows)
      out.rows_affected = std::strtoll(tuples, nullptr, 10);
    else if (!out.has_rows)
      out.rows_affected = 0;
    return out;
  }

  caf::expected<json::array> describe(const std::string& schema, const std::string& table,
                                      const query_control& ctl) override {
    static const std::string sql =
      "SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, "
      "NOT a.attnotnull AS nullable, "
      "CASE WHEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid "
      "  AND i.indisprimary AND a.attnum = ANY(i.indkey)) THEN 'primary' "
      "WHEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid "
      "  AND i.indisunique AND i.indnatts = 1 AND a.attnum = ANY(i.indkey)) THEN 'unique' "
      "WHEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid "
      "  AND a.attnum = ANY(i.indkey)) THEN 'index' END AS key, "
      "pg_get_expr(d.adbin, d.adrelid) AS \"default\", a.attnum AS position "
      "FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
      "WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped "
      "ORDER BY a.attnum";
    // The relation name as to_regclass parses it, passed as a bound value.
    std::string name = schema.empty() ? quote_identifier(table)
                                      : quote_identifier(schema) + "." + quote_identifier(table);
    std::vector<sql_param> params(1);
    params[0].type = sql_param::kind::text;
    params[0].s = name;
    auto res = query(sql, params, ctl);
    if (!res)
      return std::move(res.error());
    return std::move(res->rows);
  }

  caf::error begin(const query_control& ctl) override { return simple("BEGIN", ctl); }
  caf::error commit(const query_control& ctl) override { return simple("COMMIT", ctl); }
  caf::error rollback(const query_control& ctl) override { return simple("ROLLBACK", ctl); }

  bool usable() const noexcept override {
    return conn_ && !broken_ && PQstatus(conn_) == CONNECTION_OK;
  }

  bool alive() override {
    if (!usable())
      return false;
    pollfd p{PQsocket(conn_), POLLIN, 0};
    if (p.fd < 0)
      return false;
    // Idle and readable: the server sent a termination notice or closed.
    return ::poll(&p, 1, 0) == 0;
  }

  void interrupt() noexcept override {
    if (cancel_) {
      char buf[256];
      PQcancel(cancel_, buf, sizeof buf); // thread-safe on its own PGcancel
    }
  }

  void close() noexcept override {
    if (cancel_) {
      PQfreeCancel(cancel_);
      cancel_ = nullptr;
    }
    if (conn_) {
      PQfinish(conn_);
      conn_ = nullptr;
    }
  }

  std::string quote_identifier(std::string_view plain) const override {
    return fmt::format("\"{}\"", plain);
  }
  placeholder_style placeholders() const noexcept override {
    return placeholder_style::dollar_number;
  }
  driver_kind dialect() const noexcept override { return driver_kind::postgresql; }

private:
  caf::error connection_error(std::string_view what) {
    broken_ = true;
    return make_error(errc::unavailable,
                      redact(fmt::format("PostgreSQL: {}: {}", what,
                                         trim_message(PQerrorMessage(conn_))),
                             secrets_));
  }

  /// Waits for the statement's results; sends a cancel request when the
  /// step is cancelled or its deadline passes. Returns the last result.
  caf::expected<result_ptr> await_result(const query_control& ctl) {
    bool cancel_sent = false;
    for (;;) {
      if (!cancel_sent && (ctl.is_cancelled() || ctl.expired())) {
        interrupt();
        cancel_sent = true;
      }
      if (!PQconsumeInput(conn_))
        return connection_error("the connection was lost");
      if (!PQisBusy(conn_))
        break;
      pollfd p{PQsocket(conn_), POLLIN, 0};
      int rc = ::poll(&p, 1, 100);
      if (rc < 0 && errno != EINTR)
        return connection_error("waiting for the server failed");
      if (cancel_sent && ctl.expired()
          && std::chrono::steady_clock::now() - ctl.deadline > std::chrono::seconds(5)) {
        // The server ignores the cancel: give the connection up.
        broken_ = true;
        return make_error(errc::timeout, "PostgreSQL: the statement did not stop after a cancel "
                                         "request; the connection was dropped");
      }
    }
    result_ptr last;
    caf::error failure;
    while (PGresult* r = PQgetResult(conn_)) {
      result_ptr res{r};
      auto status = PQresultStatus(r);
      if (status == PGRES_FATAL_ERROR && !failure)
        failure = result_error(r, ctl, cancel_sent);
      last = std::move(res);
    }
    if (PQstatus(conn_) != CONNECTION_OK)
      broken_ = true;
    if (failure)
      return failure;
    if (!last)
      return make_error(errc::internal, "PostgreSQL: the statement returned no result");
    return last;
  }

  caf::error result_error(PGresult* r, const query_control& ctl, bool cancel_sent) {
    const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    std::string sqlstate = state ? state : "";
    auto primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    std::string message = primary ? primary : trim_message(PQresultErrorMessage(r));
    if (message.empty())
      message = trim_message(PQerrorMessage(conn_));
    if (sqlstate == "57014") { // query_canceled (cancel request or statement_timeout)
      if (cancel_sent && ctl.is_cancelled())
        return make_error(errc::cancelled, "PostgreSQL: the statement was cancelled");
      return make_error(errc::timeout,
                        redact(fmt::format("PostgreSQL: the statement did not finish within the "
                                           "timeout ({})",
                                           message),
                               secrets_));
    }
    bool lost = PQstatus(conn_) != CONNECTION_OK || sqlstate.rfind("08", 0) == 0
                || sqlstate.rfind("57P", 0) == 0;
    if (lost)
      broken_ = true;
    auto text = sqlstate.empty() ? fmt::format("PostgreSQL error: {}", message)
                                 : fmt::format("PostgreSQL error {}: {}", sqlstate, message);
    if (const char* detail = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL))
      text += fmt::format(" ({})", detail);
    return make_error(lost ? errc::unavailable : errc::step_failed,
                      redact(std::move(text), secrets_));
  }

  caf::error simple(const char* statement, const query_control& ctl) {
    auto res = query(statement, {}, ctl);
    if (!res)
      return std::move(res.error());
    return {};
  }

  PGconn* conn_;
  PGcancel* cancel_;
  std::vector<std::string> secrets_;
  bool broken_ = false;
};

class pg_backend final : public sql_backend {
public:
  caf::expected<std::unique_ptr<sql_connection>> open(const target& t,
                                                      const query_control& ctl) override {
    if (auto err = ctl.check("connecting to PostgreSQL"))
      return err;
    auto connect_s = std::max<long long>(
      2, std::min<long long>((t.timeout.count() + 999) / 1000, (ctl.remaining().count() + 999) / 1000));
    auto statement_ms = std::max<long long>(1, t.timeout.count());
    std::string host = t.host.empty() ? "127.0.0.1" : t.host;
    std::string port = std::to_string(t.port > 0 ? t.port : 5432);
    std::string timeout = std::to_string(connect_s);
    // Server settings: a statement timeout, ISO dates, UTC timestamps.
    std::string options =
      fmt::format("-c statement_timeout={} -c DateStyle=ISO,YMD -c TimeZone=UTC -c "
                  "IntervalStyle=iso_8601",
                  statement_ms);
    std::vector<const char*> keys{"host", "port", "connect_timeout", "options",
                                  "client_encoding", "application_name"};
    std::vector<const char*> values{host.c_str(), port.c_str(), timeout.c_str(), options.c_str(),
                                    "UTF8", "stepflow"};
    if (!t.user.empty()) {
      keys.push_back("user");
      values.push_back(t.user.c_str());
    }
    if (!t.password.empty()) {
      keys.push_back("password");
      values.push_back(t.password.c_str());
    }
    if (!t.database.empty()) {
      keys.push_back("dbname");
      values.push_back(t.database.c_str());
    }
    keys.push_back(nullptr);
    values.push_back(nullptr);
    PGconn* conn = PQconnectdbParams(keys.data(), values.data(), 0);
    if (!conn)
      return make_error(errc::internal, "PostgreSQL: out of memory");
    if (PQstatus(conn) != CONNECTION_OK) {
      auto text = fmt::format("PostgreSQL: cannot connect to {}: {}", t.describe(),
                              trim_message(PQerrorMessage(conn)));
      PQfinish(conn);
      return make_error(errc::unavailable, redact(std::move(text), t.secrets()));
    }
    return std::unique_ptr<sql_connection>(new pg_connection(conn, t.secrets()));
  }
};

} // namespace

std::unique_ptr<sql_backend> make_postgresql_backend() {
  return std::make_unique<pg_backend>();
}

} // namespace stepflow::connectors::sql
