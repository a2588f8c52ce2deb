#include "stepflow/runtime/histogram.hpp"

#include <numeric>

#include <doctest/doctest.h>

using namespace stepflow;
using std::chrono::microseconds;

TEST_CASE("a duration lands in the smallest bucket that holds it; the last takes the rest") {
  duration_histogram h;
  h.record(microseconds(0));      // le_1
  h.record(microseconds(1000));   // le_1: bounds are inclusive
  h.record(microseconds(1001));   // le_2
  h.record(microseconds(15'000)); // le_20
  h.record(microseconds(500'000)); // le_500
  h.record(microseconds(500'001)); // more
  h.record(microseconds(60'000'000)); // more
  auto c = h.counts();
  CHECK(c[0] == 2);
  CHECK(c[1] == 1);
  CHECK(c[4] == 1);
  CHECK(c[8] == 1);
  CHECK(c[9] == 2);
  CHECK(std::accumulate(c.begin(), c.end(), uint64_t{0}) == 7);
  CHECK(duration_bucket_name(0) == "le_1");
  CHECK(duration_bucket_name(8) == "le_500");
  CHECK(duration_bucket_name(9) == "more");
}
