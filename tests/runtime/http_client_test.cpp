#include <doctest/doctest.h>
TEST_CASE("placeholder http_client") { CHECK(true); }
