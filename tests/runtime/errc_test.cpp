#include <doctest/doctest.h>
TEST_CASE("placeholder errc") { CHECK(true); }
