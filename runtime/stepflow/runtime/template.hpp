#pragma once
// A Jinja2-compatible template engine for PowerFlow Transform operators.
//
// Templates compile once to an immutable tree and render many times, also
// concurrently from several threads. Values follow Jinja2 3.x on Python 3
// (default Environment: autoescape off, trim_blocks and lstrip_blocks off,
// keep_trailing_newline off, the default lenient Undefined). Output of
// values uses Python's str(): True/False/None, float repr, ['a', 1],
// {'k': 'v'}. Errors are errc::invalid_argument with the sentence
// "<name>:<line>:<col>: <message>".
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "stepflow/runtime/json.hpp"

namespace stepflow {

/// Bounds that stop a runaway template with an error.
struct template_limits {
  /// Largest output (and largest string or list built while rendering).
  size_t max_output_bytes = 16u << 20;
  /// Loop iterations, range() sizes and filter steps over all of one render.
  size_t max_iterations = 10'000'000;
  /// Nesting of expression evaluation, macro calls and recursive loops.
  size_t max_depth = 200;
};

/// A parsed template; immutable, safe to render from several threads.
class compiled_template {
public:
  struct impl;
  explicit compiled_template(std::unique_ptr<const impl> p) noexcept;
  ~compiled_template();
  compiled_template(const compiled_template&) = delete;
  compiled_template& operator=(const compiled_template&) = delete;

  /// The name given to compile_template (used in error messages).
  const std::string& name() const noexcept;
  const impl& internals() const noexcept { return *impl_; }

private:
  std::unique_ptr<const impl> impl_;
};

/// Parses `source`; a syntax error is errc::invalid_argument naming
/// "<name>:<line>:<col>".
caf::expected<std::shared_ptr<const compiled_template>>
compile_template(std::string_view source, std::string_view name);

/// Renders with the top-level variables of `context`.
caf::expected<std::string> render(const compiled_template& tmpl, const json::object& context,
                                  const template_limits& limits = {});

/// A process-wide cache: compiles once per (name, source). Thread-safe.
caf::expected<std::shared_ptr<const compiled_template>>
cached_template(std::string_view source, std::string_view name);

} // namespace stepflow
