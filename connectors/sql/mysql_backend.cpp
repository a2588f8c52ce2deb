// The MySQL/MariaDB adapter over libmariadb: TCP connections with connect,
// read and write timeouts, server-side prepared statements (mysql_stmt) for
// every statement, results bound in binary form and converted to JSON.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>

#include <poll.h>

#include <errmsg.h>
#include <mysql.h>

#include <fmt/format.h>

#include "sql/sql_backend.hpp"
#include "sql/sql_text.hpp"

namespace stepflow::connectors::sql {

namespace {

constexpr unsigned int binary_charset = 63;
constexpr unsigned int er_connection_killed = 1927; // MariaDB
constexpr unsigned int er_server_shutdown = 1053;
constexpr unsigned int er_client_interaction_timeout = 4031; // MySQL 8
constexpr unsigned int er_query_interrupted = 1317;
constexpr unsigned int er_statement_timeout = 1969; // MariaDB max_statement_time

bool connection_level(unsigned int err) noexcept {
  return (err >= CR_MIN_ERROR && err <= CR_MAX_ERROR) || err == er_connection_killed
         || err == er_server_shutdown || err == er_client_interaction_timeout;
}

unsigned int seconds_of(std::chrono::milliseconds ms) {
  auto s = (ms.count() + 999) / 1000;
  return static_cast<unsigned int>(std::clamp<long long>(s, 1, 365LL * 24 * 3600));
}

json::value float_value(float f) {
  if (!std::isfinite(f))
    return json::string(std::isnan(f) ? "NaN" : (f > 0 ? "Infinity" : "-Infinity"));
  // The shortest text that reads back as this float ("0.1", not 0.100000001).
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, f);
  return std::strtod(std::string(buf, res.ptr).c_str(), nullptr);
}

json::value double_value(double d) {
  if (!std::isfinite(d))
    return json::string(std::isnan(d) ? "NaN" : (d > 0 ? "Infinity" : "-Infinity"));
  return d;
}

/// ISO 8601 text of a temporal value; null for MySQL's zero dates.
json::value time_value(const MYSQL_TIME& t, enum_field_types type, unsigned int decimals) {
  std::string frac;
  unsigned digits = decimals >= 1 && decimals <= 6 ? decimals : (t.second_part ? 6 : 0);
  if (digits > 0) {
    auto six = fmt::format("{:06d}", t.second_part % 1'000'000);
    frac = "." + six.substr(0, digits);
  }
  switch (type) {
    case MYSQL_TYPE_DATE:
      if (t.year == 0 && t.month == 0 && t.day == 0)
        return nullptr;
      return json::string(fmt::format("{:04d}-{:02d}-{:02d}", t.year, t.month, t.day));
    case MYSQL_TYPE_TIME: {
      unsigned long hours = t.day * 24UL + t.hour;
      return json::string(fmt::format("{}{:02d}:{:02d}:{:02d}{}", t.neg ? "-" : "", hours,
                                      t.minute, t.second, frac));
    }
    default:
      if (t.year == 0 && t.month == 0 && t.day == 0)
        return nullptr;
      return json::string(fmt::format("{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}{}", t.year,
                                      t.month, t.day, t.hour, t.minute, t.second, frac));
  }
}

/// One result column's fetch buffer.
struct column_buffer {
  enum class as { integer, real, single, temporal, bytes } how = as::bytes;
  const MYSQL_FIELD* field = nullptr;
  long long integer = 0;
  double real = 0;
  float single = 0;
  MYSQL_TIME temporal{};
  std::vector<char> bytes;
  unsigned long length = 0;
  my_bool is_null = 0;
  my_bool error = 0;
};

/// Connects `db` (from mysql_init) to `t` with the connector's options.
bool connect(MYSQL* db, const target& t, unsigned int connect_timeout, unsigned int io_timeout) {
  unsigned int protocol = MYSQL_PROTOCOL_TCP;
  my_bool off = 0;
  unsigned int no_local_infile = 0;
  mysql_options(db, MYSQL_OPT_CONNECT_TIMEOUT, &connect_timeout);
  mysql_options(db, MYSQL_OPT_READ_TIMEOUT, &io_timeout);
  mysql_options(db, MYSQL_OPT_WRITE_TIMEOUT, &io_timeout);
  mysql_options(db, MYSQL_OPT_PROTOCOL, &protocol);
  mysql_options(db, MYSQL_OPT_RECONNECT, &off);
  mysql_options(db, MYSQL_OPT_LOCAL_INFILE, &no_local_infile);
  mysql_options(db, MYSQL_SET_CHARSET_NAME, "utf8mb4");
  auto host = t.host.empty() ? std::string("127.0.0.1") : t.host;
  unsigned int port = t.port > 0 ? static_cast<unsigned int>(t.port) : 3306;
  return mysql_real_connect(db, host.c_str(), t.user.empty() ? nullptr : t.user.c_str(),
                            t.password.c_str(), t.database.empty() ? nullptr : t.database.c_str(),
                            port, nullptr, 0)
         != nullptr;
}

class mysql_connection final : public sql_connection {
public:
  mysql_connection(MYSQL* db, target t)
    : db_(db), secrets_(t.secrets()), target_(std::move(t)), thread_id_(mysql_thread_id(db)) {}
  ~mysql_connection() override { close(); }

