#include "sql/sql_text.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <limits>

#include <fmt/format.h>

namespace stepflow::connectors::sql {

// -- sql_backend.hpp helpers ---------------------------------------------------

std::string_view driver_label(driver_kind d) noexcept {
  switch (d) {
    case driver_kind::mysql:
      return "MySQL";
    case driver_kind::postgresql:
      return "PostgreSQL";
    case driver_kind::sqlite:
      return "SQLite";
    case driver_kind::odbc:
      return "ODBC";
  }
  return "SQL";
}

std::string target::pool_key() const {
  // Length-prefixed fields: no separator can be forged by a value.
  std::string key;
  auto add = [&](std::string_view s) {
    key += std::to_string(s.size());
    key += ':';
    key += s;
  };
  add(driver_label(driver));
  add(host);
  add(std::to_string(port));
  add(user);
  add(password);
  add(database);
  add(path);
  add(dsn);
  add(connection_string);
  add(driver_name);
  add(std::to_string(timeout.count()));
  return key;
}

std::string target::describe() const {
  switch (driver) {
    case driver_kind::sqlite:
      return fmt::format("SQLite {}", path);
    case driver_kind::odbc:
      if (!dsn.empty())
        return fmt::format("ODBC DSN {}{}", dsn, user.empty() ? "" : " as " + user);
      if (!connection_string.empty())
        return fmt::format("ODBC {}", redact(connection_string, secrets()));
      [[fallthrough]];
    default: {
      auto where = host.empty() ? std::string("localhost") : host;
      if (port > 0)
        where += fmt::format(":{}", port);
      auto out = fmt::format("{} {}{}", driver_label(driver), user.empty() ? "" : user + "@", where);
      if (!database.empty())
        out += "/" + database;
      return out;
    }
  }
}

std::vector<std::string> target::secrets() const {
  std::vector<std::string> out;
  if (!password.empty())
    out.push_back(password);
  // PWD=/Password= values written into an ODBC connection string.
  auto low = lower(connection_string);
  for (std::string_view key : {"pwd=", "password="}) {
    for (auto pos = low.find(key); pos != std::string::npos; pos = low.find(key, pos + 1)) {
      if (pos > 0 && low[pos - 1] != ';' && low[pos - 1] != ' ')
        continue;
      auto start = pos + key.size();
      std::size_t end;
      std::string value;
      if (start < connection_string.size() && connection_string[start] == '{') {
        end = connection_string.find('}', start + 1);
        value = connection_string.substr(start + 1, end == std::string::npos ? end : end - start - 1);
      } else {
        end = connection_string.find(';', start);
        value = connection_string.substr(start, end == std::string::npos ? end : end - start);
      }
      if (!value.empty())
        out.push_back(value);
    }
  }
  return out;
}

sql_param to_param(const json::value& v) {
  sql_param p;
  switch (v.kind()) {
    case json::kind::null:
      p.type = sql_param::kind::null;
      break;
    case json::kind::bool_:
      p.type = sql_param::kind::boolean;
      p.b = v.get_bool();
      break;
    case json::kind::int64:
      p.type = sql_param::kind::integer;
      p.i = v.get_int64();
      break;
    case json::kind::uint64:
      if (v.get_uint64() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        p.type = sql_param::kind::integer;
        p.i = static_cast<int64_t>(v.get_uint64());
      } else {
        p.type = sql_param::kind::unsigned_integer;
        p.u = v.get_uint64();
      }
      break;
    case json::kind::double_:
      p.type = sql_param::kind::real;
      p.d = v.get_double();
      break;
    case json::kind::string:
      p.type = sql_param::kind::text;
      p.s = std::string(v.get_string());
      break;
    case json::kind::array:
    case json::kind::object:
      p.type = sql_param::kind::json;
      p.s = to_json(v);
      break;
  }
  return p;
}

std::chrono::milliseconds query_control::remaining() const noexcept {
  auto now = std::chrono::steady_clock::now();
  if (deadline == std::chrono::steady_clock::time_point::max())
    return std::chrono::hours(24 * 365);
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
  return std::max(left, std::chrono::milliseconds(1));
}

caf::error query_control::check(std::string_view what) const {
  if (is_cancelled())
    return make_error(errc::cancelled, fmt::format("{} was cancelled", what));
  if (expired())
    return make_error(errc::timeout, fmt::format("{} timed out", what));
  return {};
}

// -- identifiers ---------------------------------------------------------------

bool plain_identifier(std::string_view name) noexcept {
  if (name.empty() || name.size() > 128)
    return false;
  auto c0 = static_cast<unsigned char>(name.front());
  if (!(std::isalpha(c0) || c0 == '_'))
    return false;
  return std::all_of(name.begin(), name.end(), [](char ch) {
    auto c = static_cast<unsigned char>(ch);
    return c < 128 && (std::isalnum(c) || c == '_' || c == '$');
  });
}

caf::expected<std::vector<std::string>> split_identifier(std::string_view name,
                                                         std::size_t max_parts,
                                                         std::string_view what) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  for (;;) {
    auto dot = name.find('.', start);
    parts.emplace_back(name.substr(start, dot == std::string_view::npos ? dot : dot - start));
    if (dot == std::string_view::npos)
      break;
    start = dot + 1;
  }
  bool ok = parts.size() <= max_parts
            && std::all_of(parts.begin(), parts.end(),
                           [](const std::string& p) { return plain_identifier(p); });
  if (!ok)
    return make_error(errc::invalid_argument,
                      fmt::format("{} {} is not a plain identifier (letters, digits, '_' and '$', "
                                  "starting with a letter or '_'{})",
                                  what, quote_json(name),
                                  max_parts > 1 ? fmt::format(", at most {} dot-separated parts",
                                                              max_parts)
                                                : std::string{}));
  return parts;
}

