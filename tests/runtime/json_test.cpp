#include "stepflow/runtime/json.hpp"

#include <filesystem>
#include <string>

#include <doctest/doctest.h>

#include "support/temp_dir.hpp"

using namespace stepflow;
using stepflow::test::temp_dir;

namespace {

json::value doc(std::string_view text) {
  auto v = parse_json(text, "test");
  REQUIRE_MESSAGE(v, message_of(v.error()));
  return std::move(*v);
}

std::string parse_error(std::string_view text, std::string_view source = "apps/x.json") {
  auto v = parse_json(text, source);
  REQUIRE_FALSE(v);
  CHECK(code_of(v.error()) == errc::bad_json);
  return message_of(v.error());
}

bool starts_with(const std::string& s, std::string_view prefix) {
  return s.rfind(prefix, 0) == 0;
}

} // namespace

// -- parse_json ------------------------------------------------------------------

TEST_CASE("parse_json reads a document") {
  auto v = doc(R"({"a": [1, 2.5, "x", true, null], "b": {}})");
  CHECK(v.at("a").at(0) == 1);
  CHECK(v.at("a").at(1) == 2.5);
  CHECK(v.at("a").at(2) == "x");
  CHECK(v.at("b").as_object().empty());
  CHECK(doc("  42 \n") == 42);
}

TEST_CASE("a parse error names the source, line and column") {
  auto msg = parse_error("{\n  \"a\": 1,\n  \"b\": ]\n}");
  CAPTURE(msg);
  CHECK(starts_with(msg, "apps/x.json: line 3, column 8: invalid JSON ("));
}

TEST_CASE("a parse error on the first line counts columns from one") {
  auto msg = parse_error("[1, 2,, 3]");
  CAPTURE(msg);
  CHECK(starts_with(msg, "apps/x.json: line 1, column 7: invalid JSON ("));
}

TEST_CASE("a truncated document is an error at its end") {
  auto msg = parse_error("{\"a\": [1,\n2");
  CAPTURE(msg);
  CHECK(starts_with(msg, "apps/x.json: line 2, column 2: invalid JSON ("));
}

TEST_CASE("text after the document is an error where it starts") {
  auto msg = parse_error("{}\n  x");
  CAPTURE(msg);
  CHECK(starts_with(msg, "apps/x.json: line 2, column 3: invalid JSON ("));
}

TEST_CASE("an empty document is reported as empty") {
  CHECK(parse_error("") == "apps/x.json: line 1, column 1: invalid JSON (the document is empty)");
  auto msg = parse_error(" \n ");
  CHECK(msg.find("(the document is empty)") != std::string::npos);
}

TEST_CASE("invalid UTF-8 is rejected") {
  parse_error("\"\xff\"");
}

// -- files ---------------------------------------------------------------------------

TEST_CASE("read_file on a missing file is an io_error naming the path") {
  temp_dir dir;
  auto path = dir.file("nope.json");
  auto r = read_file(path);
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::io_error);
  auto msg = message_of(r.error());
  CHECK(starts_with(msg, path + ": cannot read file ("));
  CHECK(msg.find("No such file or directory") != std::string::npos);
}

TEST_CASE("read_file returns the whole file byte for byte") {
  temp_dir dir;
  std::string content("line1\nline2\r\n\0binary", 20);
  auto path = dir.write("f.bin", content);
  auto r = read_file(path);
  REQUIRE(r);
  CHECK(*r == content);
}

TEST_CASE("write_file writes and replaces a file without leaving a temp file") {
  temp_dir dir;
  auto path = dir.file("out.json");
  REQUIRE_FALSE(write_file(path, "first"));
  REQUIRE_FALSE(write_file(path, "second"));
  auto r = read_file(path);
  REQUIRE(r);
  CHECK(*r == "second");
  size_t files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path()))
    ++files;
  CHECK(files == 1);
}

TEST_CASE("write_file into a missing directory is an io_error naming the path") {
  temp_dir dir;
  auto path = dir.file("no/such/dir/out.json");
  auto err = write_file(path, "x");
  REQUIRE(err);
  CHECK(code_of(err) == errc::io_error);
  CHECK(starts_with(message_of(err), path + ": "));
}