  caf::expected<query_result> query(const std::string& sql, const std::vector<sql_param>& params,
                                    const query_control& ctl) override {
    if (auto err = ctl.check("the MySQL statement"))
      return err;
    if (!db_)
      return make_error(errc::unavailable, "MySQL: the connection is closed");
    MYSQL_STMT* st = prepared(sql);
    if (!st)
      return last_error(ctl);
    // A statement that failed is closed on the way out (never while in use).
    struct drop_failed {
      mysql_connection& c;
      ~drop_failed() {
        if (c.drop_cached_ && c.cached_) {
          mysql_stmt_close(c.cached_);
          c.cached_ = nullptr;
          c.cached_sql_.clear();
        }
        c.drop_cached_ = false;
      }
    } drop{*this};
    auto expected = mysql_stmt_param_count(st);
    if (expected != params.size())
      return make_error(errc::invalid_argument,
                        fmt::format("MySQL: the query has {} placeholder(s) but {} param(s) "
                                    "were given",
                                    expected, params.size()));
    // Parameter buffers; the vectors are sized once so pointers stay valid.
    std::vector<MYSQL_BIND> binds(params.size());
    std::vector<long long> ints(params.size());
    std::vector<double> reals(params.size());
    std::vector<signed char> bools(params.size());
    std::vector<unsigned long> lengths(params.size());
    for (std::size_t k = 0; k < params.size(); ++k) {
      auto& b = binds[k];
      std::memset(&b, 0, sizeof b);
      const auto& p = params[k];
      switch (p.type) {
        case sql_param::kind::null:
          b.buffer_type = MYSQL_TYPE_NULL;
          break;
        case sql_param::kind::boolean:
          bools[k] = p.b ? 1 : 0;
          b.buffer_type = MYSQL_TYPE_TINY;
          b.buffer = &bools[k];
          break;
        case sql_param::kind::integer:
          ints[k] = p.i;
          b.buffer_type = MYSQL_TYPE_LONGLONG;
          b.buffer = &ints[k];
          break;
        case sql_param::kind::unsigned_integer:
          ints[k] = static_cast<long long>(p.u);
          b.buffer_type = MYSQL_TYPE_LONGLONG;
          b.is_unsigned = 1;
          b.buffer = &ints[k];
          break;
        case sql_param::kind::real:
          reals[k] = p.d;
          b.buffer_type = MYSQL_TYPE_DOUBLE;
          b.buffer = &reals[k];
          break;
        case sql_param::kind::text:
        case sql_param::kind::json:
          lengths[k] = static_cast<unsigned long>(p.s.size());
          b.buffer_type = MYSQL_TYPE_STRING;
          b.buffer = const_cast<char*>(p.s.data());
          b.buffer_length = lengths[k];
          b.length = &lengths[k];
          break;
      }
    }
    if (!binds.empty() && mysql_stmt_bind_param(st, binds.data()))
      return stmt_error(st, ctl);
    my_bool update_max = 1;
    mysql_stmt_attr_set(st, STMT_ATTR_UPDATE_MAX_LENGTH, &update_max);
    if (mysql_stmt_execute(st))
      return stmt_error(st, ctl);

    query_result out;
    MYSQL_RES* meta = mysql_stmt_result_metadata(st);
    if (!meta) {
      if (mysql_stmt_errno(st))
        return stmt_error(st, ctl);
      out.rows_affected = static_cast<int64_t>(mysql_stmt_affected_rows(st));
      auto id = mysql_stmt_insert_id(st);
      if (id != 0)
        out.last_insert_id = static_cast<uint64_t>(id) <= static_cast<uint64_t>(
                               std::numeric_limits<int64_t>::max())
                               ? json::value(static_cast<int64_t>(id))
                               : json::value(static_cast<uint64_t>(id));
      return out;
    }
    auto result = fetch_all(st, meta, ctl);
    mysql_free_result(meta);
    mysql_stmt_free_result(st);
    if (!result)
      return std::move(result.error());
    out.has_rows = true;
    out.rows = std::move(*result);
    return out;
  }

