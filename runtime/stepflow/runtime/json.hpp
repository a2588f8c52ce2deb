#pragma once
// JSON at the edges of the runtime: Boost.JSON is the mutable value type for
// definitions and step data; parsing reports file, line and column.
#include <string>
#include <string_view>

#include <boost/json/value.hpp>

#include "stepflow/runtime/errc.hpp"

namespace stepflow {

namespace json = boost::json;

/// Parses `text`. On failure returns errc::bad_json with the sentence
/// "<source>: line L, column C: <problem>".
caf::expected<json::value> parse_json(std::string_view text,
                                      std::string_view source);

/// Reads a whole file. errc::io_error names the path and the OS reason.
caf::expected<std::string> read_file(const std::string& path);

/// Writes a whole file atomically (temp file + rename).
caf::error write_file(const std::string& path, std::string_view content);

/// Reads and parses a JSON file.
caf::expected<json::value> load_json_file(const std::string& path);

/// Compact serialisation.
std::string to_json(const json::value& v);

/// Compact serialisation for people and API clients: like to_json, but
/// numbers print as plain decimals ("0.000266", not "2.66E-4").
std::string to_display_json(const json::value& v);

/// Indented serialisation for people (two spaces).
std::string to_pretty_json(const json::value& v);

/// Plain-text form of a scalar for string interpolation: strings unquoted,
/// null as "", everything else as compact JSON.
std::string to_text(const json::value& v);

/// A JSON-quoted string ("steps[2].name" paths quote names with this).
std::string quote_json(std::string_view s);

/// Appends `s` to `out` as a JSON string literal (quotes, escapes for '"',
/// '\\' and control characters; other bytes, UTF-8 included, as they are).
void append_json_string(std::string& out, std::string_view s);

} // namespace stepflow
