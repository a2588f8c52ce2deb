// The SQLite adapter: one sqlite3 handle per pooled connection, a busy
// timeout for locked databases, and a progress handler that interrupts a
// statement when the step is cancelled or its deadline passes.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>

#include <sqlite3.h>

#include <fmt/format.h>

#include "sql/sql_backend.hpp"
#include "sql/sql_text.hpp"

namespace stepflow::connectors::sql {

namespace {

bool boolean_decl(const char* decl) {
  if (!decl)
    return false;
  auto d = lower(decl);
  return d == "boolean" || d == "bool";
}

int progress(void* arg) {
  auto* ctl = static_cast<const query_control*>(arg);
  return ctl && (ctl->is_cancelled() || ctl->expired()) ? 1 : 0;
}

struct stmt_deleter {
  void operator()(sqlite3_stmt* s) const noexcept { sqlite3_finalize(s); }
};
using stmt_ptr = std::unique_ptr<sqlite3_stmt, stmt_deleter>;

class sqlite_connection final : public sql_connection {
public:
  explicit sqlite_connection(sqlite3* db) : db_(db) {}
  ~sqlite_connection() override { close(); }

  caf::expected<query_result> query(const std::string& sql, const std::vector<sql_param>& params,
                                    const query_control& ctl) override {
    if (auto err = ctl.check("the SQLite statement"))
      return err;
    if (!db_)
      return make_error(errc::unavailable, "SQLite: the database is closed");
    sqlite3_stmt* raw = nullptr;
    const char* tail = nullptr;
    int rc = sqlite3_prepare_v2(db_, sql.c_str(), static_cast<int>(sql.size()), &raw, &tail);
    stmt_ptr st{raw};
    if (rc != SQLITE_OK)
      return failure(rc, ctl);
    if (!st)
      return make_error(errc::invalid_argument, "SQLite: the query is empty");
    if (tail && std::any_of(tail, sql.c_str() + sql.size(),
                            [](char c) { return !std::isspace(static_cast<unsigned char>(c)) && c != ';'; }))
      return make_error(errc::invalid_argument,
                        "SQLite: the query holds more than one statement; run one at a time");
    int expected = sqlite3_bind_parameter_count(st.get());
    if (static_cast<std::size_t>(expected) != params.size())
      return make_error(errc::invalid_argument,
                        fmt::format("SQLite: the query has {} placeholder(s) but {} param(s) "
                                    "were given",
                                    expected, params.size()));
    for (std::size_t k = 0; k < params.size(); ++k) {
      const auto& p = params[k];
      int idx = static_cast<int>(k) + 1;
      switch (p.type) {
        case sql_param::kind::null:
          rc = sqlite3_bind_null(st.get(), idx);
          break;
        case sql_param::kind::boolean:
          rc = sqlite3_bind_int(st.get(), idx, p.b ? 1 : 0);
          break;
        case sql_param::kind::integer:
          rc = sqlite3_bind_int64(st.get(), idx, p.i);
          break;
        case sql_param::kind::unsigned_integer:
          rc = sqlite3_bind_double(st.get(), idx, static_cast<double>(p.u));
          break;
        case sql_param::kind::real:
          rc = sqlite3_bind_double(st.get(), idx, p.d);
          break;
        case sql_param::kind::text:
        case sql_param::kind::json:
          rc = sqlite3_bind_text64(st.get(), idx, p.s.data(), p.s.size(), SQLITE_TRANSIENT,
                                   SQLITE_UTF8);
          break;
      }
      if (rc != SQLITE_OK)
        return failure(rc, ctl);
    }
    sqlite3_progress_handler(db_, 1000, progress, const_cast<query_control*>(&ctl));
    auto rowid_before = sqlite3_last_insert_rowid(db_);
    auto changes_before = sqlite3_total_changes64(db_);
    query_result out;
    int ncols = sqlite3_column_count(st.get());
    std::vector<std::string> keys;
    if (ncols > 0) {
      out.has_rows = true;
      std::vector<std::string> names;
      for (int c = 0; c < ncols; ++c)
        names.emplace_back(sqlite3_column_name(st.get(), c));
      keys = unique_column_names(names);
    }
    for (;;) {
      rc = sqlite3_step(st.get());
      if (rc == SQLITE_DONE)
        break;
      if (rc != SQLITE_ROW) {
        sqlite3_progress_handler(db_, 0, nullptr, nullptr);
        return failure(rc, ctl);
      }
      json::object row;
      for (int c = 0; c < ncols; ++c)
        row[keys[c]] = column(st.get(), c);
      out.rows.push_back(std::move(row));
    }
    sqlite3_progress_handler(db_, 0, nullptr, nullptr);
    if (!out.has_rows) {
      // Rows this statement changed (sqlite3_changes64 would repeat the
      // last INSERT/UPDATE/DELETE's count after DDL).
      out.rows_affected = sqlite3_total_changes64(db_) - changes_before;
      // Only a statement that inserted moves the rowid.
      auto rowid = sqlite3_last_insert_rowid(db_);
      if (out.rows_affected > 0 && rowid != rowid_before)
        out.last_insert_id = static_cast<int64_t>(rowid);
    }
    return out;
  }

