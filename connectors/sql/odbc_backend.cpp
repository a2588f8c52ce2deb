// The ODBC adapter over unixODBC: any driver, DSN or connection string
// (MS-SQL through FreeTDS, PostgreSQL through psqlODBC, ...). Statements are
// prepared with SQLPrepareW and values bound with SQLBindParameter; text
// crosses the API as UTF-16 (SQL_C_WCHAR) so no driver-manager code page
// is involved. Login and query timeouts bound every blocking call.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>

#include <sql.h>
#include <sqlext.h>

#include <fmt/format.h>

#include "sql/sql_backend.hpp"
#include "sql/sql_text.hpp"

namespace stepflow::connectors::sql {

namespace {

static_assert(sizeof(SQLWCHAR) == 2, "unixODBC is expected to use UTF-16 SQLWCHAR");

using wide = std::basic_string<SQLWCHAR>;

constexpr SQLSMALLINT sql_ss_time2 = -154; // MS-SQL time(n)

wide widen(std::string_view s) {
  wide out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    uint32_t cp = 0xFFFD;
    std::size_t n = 1;
    if (c < 0x80) {
      cp = c;
    } else if ((c >> 5) == 0x6 && i + 1 < s.size()) {
      cp = ((c & 0x1F) << 6) | (s[i + 1] & 0x3F);
      n = 2;
    } else if ((c >> 4) == 0xE && i + 2 < s.size()) {
      cp = ((c & 0x0F) << 12) | ((s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F);
      n = 3;
    } else if ((c >> 3) == 0x1E && i + 3 < s.size()) {
      cp = ((c & 0x07) << 18) | ((s[i + 1] & 0x3F) << 12) | ((s[i + 2] & 0x3F) << 6)
           | (s[i + 3] & 0x3F);
      n = 4;
    }
    i += n;
    if (cp >= 0x10000) {
      cp -= 0x10000;
      out += static_cast<SQLWCHAR>(0xD800 + (cp >> 10));
      out += static_cast<SQLWCHAR>(0xDC00 + (cp & 0x3FF));
    } else {
      out += static_cast<SQLWCHAR>(cp);
    }
  }
  return out;
}

std::string narrow(const SQLWCHAR* s, std::size_t n) {
  std::string out;
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    uint32_t cp = s[i];
    if (cp >= 0xD800 && cp < 0xDC00 && i + 1 < n && s[i + 1] >= 0xDC00 && s[i + 1] < 0xE000) {
      cp = 0x10000 + ((cp - 0xD800) << 10) + (s[i + 1] - 0xDC00);
      ++i;
    }
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  return out;
}

std::string narrow(const wide& w) {
  return narrow(w.data(), w.size());
}

struct diagnostic {
  std::string state;
  std::string message;
};

/// Every diagnostic record of `handle`, joined; the first SQLSTATE.
diagnostic diagnose(SQLSMALLINT type, SQLHANDLE handle) {
  diagnostic d;
  for (SQLSMALLINT rec = 1; rec <= 8; ++rec) {
    SQLWCHAR state[6] = {0};
    SQLWCHAR msg[1024];
    SQLINTEGER native = 0;
    SQLSMALLINT len = 0;
    auto rc = SQLGetDiagRecW(type, handle, rec, state, &native, msg,
                             static_cast<SQLSMALLINT>(std::size(msg)), &len);
    if (!SQL_SUCCEEDED(rc))
      break;
    auto text = narrow(msg, std::min<std::size_t>(static_cast<std::size_t>(std::max<SQLSMALLINT>(len, 0)),
                                                  std::size(msg) - 1));
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' '))
      text.pop_back();
    if (d.state.empty())
      d.state = narrow(state, 5);
    if (!d.message.empty())
      d.message += "; ";
    d.message += text;
  }
  if (d.message.empty())
    d.message = "unknown ODBC error";
  return d;
}

/// A connection-string value, in braces when it holds special characters.
std::string brace(std::string_view v) {
  bool special = v.find_first_of(";{}=") != std::string_view::npos
                 || (!v.empty() && (v.front() == ' ' || v.back() == ' '));
  if (!special)
    return std::string(v);
  std::string out = "{";
  for (char c : v) {
    out += c;
    if (c == '}')
      out += '}';
  }
  out += '}';
  return out;
}