  caf::expected<json::array> describe(const std::string& schema, const std::string& table,
                                      const query_control& ctl) override {
    static const std::string sql =
      "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_KEY, COLUMN_DEFAULT, EXTRA, "
      "ORDINAL_POSITION FROM information_schema.COLUMNS "
      "WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? "
      "ORDER BY ORDINAL_POSITION";
    std::vector<sql_param> params(2);
    if (!schema.empty()) {
      params[0].type = sql_param::kind::text;
      params[0].s = schema;
    }
    params[1].type = sql_param::kind::text;
    params[1].s = table;
    auto res = query(sql, params, ctl);
    if (!res)
      return std::move(res.error());
    json::array out;
    for (auto& row : res->rows) {
      auto& r = row.as_object();
      auto key = to_text(r["COLUMN_KEY"]);
      json::value k = nullptr;
      if (key == "PRI")
        k = "primary";
      else if (key == "UNI")
        k = "unique";
      else if (key == "MUL")
        k = "index";
      out.push_back(json::object{{"name", r["COLUMN_NAME"]},
                                 {"type", r["COLUMN_TYPE"]},
                                 {"nullable", to_text(r["IS_NULLABLE"]) == "YES"},
                                 {"key", k},
                                 {"default", r["COLUMN_DEFAULT"]},
                                 {"extra", r["EXTRA"]},
                                 {"position", r["ORDINAL_POSITION"]}});
    }
    return out;
  }

  caf::error begin(const query_control& ctl) override { return simple("START TRANSACTION", ctl); }
  caf::error commit(const query_control& ctl) override { return simple("COMMIT", ctl); }
  caf::error rollback(const query_control& ctl) override { return simple("ROLLBACK", ctl); }

  bool usable() const noexcept override { return db_ && !broken_; }

  bool alive() override {
    if (!usable())
      return false;
    auto fd = mysql_get_socket(db_);
    if (fd == MARIADB_INVALID_SOCKET)
      return false;
    // An idle connection has nothing to read: readable means closed by the server.
    pollfd p{static_cast<int>(fd), POLLIN, 0};
    return ::poll(&p, 1, 0) == 0;
  }

