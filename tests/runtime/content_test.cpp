#include <doctest/doctest.h>
TEST_CASE("placeholder content") { CHECK(true); }
