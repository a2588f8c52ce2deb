#include "stepflow/runtime/errc.hpp"

#include <caf/message.hpp>

namespace stepflow {

std::string_view to_string(errc x) noexcept {
  switch (x) {
    case errc::none: return "none";
    case errc::bad_json: return "bad_json";
    case errc::io_error: return "io_error";
    case errc::invalid_definition: return "invalid_definition";
    case errc::not_found: return "not_found";
    case errc::missing_variables: return "missing_variables";
    case errc::bad_reference: return "bad_reference";
    case errc::step_failed: return "step_failed";
    case errc::timeout: return "timeout";
    case errc::cancelled: return "cancelled";
    case errc::store_error: return "store_error";
    case errc::http_error: return "http_error";
    case errc::invalid_argument: return "invalid_argument";
    case errc::already_exists: return "already_exists";
    case errc::internal: return "internal";
    case errc::unavailable: return "unavailable";
    case errc::conflict: return "conflict";
  }
  return "unknown";
}

caf::error make_error(errc code, std::string what) {
  return caf::error{static_cast<uint8_t>(code), caf::atom("stepflow"),
                    caf::make_message(std::move(what))};
}

std::string message_of(const caf::error& err) {
  if (!err)
    return {};
  const auto& ctx = err.context();
  if (ctx.size() == 1 && ctx.match_element<std::string>(0))
    return ctx.get_as<std::string>(0);
  if (err.category() == caf::atom("stepflow"))
    return std::string{to_string(static_cast<errc>(err.code()))};
  return caf::to_string(err);
}

errc code_of(const caf::error& err) noexcept {
  if (!err)
    return errc::none;
  if (err.category() == caf::atom("stepflow"))
    return static_cast<errc>(err.code());
  return errc::internal;
}

} // namespace stepflow
