#pragma once
// ${...} references. Rules (docs/applications.md, "References"):
//  - ${config.NAME}    a value of the aligned configuration object;
//  - ${NAME}           an application variable (or one-time run parameter);
//  - a dotted tail walks into the value: ${config.creds.user}, ${var.0.id};
//  - a string that is exactly one reference takes the referenced JSON value
//    with its type; references inside longer text are replaced by their text;
//  - "$${" writes a literal "${".
// A reference to something that does not exist is an error naming it.
#include <functional>
#include <string>
#include <string_view>

#include "stepflow/runtime/json.hpp"
#include "stepflow/runtime/model.hpp"

namespace stepflow {

/// Answers one reference (the text between "${" and "}").
using ref_lookup = std::function<caf::expected<json::value>(std::string_view ref)>;

/// Replaces every reference in `v` (recursively through arrays and objects;
/// object keys are left alone).
caf::expected<json::value> resolve_refs(const json::value& v, const ref_lookup& lookup);

/// True if `v` contains a reference anywhere.
bool has_refs(const json::value& v);

/// Walks `path` ("a.b.0.c") into `v`; nullptr when a segment is missing.
const json::value* walk_path(const json::value& v, std::string_view path);

/// Resolves the configuration's ${config.x} references transitively.
/// Returns name -> value. Cycles and unknown names are errors naming the
/// entries involved; other references are left for the run to resolve.
caf::expected<json::object> resolve_configuration(const configuration& cfg);

} // namespace stepflow
