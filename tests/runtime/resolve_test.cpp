#include "stepflow/runtime/resolve.hpp"

#include <map>
#include <string>
#include <vector>

#include <doctest/doctest.h>

using namespace stepflow;

namespace {

json::value doc(std::string_view text) {
  auto v = parse_json(text, "test");
  REQUIRE_MESSAGE(v, message_of(v.error()));
  return std::move(*v);
}

/// A lookup over a fixed table that walks dotted paths and records the
/// references it was asked for.
struct table_lookup {
  json::object values;
  std::vector<std::string> asked;

  ref_lookup fn() {
    return [this](std::string_view ref) -> caf::expected<json::value> {
      asked.emplace_back(ref);
      auto dot = ref.find('.');
      auto head = ref.substr(0, dot);
      auto it = values.find(head);
      if (it == values.end())
        return make_error(errc::bad_reference, "unknown " + std::string(ref));
      if (dot == std::string_view::npos)
        return it->value();
      auto* sub = walk_path(it->value(), ref.substr(dot + 1));
      if (!sub)
        return make_error(errc::bad_reference, "no path " + std::string(ref));
      return *sub;
    };
  }
};

table_lookup sample() {
  table_lookup t;
  t.values = doc(R"({"port": 8080, "ratio": 0.5, "on": true, "nothing": null, "host": "sl1",
                     "creds": {"user": "em7admin", "pw": "x"},
                     "list": [{"id": 7}, {"id": 8}]})")
               .as_object();
  return t;
}

json::value resolved(std::string_view text, table_lookup& t) {
  auto r = resolve_refs(doc(text), t.fn());
  REQUIRE_MESSAGE(r, message_of(r.error()));
  return std::move(*r);
}

configuration config_of(std::string_view text) {
  auto cfg = parse_configuration(doc(text), "test", "cfg");
  REQUIRE_MESSAGE(cfg, message_of(cfg.error()));
  return std::move(*cfg);
}

} // namespace

// -- resolve_refs --------------------------------------------------------------

TEST_CASE("a string that is exactly one reference keeps a number's JSON type") {
  auto t = sample();
  auto v = resolved(R"("${port}")", t);
  CHECK(v.is_int64());
  CHECK(v == 8080);
  CHECK(resolved(R"("${ratio}")", t) == 0.5);
  CHECK(resolved(R"("${on}")", t) == true);
  CHECK(resolved(R"("${nothing}")", t).is_null());
}

TEST_CASE("a string that is exactly one reference keeps an object's JSON type") {
  auto t = sample();
  CHECK(resolved(R"("${creds}")", t) == doc(R"({"user": "em7admin", "pw": "x"})"));
}

TEST_CASE("blanks inside a whole-string reference are ignored") {
  auto t = sample();
  CHECK(resolved(R"("${ port }")", t) == 8080);
  CHECK(t.asked == std::vector<std::string>{"port"});
}