  caf::expected<json::array> describe(const std::string& schema, const std::string& table,
                                      const query_control& ctl) override {
    std::vector<sql_param> params(1);
    params[0].type = sql_param::kind::text;
    params[0].s = table;
    std::string sql = "SELECT name, type, \"notnull\", dflt_value, pk, cid FROM "
                      "pragma_table_info(?1) ORDER BY cid";
    if (!schema.empty()) {
      sql = "SELECT name, type, \"notnull\", dflt_value, pk, cid FROM pragma_table_info(?1, ?2) "
            "ORDER BY cid";
      params.push_back(params[0]);
      params[1].s = schema;
    }
    auto res = query(sql, params, ctl);
    if (!res)
      return std::move(res.error());
    json::array out;
    for (auto& row : res->rows) {
      auto& r = row.as_object();
      bool pk = r["pk"].is_int64() && r["pk"].get_int64() > 0;
      out.push_back(json::object{{"name", r["name"]},
                                 {"type", r["type"]},
                                 {"nullable", !(r["notnull"].is_int64() && r["notnull"].get_int64())
                                                && !pk},
                                 {"key", pk ? json::value("primary") : json::value(nullptr)},
                                 {"default", r["dflt_value"]},
                                 {"position", r["cid"].is_int64() ? r["cid"].get_int64() + 1 : 0}});
    }
    return out;
  }

  caf::error begin(const query_control& ctl) override { return simple("BEGIN", ctl); }
  caf::error commit(const query_control& ctl) override { return simple("COMMIT", ctl); }
  caf::error rollback(const query_control& ctl) override { return simple("ROLLBACK", ctl); }

  bool usable() const noexcept override { return db_ && !broken_; }
  bool alive() override { return usable(); }
  void interrupt() noexcept override {
    if (db_)
      sqlite3_interrupt(db_);
  }

  void close() noexcept override {
    if (db_) {
      sqlite3_close_v2(db_);
      db_ = nullptr;
    }
  }

  std::string quote_identifier(std::string_view plain) const override {
    return fmt::format("\"{}\"", plain);
  }
  placeholder_style placeholders() const noexcept override {
    return placeholder_style::question_mark;
  }
  driver_kind dialect() const noexcept override { return driver_kind::sqlite; }

private:
  json::value column(sqlite3_stmt* st, int c) {
    switch (sqlite3_column_type(st, c)) {
      case SQLITE_NULL:
        return nullptr;
      case SQLITE_INTEGER: {
        auto v = static_cast<int64_t>(sqlite3_column_int64(st, c));
        if (boolean_decl(sqlite3_column_decltype(st, c)) && (v == 0 || v == 1))
          return v == 1;
        return v;
      }
      case SQLITE_FLOAT: {
        double d = sqlite3_column_double(st, c);
        if (!std::isfinite(d))
          return json::string(std::isnan(d) ? "NaN" : (d > 0 ? "Infinity" : "-Infinity"));
        return d;
      }
      case SQLITE_BLOB: {
        auto* data = static_cast<const char*>(sqlite3_column_blob(st, c));
        auto n = static_cast<std::size_t>(sqlite3_column_bytes(st, c));
        return json::string(base64(std::string_view(data ? data : "", n)));
      }
      default: {
        auto* text = reinterpret_cast<const char*>(sqlite3_column_text(st, c));
        auto n = static_cast<std::size_t>(sqlite3_column_bytes(st, c));
        return json::string(std::string_view(text ? text : "", n));
      }
    }
  }

  caf::error failure(int rc, const query_control& ctl) {
    int primary = rc & 0xff;
    if (primary == SQLITE_INTERRUPT) {
      if (ctl.is_cancelled())
        return make_error(errc::cancelled, "SQLite: the statement was cancelled");
      return make_error(errc::timeout, "SQLite: the statement did not finish within the timeout");
    }
    if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED)
      return make_error(errc::timeout,
                        fmt::format("SQLite: the database stayed locked past the timeout ({})",
                                    sqlite3_errmsg(db_)));
    if (primary == SQLITE_IOERR || primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB
        || primary == SQLITE_CANTOPEN || primary == SQLITE_FULL)
      broken_ = true;
    return make_error(broken_ ? errc::unavailable : errc::step_failed,
                      fmt::format("SQLite error {} ({}): {}", rc, sqlite3_errstr(rc),
                                  sqlite3_errmsg(db_)));
  }

  caf::error simple(const char* statement, const query_control& ctl) {
    auto res = query(statement, {}, ctl);
    if (!res)
      return std::move(res.error());
    return {};
  }

  sqlite3* db_;
  bool broken_ = false;
};

class sqlite_backend final : public sql_backend {
public:
  caf::expected<std::unique_ptr<sql_connection>> open(const target& t,
                                                      const query_control& ctl) override {
    if (auto err = ctl.check("opening the SQLite database"))
      return err;
    if (t.path.empty())
      return make_error(errc::invalid_argument, "SQLite: parameter \"path\" is required");
    sqlite3* db = nullptr;
    int rc = sqlite3_open_v2(t.path.c_str(), &db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
                               | SQLITE_OPEN_URI,
                             nullptr);
    if (rc != SQLITE_OK) {
      auto text = fmt::format("SQLite: cannot open {}: {}", t.path,
                              db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
      sqlite3_close_v2(db);
      return make_error(errc::unavailable, std::move(text));
    }
    sqlite3_busy_timeout(
      db, static_cast<int>(std::min<long long>(t.timeout.count(), std::numeric_limits<int>::max())));
    sqlite3_extended_result_codes(db, 1);
    return std::unique_ptr<sql_connection>(new sqlite_connection(db));
  }
};

} // namespace

std::unique_ptr<sql_backend> make_sqlite_backend() {
  return std::make_unique<sqlite_backend>();
}

} // namespace stepflow::connectors::sql
