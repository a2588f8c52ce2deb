#include <doctest/doctest.h>
TEST_CASE("placeholder run_record") { CHECK(true); }