bool has_key(std::string_view conn, std::string_view key) {
  auto low = lower(conn);
  auto k = lower(key) + "=";
  for (std::size_t pos = low.find(k); pos != std::string::npos; pos = low.find(k, pos + 1))
    if (pos == 0 || low[pos - 1] == ';' || low[pos - 1] == ' ')
      return true;
  return false;
}

std::string connection_string(const target& t) {
  std::string cs;
  if (!t.connection_string.empty()) {
    cs = t.connection_string;
    if (!cs.empty() && cs.back() != ';')
      cs += ';';
  } else if (!t.dsn.empty()) {
    cs = "DSN=" + brace(t.dsn) + ";";
  } else {
    cs = "DRIVER=" + brace(t.driver_name.empty() ? "FreeTDS" : t.driver_name) + ";";
    cs += "SERVER=" + brace(t.host.empty() ? "127.0.0.1" : t.host) + ";";
    if (t.port > 0)
      cs += fmt::format("PORT={};", t.port);
    if (!t.database.empty())
      cs += "DATABASE=" + brace(t.database) + ";";
  }
  if (!t.user.empty() && !has_key(cs, "UID"))
    cs += "UID=" + brace(t.user) + ";";
  if (!t.password.empty() && !has_key(cs, "PWD"))
    cs += "PWD=" + brace(t.password) + ";";
  return cs;
}