// -- named placeholders --------------------------------------------------------

namespace {

bool ident_start(char c) noexcept {
  auto u = static_cast<unsigned char>(c);
  return std::isalpha(u) || c == '_';
}

bool ident_char(char c) noexcept {
  auto u = static_cast<unsigned char>(c);
  return std::isalnum(u) || c == '_';
}

/// Index just past a quoted run starting at `i` (sql[i] == quote). Doubled
/// quotes stay inside; `backslash` escapes the next character.
std::size_t skip_quoted(std::string_view sql, std::size_t i, char quote, bool backslash) {
  char close = quote == '[' ? ']' : quote;
  ++i;
  while (i < sql.size()) {
    char c = sql[i];
    if (backslash && c == '\\') {
      i += 2;
      continue;
    }
    if (c == close) {
      if (i + 1 < sql.size() && sql[i + 1] == close && quote != '[') {
        i += 2;
        continue;
      }
      return i + 1;
    }
    ++i;
  }
  return sql.size();
}

/// PostgreSQL dollar quote at `i` ("$$" or "$tag$"): the tag, or "".
std::string_view dollar_tag(std::string_view sql, std::size_t i) {
  std::size_t j = i + 1;
  if (j < sql.size() && sql[j] == '$')
    return sql.substr(i, 2);
  if (j >= sql.size() || !ident_start(sql[j]))
    return {};
  while (j < sql.size() && ident_char(sql[j]))
    ++j;
  if (j < sql.size() && sql[j] == '$')
    return sql.substr(i, j - i + 1);
  return {};
}

} // namespace

caf::expected<bound_statement> bind_named(std::string_view sql, const json::object& named,
                                          driver_kind dialect, placeholder_style style) {
  bound_statement out;
  out.sql.reserve(sql.size());
  std::vector<std::string> order; // names by $n (PostgreSQL reuses numbers)
  std::size_t i = 0;
  auto copy_to = [&](std::size_t end) {
    out.sql.append(sql.substr(i, end - i));
    i = end;
  };
  while (i < sql.size()) {
    char c = sql[i];
    char next = i + 1 < sql.size() ? sql[i + 1] : '\0';
    if (c == '\'') {
      bool backslash = dialect == driver_kind::mysql
                       || (dialect == driver_kind::postgresql && i > 0
                           && (sql[i - 1] == 'E' || sql[i - 1] == 'e'));
      copy_to(skip_quoted(sql, i, '\'', backslash));
    } else if (c == '"') {
      copy_to(skip_quoted(sql, i, '"', dialect == driver_kind::mysql));
    } else if (c == '`' && (dialect == driver_kind::mysql || dialect == driver_kind::sqlite)) {
      copy_to(skip_quoted(sql, i, '`', false));
    } else if (c == '[' && (dialect == driver_kind::odbc || dialect == driver_kind::sqlite)) {
      copy_to(skip_quoted(sql, i, '[', false));
    } else if ((c == '-' && next == '-') || (c == '#' && dialect == driver_kind::mysql)) {
      auto eol = sql.find('\n', i);
      copy_to(eol == std::string_view::npos ? sql.size() : eol);
    } else if (c == '/' && next == '*') {
      auto end = sql.find("*/", i + 2);
      copy_to(end == std::string_view::npos ? sql.size() : end + 2);
    } else if (c == '$' && dialect == driver_kind::postgresql && !dollar_tag(sql, i).empty()
               && (i == 0 || !ident_char(sql[i - 1]))) {
      auto tag = dollar_tag(sql, i);
      auto end = sql.find(tag, i + tag.size());
      copy_to(end == std::string_view::npos ? sql.size() : end + tag.size());
    } else if (c == ':' && next == ':') {
      copy_to(i + 2); // PostgreSQL cast
    } else if (c == ':' && ident_start(next) && (i == 0 || !ident_char(sql[i - 1]))) {
      std::size_t j = i + 1;
      while (j < sql.size() && ident_char(sql[j]))
        ++j;
      std::string name(sql.substr(i + 1, j - i - 1));
      auto it = named.find(name);
      if (it == named.end())
        return make_error(errc::invalid_argument,
                          fmt::format("the query uses the placeholder :{} but params has no "
                                      "member {}",
                                      name, quote_json(name)));
      if (style == placeholder_style::dollar_number) {
        auto pos = std::find(order.begin(), order.end(), name);
        std::size_t n = static_cast<std::size_t>(pos - order.begin()) + 1;
        if (pos == order.end()) {
          order.push_back(name);
          out.params.push_back(to_param(it->value()));
        }
        out.sql += fmt::format("${}", n);
      } else {
        out.sql += '?';
        out.params.push_back(to_param(it->value()));
      }
      i = j;
    } else {
      out.sql += c;
      ++i;
    }
  }
  return out;
}

