#pragma once
// Pure text helpers of the SQL connector: identifier validation, the
// named-placeholder rewriter, the decimal rule, base64 and redaction. No
// library calls; unit-tested without a server.
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "sql/sql_backend.hpp"
#include "stepflow/runtime/errc.hpp"
#include "stepflow/runtime/json.hpp"

namespace stepflow::connectors::sql {

/// True for a plain identifier: an ASCII letter or '_', then letters,
/// digits, '_' or '$'; at most 128 characters. Anything else (spaces,
/// quotes, dots, backticks, semicolons...) is rejected, never escaped.
bool plain_identifier(std::string_view name) noexcept;

/// `name` split at '.' into 1..max_parts plain identifiers
/// ("schema.table"); errc::invalid_argument naming `what` otherwise.
caf::expected<std::vector<std::string>> split_identifier(std::string_view name,
                                                         std::size_t max_parts,
                                                         std::string_view what);

/// A statement with its parameters in binding order.
struct bound_statement {
  std::string sql;
  std::vector<sql_param> params;
};

/// Rewrites `:name` placeholders to the dialect's positional ones ('?' or
/// '$n'), skipping string literals, quoted identifiers, comments, PostgreSQL
/// '::' casts and dollar-quoted strings, and orders the values of `named`
/// to match. A name missing from `named` is errc::invalid_argument.
caf::expected<bound_statement> bind_named(std::string_view sql, const json::object& named,
                                          driver_kind dialect, placeholder_style style);

/// The decimal rule for DECIMAL/NUMERIC text: a whole number that fits in
/// 64 bits becomes an integer; a value with at most 15 significant digits
/// becomes a double (exact to the digits shown); anything else, and text
/// that is not a plain decimal (NaN, Infinity), stays a string.
json::value decimal_value(std::string_view text);

/// Result-column names made unique: a repeated name becomes "name_2",
/// "name_3"... (JSON objects hold each key once).
std::vector<std::string> unique_column_names(const std::vector<std::string>& names);

/// Standard base64 with padding.
std::string base64(std::string_view bytes);

/// `text` with every occurrence of each secret (3 characters or longer,
/// and each PWD=/password= value) replaced by "***".
std::string redact(std::string text, const std::vector<std::string>& secrets);

/// Lower-case ASCII copy.
std::string lower(std::string_view s);

} // namespace stepflow::connectors::sql