TEST_CASE("write_file leaves the old content when it cannot replace the file") {
  temp_dir dir;
  // The target is a non-empty directory: rename over it must fail.
  dir.write("target/inside.txt", "x");
  auto err = write_file(dir.file("target"), "new");
  REQUIRE(err);
  CHECK(code_of(err) == errc::io_error);
  CHECK(std::filesystem::is_directory(dir.file("target")));
  CHECK_FALSE(std::filesystem::exists(dir.file("target.tmp")));
}

TEST_CASE("load_json_file reads and parses, naming the file in errors") {
  temp_dir dir;
  auto good = dir.write("good.json", R"({"k": "v"})");
  auto v = load_json_file(good);
  REQUIRE(v);
  CHECK(v->at("k") == "v");
  auto bad = dir.write("bad.json", "{\"k\": }");
  auto e = load_json_file(bad);
  REQUIRE_FALSE(e);
  CHECK(code_of(e.error()) == errc::bad_json);
  CHECK(starts_with(message_of(e.error()), bad + ": line 1, column 7"));
  auto missing = load_json_file(dir.file("missing.json"));
  REQUIRE_FALSE(missing);
  CHECK(code_of(missing.error()) == errc::io_error);
}

// -- serialisation -----------------------------------------------------------------

TEST_CASE("to_json is compact and parses back to the same value") {
  auto v = doc(R"({ "a" : [ 1 , "two" , null ], "b": { "c": true } })");
  auto text = to_json(v);
  CHECK(text == R"({"a":[1,"two",null],"b":{"c":true}})");
  CHECK(doc(text) == v);
}

TEST_CASE("to_text gives strings unquoted, null as empty and others as compact JSON") {
  CHECK(to_text(json::value("plain \"text\"")) == "plain \"text\"");
  CHECK(to_text(json::value(nullptr)).empty());
  CHECK(to_text(json::value(42)) == "42");
  CHECK(to_text(json::value(-7)) == "-7");
  CHECK(to_text(json::value(true)) == "true");
  CHECK(to_text(json::value(2.5)) == "2.5");
  CHECK(to_text(json::value(3.0)) == "3");
  CHECK(to_text(json::value(0.000266)) == "0.000266");
  CHECK(to_text(doc(R"({"a": [1, "x"]})")) == R"({"a":[1,"x"]})");
  CHECK(to_text(doc("[]")) == "[]");
}

TEST_CASE("quote_json quotes and escapes a string") {
  CHECK(quote_json("Post Incident") == "\"Post Incident\"");
  CHECK(quote_json("say \"hi\"\n") == R"("say \"hi\"\n")");
  CHECK(quote_json("back\\slash") == R"("back\\slash")");
  CHECK(quote_json("") == "\"\"");
}

TEST_CASE("to_pretty_json indents with two spaces") {
  auto v = doc(R"({"name": "x", "list": [1, {"k": null}], "empty": {}, "none": []})");
  CHECK(to_pretty_json(v) ==
        "{\n"
        "  \"name\": \"x\",\n"
        "  \"list\": [\n"
        "    1,\n"
        "    {\n"
        "      \"k\": null\n"
        "    }\n"
        "  ],\n"
        "  \"empty\": {},\n"
        "  \"none\": []\n"
        "}");
  CHECK(doc(to_pretty_json(v)) == v);
}

TEST_CASE("to_pretty_json writes doubles in their shortest form") {
  CHECK(to_pretty_json(doc("[0.000266, 1.5, 1e300]")) == "[\n  0.000266,\n  1.5,\n  1e+300\n]");
  CHECK(to_pretty_json(json::value("a\"b")) == R"("a\"b")");
  CHECK(to_pretty_json(json::value(7)) == "7");
}

TEST_CASE("quote_json escapes like the JSON serializer and keeps UTF-8 as it is") {
  for (std::string_view text : {"", "plain", "a \"quoted\" word", "back\\slash", "\b\f\n\r\t",
                                "\x01\x1f \x7f", "caf\xc3\xa9 \xe2\x82\xac", "end\\"}) {
    auto quoted = quote_json(text);
    auto back = parse_json(quoted, "quoted");
    REQUIRE_MESSAGE(back, quoted);
    REQUIRE(back->is_string());
    CHECK(std::string_view(back->get_string()) == text);
    CHECK(quoted == to_json(json::value(json::string_view(text.data(), text.size()))));
  }
  std::string s = "x=";
  append_json_string(s, "\n");
  CHECK(s == "x=\"\\n\"");
}
