#include <doctest/doctest.h>
TEST_CASE("placeholder json") { CHECK(true); }