  void interrupt() noexcept override {
    // KILL QUERY from a short-lived side connection: the statement fails
    // with ER_QUERY_INTERRUPTED and this connection stays usable.
    MYSQL* side = mysql_init(nullptr);
    if (!side)
      return;
    if (connect(side, target_, 5, 5)) {
      auto kill = fmt::format("KILL QUERY {}", thread_id_); // a library-given integer
      mysql_real_query(side, kill.data(), static_cast<unsigned long>(kill.size()));
    }
    mysql_close(side);
  }

  /// Bounds statements on the server too (MariaDB max_statement_time, MySQL
  /// max_execution_time); servers without either ignore it.
  void limit_statements(std::chrono::milliseconds timeout, const query_control& ctl) {
    std::vector<sql_param> p(1);
    p[0].type = sql_param::kind::real;
    p[0].d = static_cast<double>(timeout.count()) / 1000.0;
    if (std::string_view(mysql_get_server_info(db_)).find("MariaDB") != std::string_view::npos) {
      (void) query("SET SESSION max_statement_time = ?", p, ctl);
      return;
    }
    p[0].type = sql_param::kind::integer;
    p[0].i = timeout.count();
    (void) query("SET SESSION max_execution_time = ?", p, ctl);
  }

  void close() noexcept override {
    if (cached_) {
      mysql_stmt_close(cached_);
      cached_ = nullptr;
    }
    if (db_) {
      mysql_close(db_);
      db_ = nullptr;
    }
  }

  std::string quote_identifier(std::string_view plain) const override {
    return fmt::format("`{}`", plain);
  }
  placeholder_style placeholders() const noexcept override {
    return placeholder_style::question_mark;
  }
  driver_kind dialect() const noexcept override { return driver_kind::mysql; }

private:
  /// The prepared statement for `sql`: the cached one when the text repeats
  /// (multi-row inserts, periodic runs), else a new one; nullptr on error.
  MYSQL_STMT* prepared(const std::string& sql) {
    if (cached_ && cached_sql_ == sql)
      return cached_;
    if (cached_) {
      mysql_stmt_close(cached_);
      cached_ = nullptr;
    }
    MYSQL_STMT* st = mysql_stmt_init(db_);
    if (!st)
      return nullptr;
    if (mysql_stmt_prepare(st, sql.data(), static_cast<unsigned long>(sql.size()))) {
      pending_.errnum = mysql_stmt_errno(st);
      pending_.state = mysql_stmt_sqlstate(st);
      pending_.message = mysql_stmt_error(st);
      mysql_stmt_close(st);
      return nullptr;
    }
    cached_ = st;
    cached_sql_ = sql;
    return st;
  }

  caf::error make_failure(unsigned int errnum, std::string_view state, std::string_view message,
                          const query_control& ctl) {
    if (errnum == er_query_interrupted || errnum == er_statement_timeout) {
      if (ctl.is_cancelled())
        return make_error(errc::cancelled, "MySQL: the statement was cancelled");
      if (ctl.expired() || errnum == er_statement_timeout)
        return make_error(errc::timeout, fmt::format("MySQL: the statement did not finish within "
                                                     "the timeout (error {}: {})",
                                                     errnum, message));
    }
    if (connection_level(errnum)) {
      broken_ = true;
      if (ctl.expired())
        return make_error(errc::timeout,
                          redact(fmt::format("MySQL: the statement did not finish within the "
                                             "timeout (error {}: {})",
                                             errnum, message),
                                 secrets_));
    }
    auto text = fmt::format("MySQL error {} ({}): {}", errnum, state, message);
    return make_error(connection_level(errnum) ? errc::unavailable : errc::step_failed,
                      redact(std::move(text), secrets_));
  }

  caf::error last_error(const query_control& ctl) {
    if (pending_.errnum) {
      auto p = std::exchange(pending_, {});
      return make_failure(p.errnum, p.state, p.message, ctl);
    }
    return make_failure(mysql_errno(db_), mysql_sqlstate(db_), mysql_error(db_), ctl);
  }

