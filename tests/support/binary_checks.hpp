#pragma once
// doctest assertions on a finished run of the stepflow binary
// (binary_runner.hpp). Header-only: it uses doctest, which the test files
// link and the support library does not.
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "support/binary_runner.hpp"

namespace stepflow::test {

/// Requires that the run of `args` ended by itself and normally (not killed
/// by wait()'s time limit, not by a signal), and checks that its stderr
/// shows no crash ("terminate called") and no failed assertion. The messages
/// show the arguments, stdout and stderr.
inline void require_clean_exit(const binary_result& r, const std::vector<std::string>& args) {
  std::string joined;
  for (const auto& a : args)
    joined += (joined.empty() ? "" : " ") + a;
  INFO("args: " << joined);
  INFO("stdout: " << r.out);
  INFO("stderr: " << r.err);
  REQUIRE_MESSAGE(!r.timed_out, "the binary did not exit in time and was killed");
  REQUIRE_MESSAGE(r.exit_code >= 0,
                  "the binary did not exit normally (signal " << r.signal << ")");
  CHECK(r.err.find("terminate called") == std::string::npos);
  CHECK(r.err.find("Assertion") == std::string::npos);
}

} // namespace stepflow::test
