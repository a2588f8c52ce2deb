#include "stepflow/runtime/clock.hpp"

#include <chrono>
#include <ctime>
#include <string>

namespace stepflow {

namespace {
class system_clock_impl final : public clock_source {
public:
  int64_t now_ns() const noexcept override {
    using namespace std::chrono;
    return duration_cast<nanoseconds>(system_clock::now().time_since_epoch())
      .count();
  }
};
} // namespace

const clock_source& system_clock() noexcept {
  static const system_clock_impl instance;
  return instance;
}

std::string format_time(int64_t ns) {
  if (ns <= 0)
    return {};
  std::time_t secs = static_cast<std::time_t>(ns / 1'000'000'000);
  int ms = static_cast<int>((ns / 1'000'000) % 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                tm.tm_min, tm.tm_sec, ms);
  return buf;
}

} // namespace stepflow