std::string fraction(SQLUINTEGER ns, SQLSMALLINT digits) {
  auto nine = fmt::format("{:09d}", ns % 1'000'000'000u);
  if (digits > 0)
    return "." + nine.substr(0, static_cast<std::size_t>(std::min<SQLSMALLINT>(digits, 9)));
  if (ns == 0)
    return {};
  while (!nine.empty() && nine.back() == '0')
    nine.pop_back();
  return "." + nine;
}

class statement {
public:
  explicit statement(SQLHDBC dbc) {
    if (!SQL_SUCCEEDED(SQLAllocHandle(SQL_HANDLE_STMT, dbc, &h_)))
      h_ = SQL_NULL_HSTMT;
  }
  ~statement() {
    if (h_ != SQL_NULL_HSTMT)
      SQLFreeHandle(SQL_HANDLE_STMT, h_);
  }
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;
  SQLHSTMT get() const noexcept { return h_; }

private:
  SQLHSTMT h_ = SQL_NULL_HSTMT;
};

struct column_desc {
  std::string name;
  SQLSMALLINT type = 0;
  SQLULEN size = 0;
  SQLSMALLINT digits = 0;
};

class odbc_connection final : public sql_connection {
public:
  odbc_connection(SQLHENV env, SQLHDBC dbc, std::vector<std::string> secrets,
                  std::chrono::milliseconds timeout)
    : env_(env), dbc_(dbc), secrets_(std::move(secrets)), timeout_(timeout) {
    SQLWCHAR buf[16] = {0};
    SQLSMALLINT len = 0;
    if (SQL_SUCCEEDED(SQLGetInfoW(dbc_, SQL_IDENTIFIER_QUOTE_CHAR, buf, sizeof buf, &len)))
      quote_ = narrow(buf, static_cast<std::size_t>(len) / sizeof(SQLWCHAR));
    if (quote_ == " ")
      quote_.clear();
    len = 0;
    std::memset(buf, 0, sizeof buf);
    if (SQL_SUCCEEDED(SQLGetInfoW(dbc_, SQL_SEARCH_PATTERN_ESCAPE, buf, sizeof buf, &len)))
      escape_ = narrow(buf, static_cast<std::size_t>(len) / sizeof(SQLWCHAR));
  }
  ~odbc_connection() override { close(); }

  caf::expected<query_result> query(const std::string& sql, const std::vector<sql_param>& params,
                                    const query_control& ctl) override {
    if (auto err = ctl.check("the ODBC statement"))
      return err;
    if (!dbc_)
      return make_error(errc::unavailable, "ODBC: the connection is closed");
    statement st{dbc_};
    if (st.get() == SQL_NULL_HSTMT)
      return failure(SQL_HANDLE_DBC, dbc_, ctl);
    running guard{*this, st.get()};
    set_query_timeout(st.get(), ctl);
    auto wsql = widen(sql);
    auto rc = SQLPrepareW(st.get(), wsql.data(), static_cast<SQLINTEGER>(wsql.size()));
    if (!SQL_SUCCEEDED(rc))
      return failure(SQL_HANDLE_STMT, st.get(), ctl);
    SQLSMALLINT expected = 0;
    if (SQL_SUCCEEDED(SQLNumParams(st.get(), &expected))
        && static_cast<std::size_t>(expected) != params.size())
      return make_error(errc::invalid_argument,
                        fmt::format("ODBC: the query has {} placeholder(s) but {} param(s) were "
                                    "given",
                                    expected, params.size()));
    // Parameter storage, sized once so the bound pointers stay valid.
    std::vector<SQLLEN> ind(params.size(), 0);
    std::vector<SQLBIGINT> ints(params.size());
    std::vector<double> reals(params.size());
    std::vector<unsigned char> bits(params.size());
    std::vector<wide> texts(params.size());
    std::vector<std::string> numbers(params.size());
    for (std::size_t k = 0; k < params.size(); ++k) {
      const auto& p = params[k];
      auto n = static_cast<SQLUSMALLINT>(k + 1);
      switch (p.type) {
        case sql_param::kind::null:
          ind[k] = SQL_NULL_DATA;
          rc = SQLBindParameter(st.get(), n, SQL_PARAM_INPUT, SQL_C_CHAR, SQL_VARCHAR, 1, 0,
                                &bits[k], 0, &ind[k]);
          break;
        case sql_param::kind::boolean:
          bits[k] = p.b ? 1 : 0;
          rc = SQLBindParameter(st.get(), n, SQL_PARAM_INPUT, SQL_C_BIT, SQL_BIT, 1, 0, &bits[k],
                                0, &ind[k]);
          break;
        case sql_param::kind::integer:
          ints[k] = p.i;
          rc = SQLBindParameter(st.get(), n, SQL_PARAM_INPUT, SQL_C_SBIGINT, SQL_BIGINT, 19, 0,
                                &ints[k], 0, &ind[k]);
          break;
        case sql_param::kind::unsigned_integer:
          numbers[k] = std::to_string(p.u);
          ind[k] = static_cast<SQLLEN>(numbers[k].size());
          rc = SQLBindParameter(st.get(), n, SQL_PARAM_INPUT, SQL_C_CHAR, SQL_DECIMAL, 20, 0,
                                numbers[k].data(), ind[k], &ind[k]);
          break;
        case sql_param::kind::real:
          reals[k] = p.d;
          rc = SQLBindParameter(st.get(), n, SQL_PARAM_INPUT, SQL_C_DOUBLE, SQL_DOUBLE, 15, 0,
                                &reals[k], 0, &ind[k]);
          break;
        case sql_param::kind::text:
        case sql_param::kind::json: {
          texts[k] = widen(p.s);
          auto chars = texts[k].size();
          ind[k] = static_cast<SQLLEN>(chars * sizeof(SQLWCHAR));
          SQLSMALLINT sql_type = chars > 4000 ? SQL_WLONGVARCHAR : SQL_WVARCHAR;
          rc = SQLBindParameter(st.get(), n, SQL_PARAM_INPUT, SQL_C_WCHAR, sql_type,
                                std::max<SQLULEN>(chars, 1), 0, texts[k].data(), ind[k], &ind[k]);
          break;
        }
      }
      if (!SQL_SUCCEEDED(rc))
        return failure(SQL_HANDLE_STMT, st.get(), ctl);
    }
    rc = SQLExecute(st.get());
    if (!SQL_SUCCEEDED(rc) && rc != SQL_NO_DATA)
      return failure(SQL_HANDLE_STMT, st.get(), ctl);
    query_result out;
    // The first result set wins; row counts of statements before it add up.
    for (;;) {
      SQLSMALLINT ncols = 0;
      if (rc != SQL_NO_DATA && !SQL_SUCCEEDED(SQLNumResultCols(st.get(), &ncols)))
        return failure(SQL_HANDLE_STMT, st.get(), ctl);
      if (ncols > 0) {
        auto rows = fetch(st.get(), ncols, true, ctl);
        if (!rows)
          return std::move(rows.error());
        out.has_rows = true;
        out.rows = std::move(*rows);
        break;
      }
      SQLLEN count = -1;
      if (rc != SQL_NO_DATA && SQL_SUCCEEDED(SQLRowCount(st.get(), &count)) && count >= 0)
        out.rows_affected = std::max<int64_t>(out.rows_affected, 0) + count;
      else if (out.rows_affected < 0)
        out.rows_affected = 0;
      rc = SQLMoreResults(st.get());
      if (rc == SQL_NO_DATA)
        break;
      if (!SQL_SUCCEEDED(rc))
        return failure(SQL_HANDLE_STMT, st.get(), ctl);
    }
    return out;
  }

  caf::expected<json::array> describe(const std::string& schema, const std::string& table,
                                      const query_control& ctl) override {
    if (auto err = ctl.check("describing the table"))
      return err;
    // Catalog functions take search patterns: escape '_' and '%'.
    auto pattern = [&](const std::string& s) {
      if (escape_.empty())
        return widen(s);
      std::string out;
      for (char c : s) {
        if (c == '_' || c == '%')
          out += escape_;
        out += c;
      }
      return widen(out);
    };
    auto wschema = pattern(schema);
    auto wtable = pattern(table);
    json::array columns;
    {
      statement st{dbc_};
      if (st.get() == SQL_NULL_HSTMT)
        return failure(SQL_HANDLE_DBC, dbc_, ctl);
      running guard{*this, st.get()};
      set_query_timeout(st.get(), ctl);
      auto rc = SQLColumnsW(st.get(), nullptr, 0, schema.empty() ? nullptr : wschema.data(),
                            schema.empty() ? 0 : static_cast<SQLSMALLINT>(wschema.size()),
                            wtable.data(), static_cast<SQLSMALLINT>(wtable.size()), nullptr, 0);
      if (!SQL_SUCCEEDED(rc))
        return failure(SQL_HANDLE_STMT, st.get(), ctl);
      SQLSMALLINT ncols = 0;
      SQLNumResultCols(st.get(), &ncols);
      auto rows = fetch(st.get(), ncols, false, ctl);
      if (!rows)
        return std::move(rows.error());
      columns = std::move(*rows);
    }
    // Columns of the first schema seen only (a table name can repeat across schemas).
    std::string seen_schema;
    std::vector<std::string> keys;
    json::array out;
    for (std::size_t i = 0; i < columns.size(); ++i) {
      auto& r = columns[i].as_array();
      auto at = [&](std::size_t k) -> json::value& { return r.at(k - 1); };
      auto row_schema = to_text(at(2));
      if (i == 0)
        seen_schema = row_schema;
      else if (row_schema != seen_schema)
        continue;
      std::string type = to_text(at(6));
      auto data_type = at(5).is_int64() ? at(5).get_int64() : 0;
      switch (data_type) {
        case SQL_CHAR:
        case SQL_VARCHAR:
        case SQL_WCHAR:
        case SQL_WVARCHAR:
        case SQL_BINARY:
        case SQL_VARBINARY:
          if (at(7).is_int64() && type.find('(') == std::string::npos)
            type += fmt::format("({})", at(7).get_int64());
          break;
        case SQL_DECIMAL:
        case SQL_NUMERIC:
          if (at(7).is_int64() && type.find('(') == std::string::npos)
            type += fmt::format("({},{})", at(7).get_int64(),
                                at(9).is_int64() ? at(9).get_int64() : 0);
          break;
        default:
          break;
      }
      out.push_back(json::object{{"name", at(4)},
                                 {"type", type},
                                 {"nullable", at(11).is_int64() && at(11).get_int64() != SQL_NO_NULLS},
                                 {"key", nullptr},
                                 {"default", at(13)},
                                 {"position", r.size() >= 17 ? at(17) : json::value(i + 1)}});
    }
    if (out.empty())
      return out;
    // Primary key columns (SQLPrimaryKeys takes plain names, not patterns).
    statement pk{dbc_};
    if (pk.get() != SQL_NULL_HSTMT) {
      set_query_timeout(pk.get(), ctl);
      auto ws = widen(seen_schema);
      auto wt = widen(table);
      auto rc = SQLPrimaryKeysW(pk.get(), nullptr, 0, seen_schema.empty() ? nullptr : ws.data(),
                                static_cast<SQLSMALLINT>(ws.size()), wt.data(),
                                static_cast<SQLSMALLINT>(wt.size()));
      if (SQL_SUCCEEDED(rc)) {
        SQLSMALLINT ncols = 0;
        SQLNumResultCols(pk.get(), &ncols);
        if (auto rows = fetch(pk.get(), ncols, false, ctl))
          for (auto& row : *rows)
            if (row.as_array().size() >= 4)
              keys.push_back(to_text(row.as_array()[3]));
      }
    }
    for (auto& col : out) {
      auto& o = col.as_object();
      if (std::find(keys.begin(), keys.end(), to_text(o["name"])) != keys.end())
        o["key"] = "primary";
    }
    return out;
  }

  caf::error begin(const query_control& ctl) override {
    auto rc = SQLSetConnectAttrW(dbc_, SQL_ATTR_AUTOCOMMIT,
                                 reinterpret_cast<SQLPOINTER>(SQL_AUTOCOMMIT_OFF), 0);
    if (!SQL_SUCCEEDED(rc))
      return failure(SQL_HANDLE_DBC, dbc_, ctl);
    return {};
  }
  caf::error commit(const query_control& ctl) override { return end(SQL_COMMIT, ctl); }
  caf::error rollback(const query_control& ctl) override { return end(SQL_ROLLBACK, ctl); }

  bool usable() const noexcept override { return dbc_ && !broken_; }

  bool alive() override {
    if (!usable())
      return false;
    SQLUINTEGER dead = SQL_CD_FALSE;
    if (SQL_SUCCEEDED(SQLGetConnectAttrW(dbc_, SQL_ATTR_CONNECTION_DEAD, &dead, 0, nullptr)))
      return dead != SQL_CD_TRUE;
    return true;
  }

  void interrupt() noexcept override {
    std::lock_guard<std::mutex> lock{running_mtx_};
    if (running_ != SQL_NULL_HSTMT)
      SQLCancel(running_); // allowed from another thread during execution
  }

  void close() noexcept override {
    if (dbc_) {
      SQLDisconnect(dbc_);
      SQLFreeHandle(SQL_HANDLE_DBC, dbc_);
      dbc_ = nullptr;
    }
    if (env_) {
      SQLFreeHandle(SQL_HANDLE_ENV, env_);
      env_ = nullptr;
    }
  }

  std::string quote_identifier(std::string_view plain) const override {
    return fmt::format("{}{}{}", quote_, plain, quote_);
  }
  placeholder_style placeholders() const noexcept override {
    return placeholder_style::question_mark;
  }
  driver_kind dialect() const noexcept override { return driver_kind::odbc; }

private:
  /// Publishes the executing statement to interrupt() for its lifetime.
  struct running {
    running(odbc_connection& c, SQLHSTMT st) : c_(c) {
      std::lock_guard<std::mutex> lock{c_.running_mtx_};
      c_.running_ = st;
    }
    ~running() {
      std::lock_guard<std::mutex> lock{c_.running_mtx_};
      c_.running_ = SQL_NULL_HSTMT;
    }
    odbc_connection& c_;
  };

  void set_query_timeout(SQLHSTMT st, const query_control& ctl) {
    auto ms = std::min(timeout_, ctl.remaining());
    auto secs = static_cast<SQLULEN>(std::max<long long>(1, (ms.count() + 999) / 1000));
    // Drivers without query timeouts answer 01S02/HYC00: not an error here.
    SQLSetStmtAttrW(st, SQL_ATTR_QUERY_TIMEOUT, reinterpret_cast<SQLPOINTER>(secs), 0);
  }

  caf::error end(SQLSMALLINT how, const query_control& ctl) {
    auto rc = SQLEndTran(SQL_HANDLE_DBC, dbc_, how);
    caf::error err;
    if (!SQL_SUCCEEDED(rc))
      err = failure(SQL_HANDLE_DBC, dbc_, ctl);
    SQLSetConnectAttrW(dbc_, SQL_ATTR_AUTOCOMMIT, reinterpret_cast<SQLPOINTER>(SQL_AUTOCOMMIT_ON),
                       0);
    return err;
  }

  caf::error failure(SQLSMALLINT type, SQLHANDLE handle, const query_control& ctl) {
    auto d = diagnose(type, handle);
    auto text = redact(fmt::format("ODBC error {}: {}", d.state, d.message), secrets_);
    // Some drivers report a lost server as HY000: ask the driver too.
    SQLUINTEGER dead = SQL_CD_FALSE;
    bool gone = dbc_ && SQL_SUCCEEDED(SQLGetConnectAttrW(dbc_, SQL_ATTR_CONNECTION_DEAD, &dead, 0,
                                                         nullptr))
                && dead == SQL_CD_TRUE;
    if (d.state.rfind("08", 0) == 0 || gone) {
      broken_ = true;
      return make_error(errc::unavailable, std::move(text));
    }
    if (d.state == "HYT00" || d.state == "HYT01") {
      broken_ = true; // some drivers leave the connection mid-reply
      return make_error(errc::timeout, std::move(text));
    }
    if (ctl.is_cancelled()) // SQLCancel from the watchdog (HY008, or the server's own code)
      return make_error(errc::cancelled, "ODBC: the statement was cancelled (" + text + ")");
    return make_error(errc::step_failed, std::move(text));
  }

  /// Reads every row of the current result set: objects keyed by column
  /// name (`as_objects`) or arrays in column order (catalog functions).
  caf::expected<json::array> fetch(SQLHSTMT st, SQLSMALLINT ncols, bool as_objects,
                                   const query_control& ctl) {
    std::vector<column_desc> cols(static_cast<std::size_t>(std::max<SQLSMALLINT>(ncols, 0)));
    std::vector<std::string> names;
    for (SQLSMALLINT c = 1; c <= ncols; ++c) {
      SQLWCHAR name[512];
      SQLSMALLINT len = 0, nullable = 0;
      auto& d = cols[static_cast<std::size_t>(c - 1)];
      if (!SQL_SUCCEEDED(SQLDescribeColW(st, static_cast<SQLUSMALLINT>(c), name,
                                         static_cast<SQLSMALLINT>(std::size(name)), &len, &d.type,
                                         &d.size, &d.digits, &nullable)))
        return failure(SQL_HANDLE_STMT, st, ctl);
      d.name = narrow(name, std::min<std::size_t>(static_cast<std::size_t>(std::max<SQLSMALLINT>(len, 0)),
                                                  std::size(name) - 1));
      names.push_back(d.name);
    }
    auto keys = unique_column_names(names);
    json::array rows;
    for (;;) {
      auto rc = SQLFetch(st);
      if (rc == SQL_NO_DATA)
        break;
      if (!SQL_SUCCEEDED(rc))
        return failure(SQL_HANDLE_STMT, st, ctl);
      json::object obj;
      json::array arr;
      for (SQLSMALLINT c = 1; c <= ncols; ++c) {
        auto v = value(st, static_cast<SQLUSMALLINT>(c), cols[static_cast<std::size_t>(c - 1)], ctl);
        if (!v)
          return std::move(v.error());
        if (as_objects)
          obj[keys[static_cast<std::size_t>(c - 1)]] = std::move(*v);
        else
          arr.push_back(std::move(*v));
      }
      if (as_objects)
        rows.push_back(std::move(obj));
      else
        rows.push_back(std::move(arr));
    }
    return rows;
  }

  /// Variable-length data in chunks; std::nullopt-like null via `is_null`.
  caf::expected<std::string> chunks(SQLHSTMT st, SQLUSMALLINT c, SQLSMALLINT ctype,
                                    std::size_t terminator, bool& is_null,
                                    const query_control& ctl) {
    std::string out;
    std::vector<char> buf(8192);
    for (;;) {
      SQLLEN ind = 0;
      auto rc = SQLGetData(st, c, ctype, buf.data(), static_cast<SQLLEN>(buf.size()), &ind);
      if (rc == SQL_NO_DATA)
        break;
      if (!SQL_SUCCEEDED(rc))
        return failure(SQL_HANDLE_STMT, st, ctl);
      if (ind == SQL_NULL_DATA) {
        is_null = true;
        return out;
      }
      std::size_t room = buf.size() - terminator;
      std::size_t got = (ind == SQL_NO_TOTAL || static_cast<std::size_t>(ind) > room)
                          ? room
                          : static_cast<std::size_t>(ind);
      out.append(buf.data(), got);
      if (rc == SQL_SUCCESS)
        break;
    }
    return out;
  }

  caf::expected<json::value> value(SQLHSTMT st, SQLUSMALLINT c, const column_desc& d,
                                   const query_control& ctl) {
    SQLLEN ind = 0;
    auto get = [&](SQLSMALLINT ctype, void* buf, SQLLEN len) -> caf::error {
      auto rc = SQLGetData(st, c, ctype, buf, len, &ind);
      if (!SQL_SUCCEEDED(rc))
        return failure(SQL_HANDLE_STMT, st, ctl);
      return {};
    };
    switch (d.type) {
      case SQL_BIT: {
        unsigned char b = 0;
        if (auto err = get(SQL_C_BIT, &b, sizeof b))
          return err;
        return ind == SQL_NULL_DATA ? json::value(nullptr) : json::value(b != 0);
      }
      case SQL_TINYINT:
      case SQL_SMALLINT:
      case SQL_INTEGER:
      case SQL_BIGINT: {
        SQLBIGINT v = 0;
        if (auto err = get(SQL_C_SBIGINT, &v, sizeof v))
          return err;
        return ind == SQL_NULL_DATA ? json::value(nullptr) : json::value(static_cast<int64_t>(v));
      }
      case SQL_REAL: {
        float f = 0;
        if (auto err = get(SQL_C_FLOAT, &f, sizeof f))
          return err;
        if (ind == SQL_NULL_DATA)
          return json::value(nullptr);
        if (!std::isfinite(f))
          return json::value(json::string(std::isnan(f) ? "NaN" : (f > 0 ? "Infinity" : "-Infinity")));
        char buf[64];
        auto res = std::to_chars(buf, buf + sizeof buf, f);
        return json::value(std::strtod(std::string(buf, res.ptr).c_str(), nullptr));
      }
      case SQL_FLOAT:
      case SQL_DOUBLE: {
        double v = 0;
        if (auto err = get(SQL_C_DOUBLE, &v, sizeof v))
          return err;
        if (ind == SQL_NULL_DATA)
          return json::value(nullptr);
        if (!std::isfinite(v))
          return json::value(json::string(std::isnan(v) ? "NaN" : (v > 0 ? "Infinity" : "-Infinity")));
        return json::value(v);
      }
      case SQL_DECIMAL:
      case SQL_NUMERIC: {
        bool is_null = false;
        auto text = chunks(st, c, SQL_C_CHAR, 1, is_null, ctl);
        if (!text)
          return std::move(text.error());
        return is_null ? json::value(nullptr) : decimal_value(*text);
      }
      case SQL_TYPE_DATE: {
        SQL_DATE_STRUCT v{};
        if (auto err = get(SQL_C_TYPE_DATE, &v, sizeof v))
          return err;
        if (ind == SQL_NULL_DATA)
          return json::value(nullptr);
        return json::value(json::string(fmt::format("{:04d}-{:02d}-{:02d}", v.year, v.month, v.day)));
      }
      case SQL_TYPE_TIMESTAMP: {
        SQL_TIMESTAMP_STRUCT v{};
        if (auto err = get(SQL_C_TYPE_TIMESTAMP, &v, sizeof v))
          return err;
        if (ind == SQL_NULL_DATA)
          return json::value(nullptr);
        return json::value(json::string(
          fmt::format("{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}{}", v.year, v.month, v.day, v.hour,
                      v.minute, v.second, fraction(v.fraction, d.digits))));
      }
      case SQL_BINARY:
      case SQL_VARBINARY:
      case SQL_LONGVARBINARY: {
        bool is_null = false;
        auto bytes = chunks(st, c, SQL_C_BINARY, 0, is_null, ctl);
        if (!bytes)
          return std::move(bytes.error());
        return is_null ? json::value(nullptr) : json::value(json::string(base64(*bytes)));
      }
      case SQL_TYPE_TIME:
      case sql_ss_time2:
      default: {
        bool is_null = false;
        auto bytes = chunks(st, c, SQL_C_WCHAR, sizeof(SQLWCHAR), is_null, ctl);
        if (!bytes)
          return std::move(bytes.error());
        if (is_null)
          return json::value(nullptr);
        wide w(bytes->size() / sizeof(SQLWCHAR), 0);
        std::memcpy(w.data(), bytes->data(), w.size() * sizeof(SQLWCHAR));
        return json::value(json::string(narrow(w)));
      }
    }
  }

  SQLHENV env_;
  SQLHDBC dbc_;
  std::vector<std::string> secrets_;
  std::chrono::milliseconds timeout_;
  std::string quote_ = "\"";
  std::string escape_;
  bool broken_ = false;
  std::mutex running_mtx_;
  SQLHSTMT running_ = SQL_NULL_HSTMT;
};

class odbc_backend final : public sql_backend {
public:
  caf::expected<std::unique_ptr<sql_connection>> open(const target& t,
                                                      const query_control& ctl) override {
    if (auto err = ctl.check("connecting through ODBC"))
      return err;
    auto cs = connection_string(t);
    auto secrets = t.secrets();
    // The connection string's own PWD= value is redacted by redact() too.
    SQLHENV env = SQL_NULL_HENV;
    if (!SQL_SUCCEEDED(SQLAllocHandle(SQL_HANDLE_ENV, SQL_NULL_HANDLE, &env)))
      return make_error(errc::internal, "ODBC: cannot allocate an environment handle");
    SQLSetEnvAttr(env, SQL_ATTR_ODBC_VERSION, reinterpret_cast<SQLPOINTER>(SQL_OV_ODBC3), 0);
    SQLHDBC dbc = SQL_NULL_HDBC;
    if (!SQL_SUCCEEDED(SQLAllocHandle(SQL_HANDLE_DBC, env, &dbc))) {
      SQLFreeHandle(SQL_HANDLE_ENV, env);
      return make_error(errc::internal, "ODBC: cannot allocate a connection handle");
    }
    auto ms = std::min(t.timeout, ctl.remaining());
    auto secs = static_cast<SQLULEN>(std::max<long long>(1, (ms.count() + 999) / 1000));
    SQLSetConnectAttrW(dbc, SQL_ATTR_LOGIN_TIMEOUT, reinterpret_cast<SQLPOINTER>(secs), 0);
    SQLSetConnectAttrW(dbc, SQL_ATTR_CONNECTION_TIMEOUT, reinterpret_cast<SQLPOINTER>(secs), 0);
    auto wcs = widen(cs);
    SQLWCHAR out[1024];
    SQLSMALLINT outlen = 0;
    auto rc = SQLDriverConnectW(dbc, nullptr, wcs.data(), static_cast<SQLSMALLINT>(wcs.size()),
                                out, static_cast<SQLSMALLINT>(std::size(out)), &outlen,
                                SQL_DRIVER_NOPROMPT);
    if (!SQL_SUCCEEDED(rc)) {
      auto d = diagnose(SQL_HANDLE_DBC, dbc);
      SQLFreeHandle(SQL_HANDLE_DBC, dbc);
      SQLFreeHandle(SQL_HANDLE_ENV, env);
      return make_error(errc::unavailable,
                        redact(fmt::format("ODBC: cannot connect to {}: error {}: {}",
                                           t.describe(), d.state, d.message),
                               secrets));
    }
    return std::unique_ptr<sql_connection>(new odbc_connection(env, dbc, std::move(secrets), t.timeout));
  }
};

} // namespace

std::unique_ptr<sql_backend> make_odbc_backend() {
  return std::make_unique<odbc_backend>();
}

} // namespace stepflow::connectors::sql
