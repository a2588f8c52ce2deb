#include "stepflow/runtime/log_level.hpp"

#include <algorithm>
#include <cctype>
#include <string>

namespace stepflow {

std::optional<int> parse_log_level(std::string_view text) noexcept {
  std::string s(text);
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  if (s == "debug" || s == "10")
    return log_level::debug;
  if (s == "info" || s == "informational" || s == "20")
    return log_level::info;
  if (s == "warning" || s == "warn" || s == "30")
    return log_level::warning;
  if (s == "error" || s == "40")
    return log_level::error;
  return std::nullopt;
}

std::string_view log_level_name(int level) noexcept {
  if (level >= log_level::error)
    return "error";
  if (level >= log_level::warning)
    return "warning";
  if (level >= log_level::info)
    return "info";
  return "debug";
}

} // namespace stepflow
