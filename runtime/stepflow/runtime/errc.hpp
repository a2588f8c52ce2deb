#pragma once
// The project's one error enum. Every fallible function at a module or actor
// boundary returns caf::expected<T> or caf::error built from these codes; the
// error's context carries one human-readable sentence (see make_error).
#include <cstdint>
#include <string>
#include <string_view>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/make_message.hpp>
#include <caf/message.hpp>

namespace stepflow {

enum class errc : uint8_t {
  /// Not an error.
  none = 0,
  /// Malformed JSON text.
  bad_json,
  /// A file could not be read or written.
  io_error,
  /// A document parsed but does not describe a valid object (app, config...).
  invalid_definition,
  /// A name (application, configuration, step type, key) is not known.
  not_found,
  /// Required application variables were not supplied.
  missing_variables,
  /// A ${...} reference could not be resolved or is cyclic.
  bad_reference,
  /// A step reported failure.
  step_failed,
  /// A step exceeded its timeout.
  timeout,
  /// The operation was cancelled (run revoked, shutdown).
  cancelled,
  /// The storage engine failed.
  store_error,
  /// An outbound HTTP request failed at the transport level.
  http_error,
  /// A caller passed an invalid argument.
  invalid_argument,
  /// Something already exists (duplicate registration, duplicate name).
  already_exists,
  /// Internal invariant violated; a bug.
  internal,
  /// The service cannot take the request now (queue full, shutting down);
  /// the caller may retry later.
  unavailable,
  /// The operation conflicts with the current state (e.g. revoking a task
  /// that already ended).
  conflict,
};

std::string_view to_string(errc x) noexcept;

/// Builds a caf::error from `code` whose context is the sentence `what`.
caf::error make_error(errc code, std::string what);

/// The sentence stored by make_error, or a rendering of any other error.
std::string message_of(const caf::error& err);

/// The stepflow code of `err`, or errc::internal for foreign errors.
errc code_of(const caf::error& err) noexcept;

} // namespace stepflow

CAF_ERROR_CODE_ENUM(stepflow::errc, "stepflow")