  caf::error stmt_error(MYSQL_STMT* st, const query_control& ctl) {
    auto err = make_failure(mysql_stmt_errno(st), mysql_stmt_sqlstate(st), mysql_stmt_error(st),
                            ctl);
    // A failed statement is not reused: query() closes it before returning.
    if (st == cached_)
      drop_cached_ = true;
    return err;
  }

  caf::error simple(const char* statement, const query_control& ctl) {
    if (auto err = ctl.check("the MySQL statement"))
      return err;
    if (mysql_query(db_, statement))
      return make_failure(mysql_errno(db_), mysql_sqlstate(db_), mysql_error(db_), ctl);
    return {};
  }

  caf::expected<json::array> fetch_all(MYSQL_STMT* st, MYSQL_RES* meta, const query_control& ctl) {
    if (mysql_stmt_store_result(st))
      return stmt_error(st, ctl);
    auto ncols = mysql_num_fields(meta);
    MYSQL_FIELD* fields = mysql_fetch_fields(meta);
    std::vector<column_buffer> cols(ncols);
    std::vector<MYSQL_BIND> binds(ncols);
    std::vector<std::string> names;
    for (unsigned int c = 0; c < ncols; ++c) {
      auto& col = cols[c];
      auto& b = binds[c];
      std::memset(&b, 0, sizeof b);
      col.field = &fields[c];
      names.emplace_back(fields[c].name, fields[c].name_length);
      b.is_null = &col.is_null;
      b.error = &col.error;
      b.length = &col.length;
      switch (fields[c].type) {
        case MYSQL_TYPE_TINY:
        case MYSQL_TYPE_SHORT:
        case MYSQL_TYPE_INT24:
        case MYSQL_TYPE_LONG:
        case MYSQL_TYPE_LONGLONG:
        case MYSQL_TYPE_YEAR:
          col.how = column_buffer::as::integer;
          b.buffer_type = MYSQL_TYPE_LONGLONG;
          b.buffer = &col.integer;
          b.is_unsigned = (fields[c].flags & UNSIGNED_FLAG) ? 1 : 0;
          break;
        case MYSQL_TYPE_FLOAT:
          col.how = column_buffer::as::single;
          b.buffer_type = MYSQL_TYPE_FLOAT;
          b.buffer = &col.single;
          break;
        case MYSQL_TYPE_DOUBLE:
          col.how = column_buffer::as::real;
          b.buffer_type = MYSQL_TYPE_DOUBLE;
          b.buffer = &col.real;
          break;
        case MYSQL_TYPE_DATE:
        case MYSQL_TYPE_TIME:
        case MYSQL_TYPE_DATETIME:
        case MYSQL_TYPE_TIMESTAMP:
          col.how = column_buffer::as::temporal;
          b.buffer_type = fields[c].type;
          b.buffer = &col.temporal;
          b.buffer_length = sizeof(MYSQL_TIME);
          break;
        default:
          col.how = column_buffer::as::bytes;
          col.bytes.resize(std::max<unsigned long>(fields[c].max_length, 16) + 1);
          b.buffer_type = MYSQL_TYPE_BLOB;
          b.buffer = col.bytes.data();
          b.buffer_length = static_cast<unsigned long>(col.bytes.size());
          break;
      }
    }
    auto keys = unique_column_names(names);
    if (mysql_stmt_bind_result(st, binds.data()))
      return stmt_error(st, ctl);
    json::array rows;
    for (;;) {
      int rc = mysql_stmt_fetch(st);
      if (rc == MYSQL_NO_DATA)
        break;
      if (rc == 1)
        return stmt_error(st, ctl);
      json::object row;
      for (unsigned int c = 0; c < ncols; ++c) {
        auto& col = cols[c];
        if (col.is_null) {
          row[keys[c]] = nullptr;
          continue;
        }
        std::string bytes;
        if (col.how == column_buffer::as::bytes) {
          if (col.length > col.bytes.size()) { // truncated: fetch the whole value
            bytes.resize(col.length);
            MYSQL_BIND whole;
            std::memset(&whole, 0, sizeof whole);
            unsigned long len = 0;
            whole.buffer_type = MYSQL_TYPE_BLOB;
            whole.buffer = bytes.data();
            whole.buffer_length = col.length;
            whole.length = &len;
            if (mysql_stmt_fetch_column(st, &whole, c, 0))
              return stmt_error(st, ctl);
          } else {
            bytes.assign(col.bytes.data(), col.length);
          }
        }
        row[keys[c]] = convert(col, bytes);
      }
      rows.push_back(std::move(row));
    }
    return rows;
  }

