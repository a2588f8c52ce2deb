#include "stepflow/runtime/errc.hpp"

#include <string>

#include <caf/sec.hpp>
#include <doctest/doctest.h>

using namespace stepflow;

TEST_CASE("make_error keeps the code and the sentence") {
  auto err = make_error(errc::not_found, "application \"x\" is not known");
  CHECK(static_cast<bool>(err));
  CHECK(code_of(err) == errc::not_found);
  CHECK(message_of(err) == "application \"x\" is not known");
  CHECK(err.category() == caf::atom("stepflow"));
}

TEST_CASE("every code keeps its identity through make_error") {
  for (auto c : {errc::bad_json, errc::io_error, errc::invalid_definition, errc::not_found,
                 errc::missing_variables, errc::bad_reference, errc::step_failed, errc::timeout,
                 errc::cancelled, errc::store_error, errc::http_error, errc::invalid_argument,
                 errc::already_exists, errc::internal}) {
    CAPTURE(to_string(c));
    auto err = make_error(c, "why");
    CHECK(code_of(err) == c);
    CHECK(message_of(err) == "why");
  }
}

TEST_CASE("codes have their enum names") {
  CHECK(to_string(errc::none) == "none");
  CHECK(to_string(errc::bad_json) == "bad_json");
  CHECK(to_string(errc::missing_variables) == "missing_variables");
  CHECK(to_string(errc::bad_reference) == "bad_reference");
  CHECK(to_string(errc::already_exists) == "already_exists");
  CHECK(to_string(errc::internal) == "internal");
}

TEST_CASE("no error has code none and an empty message") {
  caf::error none;
  CHECK(code_of(none) == errc::none);
  CHECK(message_of(none).empty());
}

TEST_CASE("a stepflow error without a sentence is described by its code name") {
  caf::error err{errc::timeout};
  CHECK(code_of(err) == errc::timeout);
  CHECK(message_of(err) == "timeout");
}

TEST_CASE("a foreign error has code internal and CAF's rendering as message") {
  auto err = caf::make_error(caf::sec::request_timeout);
  CHECK(code_of(err) == errc::internal);
  auto msg = message_of(err);
  CAPTURE(msg);
  CHECK(msg.find("request_timeout") != std::string::npos);
}

TEST_CASE("an error survives being copied into an expected") {
  caf::expected<int> r = make_error(errc::io_error, "disk gone");
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::io_error);
  CHECK(message_of(r.error()) == "disk gone");
}