// -- values --------------------------------------------------------------------

json::value decimal_value(std::string_view text) {
  std::string_view s = text;
  bool negative = false;
  if (!s.empty() && (s.front() == '-' || s.front() == '+')) {
    negative = s.front() == '-';
    s.remove_prefix(1);
  }
  auto dot = s.find('.');
  std::string_view whole = s.substr(0, dot);
  std::string_view frac = dot == std::string_view::npos ? std::string_view{} : s.substr(dot + 1);
  auto digits = [](std::string_view d) {
    return std::all_of(d.begin(), d.end(),
                       [](char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; });
  };
  if ((whole.empty() && frac.empty()) || !digits(whole) || !digits(frac))
    return json::string(text);
  while (!frac.empty() && frac.back() == '0')
    frac.remove_suffix(1);
  while (whole.size() > 1 && whole.front() == '0')
    whole.remove_prefix(1);
  if (frac.empty()) {
    std::string w(whole.empty() ? "0" : whole);
    errno = 0;
    char* end = nullptr;
    if (negative) {
      long long v = std::strtoll(("-" + w).c_str(), &end, 10);
      if (errno == 0)
        return static_cast<int64_t>(v);
    } else {
      unsigned long long v = std::strtoull(w.c_str(), &end, 10);
      if (errno == 0) {
        if (v <= static_cast<unsigned long long>(std::numeric_limits<int64_t>::max()))
          return static_cast<int64_t>(v);
        return static_cast<uint64_t>(v);
      }
    }
    return json::string(text);
  }
  // Significant digits: the whole part without leading zeros, then the
  // fraction (leading zeros of the fraction count only after a non-zero).
  std::string all = std::string(whole == "0" ? "" : whole) + std::string(frac);
  auto first = all.find_first_not_of('0');
  std::size_t significant = first == std::string::npos ? 0 : all.size() - first;
  if (significant > 15)
    return json::string(text);
  return std::strtod(std::string(text).c_str(), nullptr);
}

std::vector<std::string> unique_column_names(const std::vector<std::string>& names) {
  std::vector<std::string> out;
  for (const auto& n : names) {
    std::string candidate = n;
    for (int k = 2; std::find(out.begin(), out.end(), candidate) != out.end(); ++k)
      candidate = fmt::format("{}_{}", n, k);
    out.push_back(candidate);
  }
  return out;
}

std::string base64(std::string_view bytes) {
  static constexpr char table[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    uint32_t n = (static_cast<uint8_t>(bytes[i]) << 16) | (static_cast<uint8_t>(bytes[i + 1]) << 8)
                 | static_cast<uint8_t>(bytes[i + 2]);
    out += table[(n >> 18) & 63];
    out += table[(n >> 12) & 63];
    out += table[(n >> 6) & 63];
    out += table[n & 63];
  }
  if (i + 1 == bytes.size()) {
    uint32_t n = static_cast<uint8_t>(bytes[i]) << 16;
    out += table[(n >> 18) & 63];
    out += table[(n >> 12) & 63];
    out += "==";
  } else if (i + 2 == bytes.size()) {
    uint32_t n = (static_cast<uint8_t>(bytes[i]) << 16) | (static_cast<uint8_t>(bytes[i + 1]) << 8);
    out += table[(n >> 18) & 63];
    out += table[(n >> 12) & 63];
    out += table[(n >> 6) & 63];
    out += '=';
  }
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string redact(std::string text, const std::vector<std::string>& secrets) {
  for (const auto& secret : secrets) {
    if (secret.size() < 3)
      continue;
    for (auto pos = text.find(secret); pos != std::string::npos;
         pos = text.find(secret, pos + 3))
      text.replace(pos, secret.size(), "***");
  }
  // Connection-string style "PWD=value;" and "password=value".
  for (std::string_view key : {"pwd=", "password="}) {
    std::size_t from = 0;
    for (;;) {
      auto low = lower(text);
      auto pos = low.find(key, from);
      if (pos == std::string::npos)
        break;
      auto start = pos + key.size();
      std::size_t end;
      if (start < text.size() && text[start] == '{') {
        end = text.find('}', start);
        end = end == std::string::npos ? text.size() : end + 1;
      } else {
        end = text.find_first_of("; ", start);
        if (end == std::string::npos)
          end = text.size();
      }
      text.replace(start, end - start, "***");
      from = start + 3;
    }
  }
  return text;
}

} // namespace stepflow::connectors::sql