TEST_CASE("a reference embedded in text is replaced by the value's text") {
  auto t = sample();
  CHECK(resolved(R"("http://${host}:${port}/api")", t) == "http://sl1:8080/api");
  CHECK(resolved(R"("ratio=${ratio} on=${on} none=[${nothing}]")", t)
        == "ratio=0.5 on=true none=[]");
  CHECK(resolved(R"("user ${creds.user}")", t) == "user em7admin");
}

TEST_CASE("an object embedded in text is written as compact JSON") {
  auto t = sample();
  CHECK(resolved(R"("c=${list.0}")", t) == R"(c={"id":7})");
}

TEST_CASE("two adjacent references form text, not one typed value") {
  auto t = sample();
  auto v = resolved(R"("${port}${port}")", t);
  CHECK(v == "80808080");
}

TEST_CASE("a double dollar escapes a literal reference") {
  auto t = sample();
  CHECK(resolved(R"("$${host}")", t) == "${host}");
  CHECK(resolved(R"("cost: $${port} is ${port}")", t) == "cost: ${port} is 8080");
  CHECK(t.asked == std::vector<std::string>{"port"});
}

TEST_CASE("text without references is returned unchanged and no lookup happens") {
  auto t = sample();
  CHECK(resolved(R"("plain $ text {}")", t) == "plain $ text {}");
  CHECK(resolved("42", t) == 42);
  CHECK(resolved("null", t).is_null());
  CHECK(t.asked.empty());
}

TEST_CASE("references are resolved through nested objects and arrays, keys untouched") {
  auto t = sample();
  auto v = resolved(R"({"${host}": {"auth": ["${creds.user}", "${port}", 1],
                                     "url": "https://${host}/"}})",
                    t);
  CHECK(v == doc(R"({"${host}": {"auth": ["em7admin", 8080, 1], "url": "https://sl1/"}})"));
}

TEST_CASE("an unterminated reference is a bad_reference error quoting the text") {
  auto t = sample();
  auto r = resolve_refs(doc(R"("abc ${host")"), t.fn());
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::bad_reference);
  CHECK(message_of(r.error()) == R"(unterminated reference in "abc ${host")");
}

TEST_CASE("an empty reference is a bad_reference error") {
  auto t = sample();
  auto r = resolve_refs(doc(R"("a ${} b")"), t.fn());
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::bad_reference);
  CHECK(message_of(r.error()) == R"(empty reference in "a ${} b")");
}

TEST_CASE("a failing lookup's error is passed through from deep inside a document") {
  auto t = sample();
  auto r = resolve_refs(doc(R"({"a": [1, {"b": "x ${missing} y"}]})"), t.fn());
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::bad_reference);
  CHECK(message_of(r.error()) == "unknown missing");
  auto whole = resolve_refs(doc(R"(["${missing}"])"), t.fn());
  REQUIRE_FALSE(whole);
  CHECK(message_of(whole.error()) == "unknown missing");
}

// -- has_refs -------------------------------------------------------------------

TEST_CASE("has_refs finds references anywhere in a value") {
  CHECK(has_refs(doc(R"("${a}")")));
  CHECK(has_refs(doc(R"({"x": [1, {"y": "pre ${a.b} post"}]})")));
  CHECK_FALSE(has_refs(doc(R"({"${a}": 1})"))); // keys are not resolved
  CHECK_FALSE(has_refs(doc(R"({"x": [1, "$ {a}", "{a}", null, true]})")));
  CHECK_FALSE(has_refs(doc("3")));
}

// -- walk_path -------------------------------------------------------------------

TEST_CASE("walk_path walks into objects and into arrays by index") {
  auto v = doc(R"({"a": {"b": [10, {"c": "deep"}]}, "n": 1})");
  REQUIRE(walk_path(v, "a.b.0"));
  CHECK(*walk_path(v, "a.b.0") == 10);
  REQUIRE(walk_path(v, "a.b.1.c"));
  CHECK(*walk_path(v, "a.b.1.c") == "deep");
  CHECK(walk_path(v, "") == &v);
  auto arr = doc(R"([[1, 2], [3, 4]])");
  REQUIRE(walk_path(arr, "1.0"));
  CHECK(*walk_path(arr, "1.0") == 3);
}

TEST_CASE("walk_path answers null for missing keys, bad indexes and scalars") {
  auto v = doc(R"({"a": {"b": [10, 20]}, "n": 1})");
  CHECK(walk_path(v, "x") == nullptr);
  CHECK(walk_path(v, "a.b.2") == nullptr);
  CHECK(walk_path(v, "a.b.-1") == nullptr);
  CHECK(walk_path(v, "a.b.first") == nullptr);
  CHECK(walk_path(v, "a.b.") == nullptr);
  CHECK(walk_path(v, "n.x") == nullptr);
}

// -- resolve_configuration ----------------------------------------------------------