  static json::value convert(const column_buffer& col, const std::string& bytes) {
    const MYSQL_FIELD& f = *col.field;
    switch (col.how) {
      case column_buffer::as::integer:
        if (f.flags & UNSIGNED_FLAG) {
          auto u = static_cast<uint64_t>(col.integer);
          if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
            return u;
          return static_cast<int64_t>(u);
        }
        return static_cast<int64_t>(col.integer);
      case column_buffer::as::single:
        return float_value(col.single);
      case column_buffer::as::real:
        return double_value(col.real);
      case column_buffer::as::temporal:
        return time_value(col.temporal, f.type, f.decimals);
      case column_buffer::as::bytes:
        break;
    }
    switch (f.type) {
      case MYSQL_TYPE_NULL:
        return nullptr;
      case MYSQL_TYPE_DECIMAL:
      case MYSQL_TYPE_NEWDECIMAL:
        return decimal_value(bytes);
      case MYSQL_TYPE_BIT: {
        uint64_t v = 0;
        for (unsigned char ch : bytes)
          v = (v << 8) | ch;
        if (f.length == 1)
          return v != 0;
        return static_cast<int64_t>(v);
      }
      case MYSQL_TYPE_JSON:
        if (auto parsed = parse_json(bytes, "JSON column"))
          return std::move(*parsed);
        return json::string(bytes);
      default:
        if (f.charsetnr == binary_charset)
          return json::string(base64(bytes));
        return json::string(bytes);
    }
  }

  struct pending_error {
    unsigned int errnum = 0;
    std::string state;
    std::string message;
  };

  MYSQL* db_;
  std::vector<std::string> secrets_;
  target target_; // for the side connection of interrupt()
  unsigned long thread_id_;
  bool broken_ = false;
  MYSQL_STMT* cached_ = nullptr;
  std::string cached_sql_;
  bool drop_cached_ = false;
  pending_error pending_;
};

class mysql_backend final : public sql_backend {
public:
  mysql_backend() {
    static std::once_flag once;
    std::call_once(once, [] { mysql_library_init(0, nullptr, nullptr); });
  }

  caf::expected<std::unique_ptr<sql_connection>> open(const target& t,
                                                      const query_control& ctl) override {
    if (auto err = ctl.check("connecting to MySQL"))
      return err;
    MYSQL* db = mysql_init(nullptr);
    if (!db)
      return make_error(errc::internal, "MySQL: mysql_init failed (out of memory)");
    unsigned int io_timeout = seconds_of(t.timeout);
    unsigned int connect_timeout = std::min(io_timeout, seconds_of(ctl.remaining()));
    if (!connect(db, t, connect_timeout, io_timeout)) {
      auto text = fmt::format("MySQL: cannot connect to {}: error {}: {}", t.describe(),
                              mysql_errno(db), mysql_error(db));
      mysql_close(db);
      return make_error(errc::unavailable, redact(std::move(text), t.secrets()));
    }
    auto conn = std::make_unique<mysql_connection>(db, t);
    conn->limit_statements(t.timeout, ctl);
    return std::unique_ptr<sql_connection>(std::move(conn));
  }
};

} // namespace

std::unique_ptr<sql_backend> make_mysql_backend() {
  return std::make_unique<mysql_backend>();
}

} // namespace stepflow::connectors::sql
