#pragma once
// PowerFlow's numeric log levels: 10 debug, 20 info, 30 warning, 40 error.
#include <optional>
#include <string_view>

namespace stepflow {

namespace log_level {
inline constexpr int debug = 10;
inline constexpr int info = 20;
inline constexpr int warning = 30;
inline constexpr int error = 40;
} // namespace log_level

/// "debug" | "info" | "warning" | "error" (any case) or "10".."40".
std::optional<int> parse_log_level(std::string_view text) noexcept;

/// "debug", "info", "warning" or "error" (rounding down to the nearest level).
std::string_view log_level_name(int level) noexcept;

} // namespace stepflow