TEST_CASE("resolve_configuration returns every entry by name") {
  auto cfg = config_of(R"({"name": "c", "configuration_data": [
    {"name": "host", "value": "sl1"}, {"name": "port", "value": 443},
    {"name": "creds", "value": {"user": "u"}}]})");
  auto r = resolve_configuration(cfg);
  REQUIRE_MESSAGE(r, message_of(r.error()));
  CHECK(json::value(*r) == doc(R"({"host": "sl1", "port": 443, "creds": {"user": "u"}})"));
}

TEST_CASE("resolve_configuration follows a chain a to b to c regardless of order") {
  auto cfg = config_of(R"({"name": "c", "configuration_data": [
    {"name": "a", "value": "https://${config.b}/api"},
    {"name": "b", "value": "${config.c}:${config.port}"},
    {"name": "c", "value": "sl1"},
    {"name": "port", "value": 443},
    {"name": "p", "value": "${config.port}"},
    {"name": "user", "value": "${config.creds.user}"},
    {"name": "creds", "value": {"user": "admin"}}]})");
  auto r = resolve_configuration(cfg);
  REQUIRE_MESSAGE(r, message_of(r.error()));
  CHECK(r->at("a") == "https://sl1:443/api");
  CHECK(r->at("b") == "sl1:443");
  CHECK(r->at("c") == "sl1");
  CHECK(r->at("p") == 443);
  CHECK(r->at("user") == "admin");
}

TEST_CASE("resolve_configuration reports a cycle naming the chain") {
  auto cfg = config_of(R"({"name": "loop", "configuration_data": [
    {"name": "ok", "value": 1},
    {"name": "a", "value": "${config.b}"},
    {"name": "b", "value": "x${config.c}"},
    {"name": "c", "value": {"deep": ["${config.a}"]}}]})");
  auto r = resolve_configuration(cfg);
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::bad_reference);
  CHECK(message_of(r.error())
        == R"(configuration "loop": ${config...} references form a cycle: a -> b -> c -> a)");
}

TEST_CASE("resolve_configuration reports an entry referring to itself") {
  auto cfg = config_of(R"({"name": "self", "configuration_data": [
    {"name": "a", "value": "${config.a}"}]})");
  auto r = resolve_configuration(cfg);
  REQUIRE_FALSE(r);
  CHECK(message_of(r.error())
        == R"(configuration "self": ${config...} references form a cycle: a -> a)");
}

TEST_CASE("resolve_configuration reports an unknown entry naming the referring entry") {
  auto cfg = config_of(R"({"name": "c", "configuration_data": [
    {"name": "host", "value": "sl1"},
    {"name": "url", "value": "https://${config.zzz}/"}]})");
  auto r = resolve_configuration(cfg);
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::bad_reference);
  CHECK(message_of(r.error())
        == R"(configuration "c": entry "url" refers to ${config.zzz}, which does not exist)");
}

TEST_CASE("resolve_configuration reports a missing path inside an entry") {
  auto cfg = config_of(R"({"name": "c", "configuration_data": [
    {"name": "creds", "value": {"user": "u"}},
    {"name": "pw", "value": "${config.creds.password}"}]})");
  auto r = resolve_configuration(cfg);
  REQUIRE_FALSE(r);
  CHECK(message_of(r.error())
        == R"(configuration "c": entry "pw" refers to ${config.creds.password}, which does not exist)");
}

TEST_CASE("resolve_configuration leaves non-config references for the run") {
  auto cfg = config_of(R"({"name": "c", "configuration_data": [
    {"name": "region", "value": "${region}"},
    {"name": "url", "value": "https://${config.host}/${region}"},
    {"name": "host", "value": "sl1"}]})");
  auto r = resolve_configuration(cfg);
  REQUIRE_MESSAGE(r, message_of(r.error()));
  CHECK(r->at("region") == "${region}");
  CHECK(r->at("url") == "https://sl1/${region}");
}
