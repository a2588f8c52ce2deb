#include "stepflow/runtime/model.hpp"

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

application app_of(std::string_view text, std::string_view source = "apps/sync.json",
                   std::string_view default_id = "sync") {
  auto app = parse_application(doc(text), source, default_id);
  REQUIRE_MESSAGE(app, message_of(app.error()));
  return std::move(*app);
}

/// The error sentence of parsing `text` as an application (fails the test
/// when it parses).
std::string app_error(std::string_view text, std::string_view source = "apps/sync.json") {
  auto app = parse_application(doc(text), source, "sync");
  REQUIRE_FALSE(app);
  CHECK(code_of(app.error()) == errc::invalid_definition);
  return message_of(app.error());
}

configuration config_of(std::string_view text, std::string_view default_name = "cfg") {
  auto cfg = parse_configuration(doc(text), "configs/cfg.json", default_name);
  REQUIRE_MESSAGE(cfg, message_of(cfg.error()));
  return std::move(*cfg);
}

std::string config_error(std::string_view text) {
  auto cfg = parse_configuration(doc(text), "configs/cfg.json", "cfg");
  REQUIRE_FALSE(cfg);
  CHECK(code_of(cfg.error()) == errc::invalid_definition);
  return message_of(cfg.error());
}

using idx = std::vector<size_t>;

} // namespace

// -- application identity and fields -------------------------------------------

TEST_CASE("an application's id is its name key when present") {
  auto app = app_of(R"({"name": "real_id", "steps": [{"name": "A", "file": "Log"}]})",
                    "apps/file_stem.json", "file_stem");
  CHECK(app.id == "real_id");
}

TEST_CASE("an application without a name takes its id from the file stem") {
  auto app = app_of(R"({"steps": [{"name": "A", "file": "Log"}]})", "apps/file_stem.json",
                    "file_stem");
  CHECK(app.id == "file_stem");
}

TEST_CASE("an application with an empty name falls back to the file stem") {
  auto app = app_of(R"({"name": "", "steps": [{"name": "A", "file": "Log"}]})", "x.json",
                    "from_file");
  CHECK(app.id == "from_file");
}

TEST_CASE("an application with neither name nor default id is rejected") {
  auto app = parse_application(doc(R"({"steps": [{"name": "A", "file": "Log"}]})"), "x", "");
  REQUIRE_FALSE(app);
  CHECK(message_of(app.error()) == "x: name: the application has no name");
}

TEST_CASE("an application's descriptive fields are read and a numeric version is accepted") {
  auto app = app_of(R"({"name": "a", "friendly_name": "Sync Devices", "description": "d",
                        "author": "me", "version": 2, "configuration": "cfg1",
                        "steps": [{"name": "A", "file": "Log"}]})");
  CHECK(app.friendly_name == "Sync Devices");
  CHECK(app.description == "d");
  CHECK(app.author == "me");
  CHECK(app.version == "2");
  CHECK(app.configuration == "cfg1");
}

TEST_CASE("a non-string descriptive field is rejected naming its key") {
  CHECK(app_error(R"({"name": "a", "author": 5, "steps": [{"name": "A", "file": "Log"}]})")
        == "apps/sync.json: author: must be a string, not a number");
}

TEST_CASE("step parameters are every non-reserved key of the step object") {
  auto app = app_of(R"({"steps": [{"name": "A", "file": "QueryREST", "syncpack": "base_steps",
                                    "url": "http://x", "timeout": 5, "output_to": []}]})");
  REQUIRE(app.steps.size() == 1);
  const auto& s = app.steps[0];
  CHECK(s.name == "A");
  CHECK(s.file == "QueryREST");
  CHECK(s.syncpack == "base_steps");
  CHECK(s.params.size() == 2);
  CHECK(s.params.at("url") == "http://x");
  CHECK(s.params.at("timeout") == 5);
  CHECK(is_reserved_step_key("output_to"));
  CHECK(is_reserved_step_key("data_from"));
  CHECK_FALSE(is_reserved_step_key("url"));
}

TEST_CASE("step_index finds steps by name and answers -1 for unknown names") {
  auto app = app_of(R"({"steps": [{"name": "A", "file": "Log"}, {"name": "B", "file": "Log"}]})");
  CHECK(app.step_index("A") == 0);
  CHECK(app.step_index("B") == 1);
  CHECK(app.step_index("C") == -1);
}

// -- app_variables -------------------------------------------------------------

TEST_CASE("app_variables are parsed with value, sample and default values") {
  auto app = app_of(R"({"name": "a",
    "app_variables": [
      {"name": "region", "description": "where", "required": true, "value": "eu",
       "sample_value": "us", "default_value": "eu-west"},
      {"name": "limit", "required": "True", "default_value": 10},
      {"name": "opt"}],
    "steps": [{"name": "A", "file": "Log"}]})");
  REQUIRE(app.app_variables.size() == 3);
  const auto& r = app.app_variables[0];
  CHECK(r.name == "region");
  CHECK(r.description == "where");
  CHECK(r.required);
  CHECK(r.value == "eu");
  CHECK(r.sample_value == "us");
  CHECK(r.default_value == "eu-west");
  CHECK(app.app_variables[1].required);
  CHECK(app.app_variables[1].value.is_null());
  CHECK(app.app_variables[1].default_value == 10);
  CHECK_FALSE(app.app_variables[2].required);
  CHECK(app.app_variables[2].value.is_null());
}

TEST_CASE("app_variables that are not a list are rejected") {
  CHECK(app_error(R"({"app_variables": {}, "steps": [{"name": "A", "file": "Log"}]})")
        == "apps/sync.json: app_variables: must be a list, not an object");
}

TEST_CASE("an app variable that is not an object is rejected naming its index") {
  CHECK(app_error(R"({"app_variables": [{"name": "x"}, 3],
                      "steps": [{"name": "A", "file": "Log"}]})")
        == "apps/sync.json: app_variables[1]: must be an object, not a number");
}

TEST_CASE("duplicate and unnamed app variables are rejected") {
  CHECK(app_error(R"({"app_variables": [{"name": "x"}, {"name": "x"}],
                      "steps": [{"name": "A", "file": "Log"}]})")
        == R"(apps/sync.json: app_variables[1].name: duplicate variable name "x")");
  CHECK(app_error(R"({"app_variables": [{"description": "no name"}],
                      "steps": [{"name": "A", "file": "Log"}]})")
        == "apps/sync.json: app_variables[0].name: a variable needs a non-empty name");
}

TEST_CASE("a variable's required flag must be a boolean") {
  CHECK(app_error(R"({"app_variables": [{"name": "x", "required": 1}],
                      "steps": [{"name": "A", "file": "Log"}]})")
        == "apps/sync.json: app_variables[0].required: must be true or false");
}

// -- shape errors name the JSON path ---------------------------------------------

TEST_CASE("an application document that is not an object is rejected") {
  CHECK(app_error("[1, 2]") == "apps/sync.json: an application must be a JSON object, not an array");
}

TEST_CASE("an application without steps is rejected naming the steps key") {
  CHECK(app_error(R"({"name": "a"})")
        == "apps/sync.json: steps: missing: an application needs a list of steps");
}

TEST_CASE("steps that are not a list are rejected naming the steps key") {
  CHECK(app_error(R"({"name": "a", "steps": {"name": "A"}})")
        == "apps/sync.json: steps: must be a list, not an object");
}

TEST_CASE("an empty step list is rejected") {
  CHECK(app_error(R"({"name": "a", "steps": []})")
        == "apps/sync.json: steps: an application needs at least one step");
}

TEST_CASE("a step that is not an object is rejected naming its index") {
  CHECK(app_error(R"({"steps": [{"name": "A", "file": "Log"}, "B"]})")
        == "apps/sync.json: steps[1]: a step must be an object, not a string");
}

TEST_CASE("a step without a name is rejected naming its path") {
  CHECK(app_error(R"({"steps": [{"file": "Log"}]})")
        == "apps/sync.json: steps[0].name: a step needs a non-empty name");
}

TEST_CASE("a step without a file is rejected naming its path and the step") {
  CHECK(app_error(R"({"steps": [{"name": "A", "file": "Log"}, {"name": "Fetch"}]})")
        == R"(apps/sync.json: steps[1].file: step "Fetch" needs a "file" naming its step type)");
}

TEST_CASE("a step name of the wrong type is rejected naming its path") {
  CHECK(app_error(R"({"steps": [{"name": 7, "file": "Log"}]})")
        == "apps/sync.json: steps[0].name: must be a string, not a number");
}

TEST_CASE("duplicate step names are rejected naming both positions") {
  CHECK(app_error(R"({"steps": [{"name": "X", "file": "Log"}, {"name": "Y", "file": "Log"},
                                {"name": "X", "file": "Log"}]})")
        == R"(apps/sync.json: steps[2].name: duplicate step name "X" (also steps[0]))");
}

// -- the step graph -------------------------------------------------------------

TEST_CASE("output_to naming a missing step is rejected with source, path and name") {
  CHECK(app_error(R"({"steps": [{"name": "A", "file": "Log"}, {"name": "B", "file": "Log"},
                                {"name": "C", "file": "Log", "output_to": ["Post Incident"]}]})")
        == R"(apps/sync.json: steps[2].output_to[0]: no step named "Post Incident")");
}

TEST_CASE("data_from naming a missing step is rejected with its path") {
  CHECK(app_error(R"({"steps": [{"name": "A", "file": "Log"},
                                {"name": "B", "file": "Log", "data_from": ["A", "Z"]}]})")
        == R"(apps/sync.json: steps[1].data_from[1]: no step named "Z")");
}

TEST_CASE("output_to of the wrong type or with an empty name is rejected") {
  CHECK(app_error(R"({"steps": [{"name": "A", "file": "Log", "output_to": 3}]})")
        == "apps/sync.json: steps[0].output_to: must be a list of step names, not a number");
  CHECK(app_error(R"({"steps": [{"name": "A", "file": "Log", "output_to": [""]}]})")
        == "apps/sync.json: steps[0].output_to[0]: must be a non-empty step name");
}

TEST_CASE("output_to edges become preds and succs") {
  auto app = app_of(R"({"steps": [{"name": "A", "file": "Log", "output_to": ["B", "C"]},
                                  {"name": "B", "file": "Log", "output_to": ["D"]},
                                  {"name": "C", "file": "Log", "output_to": ["D"]},
                                  {"name": "D", "file": "Log"}]})");
  CHECK(app.succs[0] == idx{1, 2});
  CHECK(app.succs[1] == idx{3});
  CHECK(app.succs[2] == idx{3});
  CHECK(app.succs[3].empty());
  CHECK(app.preds[0].empty());
  CHECK(app.preds[1] == idx{0});
  CHECK(app.preds[3] == idx{1, 2});
  CHECK(app.topo_order == idx{0, 1, 2, 3});
}

TEST_CASE("data_from edges point from the named step to the naming step") {
  auto app = app_of(R"({"steps": [{"name": "Load", "file": "Log", "data_from": ["Fetch"]},
                                  {"name": "Fetch", "file": "Log"}]})");
  CHECK(app.preds[0] == idx{1});
  CHECK(app.succs[1] == idx{0});
  CHECK(app.topo_order == idx{1, 0});
}

TEST_CASE("an edge given by both output_to and data_from is recorded once") {
  auto app = app_of(R"({"steps": [{"name": "A", "file": "Log", "output_to": ["B"]},
                                  {"name": "B", "file": "Log", "data_from": ["A"]}]})");
  CHECK(app.succs[0] == idx{1});
  CHECK(app.preds[1] == idx{0});
}

TEST_CASE("a single step name instead of a list is tolerated") {
  auto app = app_of(R"({"steps": [{"name": "A", "file": "Log", "output_to": "B"},
                                  {"name": "B", "file": "Log"}]})");
  CHECK(app.steps[0].output_to == std::vector<std::string>{"B"});
  CHECK(app.succs[0] == idx{1});
}

TEST_CASE("the topological order keeps file order between independent steps") {
  auto app = app_of(R"({"steps": [{"name": "C", "file": "Log", "data_from": ["B"]},
                                  {"name": "X", "file": "Log"},
                                  {"name": "B", "file": "Log"},
                                  {"name": "Y", "file": "Log"}]})");
  CHECK(app.topo_order == idx{1, 2, 0, 3});
}

TEST_CASE("a step feeding itself is rejected") {
  CHECK(app_error(R"({"steps": [{"name": "A", "file": "Log", "output_to": ["A"]}]})")
        == R"(apps/sync.json: steps[0].output_to[0]: step "A" cannot feed itself)");
  CHECK(app_error(R"({"steps": [{"name": "A", "file": "Log"},
                                {"name": "B", "file": "Log", "data_from": ["B"]}]})")
        == R"(apps/sync.json: steps[1].data_from[0]: step "B" cannot feed itself)");
}

TEST_CASE("a cycle is rejected naming the steps on it in order") {
  CHECK(app_error(R"({"steps": [{"name": "Start", "file": "Log", "output_to": ["A"]},
                                {"name": "A", "file": "Log", "output_to": ["B"]},
                                {"name": "B", "file": "Log", "output_to": ["C"]},
                                {"name": "C", "file": "Log", "output_to": ["A", "End"]},
                                {"name": "End", "file": "Log"}]})")
        == R"(apps/sync.json: steps: the steps form a cycle: "A" -> "B" -> "C" -> "A")");
}

TEST_CASE("a two-step cycle made with data_from is rejected") {
  CHECK(app_error(R"({"steps": [{"name": "A", "file": "Log", "data_from": ["B"]},
                                {"name": "B", "file": "Log", "data_from": ["A"]}]})")
        == R"(apps/sync.json: steps: the steps form a cycle: "A" -> "B" -> "A")");
}

TEST_CASE("a cycle downstream of other steps is reported without them") {
  // D is stuck behind the cycle but not on it.
  CHECK(app_error(R"({"steps": [{"name": "D", "file": "Log", "data_from": ["C"]},
                                {"name": "B", "file": "Log", "output_to": ["C"]},
                                {"name": "C", "file": "Log", "output_to": ["B"]}]})")
        == R"(apps/sync.json: steps: the steps form a cycle: "B" -> "C" -> "B")");
}

// -- to_json -------------------------------------------------------------------

TEST_CASE("unknown keys survive a to_json round trip") {
  auto app = app_of(R"({"name": "a", "x_custom": {"k": [1, 2]}, "meta": "m",
                        "steps": [{"name": "A", "file": "Log", "custom_param": true}]})");
  auto out = to_json(app);
  REQUIRE(out.is_object());
  CHECK(out.at("x_custom") == doc(R"({"k": [1, 2]})"));
  CHECK(out.at("meta") == "m");
  CHECK(out.at("steps").at(0).at("custom_param") == true);
  auto again = parse_application(out, "again", "other");
  REQUIRE(again);
  CHECK(again->id == "a");
  CHECK(to_json(*again) == out);
}

TEST_CASE("to_json sets the name of an application named by its file") {
  auto app = app_of(R"({"steps": [{"name": "A", "file": "Log"}]})", "apps/by_file.json",
                    "by_file");
  auto out = to_json(app);
  CHECK(out.at("name") == "by_file");
  auto again = parse_application(out, "stored", "");
  REQUIRE(again);
  CHECK(again->id == "by_file");
}

// -- configurations ---------------------------------------------------------------

TEST_CASE("a configuration in object form is parsed with its entries") {
  auto cfg = config_of(R"({"name": "prod", "friendly_name": "Production", "author": "me",
                           "version": "1.0", "description": "d",
                           "configuration_data": [
                             {"name": "host", "value": "sl1.example"},
                             {"name": "creds", "value": {"user": "u"}, "encrypted": false},
                             {"name": "password", "value": "secret", "encrypted": true},
                             {"name": "token", "value": "t", "encrypted": "true"},
                             {"name": "empty"}]})");
  CHECK(cfg.name == "prod");
  CHECK(cfg.friendly_name == "Production");
  CHECK(cfg.author == "me");
  CHECK(cfg.version == "1.0");
  CHECK(cfg.description == "d");
  REQUIRE(cfg.data.size() == 5);
  CHECK(cfg.data[0].name == "host");
  CHECK(cfg.data[0].value == "sl1.example");
  CHECK_FALSE(cfg.data[0].encrypted);
  CHECK(cfg.data[1].value == doc(R"({"user": "u"})"));
  CHECK_FALSE(cfg.data[1].encrypted);
  CHECK(cfg.data[2].encrypted);
  CHECK(cfg.data[3].encrypted);
  CHECK(cfg.data[4].value.is_null());
  REQUIRE(cfg.find("password") != nullptr);
  CHECK(cfg.find("password")->value == "secret");
  CHECK(cfg.find("nope") == nullptr);
}

TEST_CASE("a configuration without a name takes the default name") {
  auto cfg = config_of(R"({"configuration_data": []})", "from_file");
  CHECK(cfg.name == "from_file");
  CHECK(cfg.data.empty());
}

TEST_CASE("a configuration given as a bare array of entries is accepted") {
  auto cfg = config_of(R"([{"name": "a", "value": 1}, {"name": "b", "value": "x"}])",
                       "bare");
  CHECK(cfg.name == "bare");
  REQUIRE(cfg.data.size() == 2);
  CHECK(cfg.data[0].value == 1);
  CHECK(cfg.data[1].value == "x");
  auto out = to_json(cfg);
  CHECK(out.at("name") == "bare");
  CHECK(out.at("configuration_data").as_array().size() == 2);
  auto again = parse_configuration(out, "again", "other");
  REQUIRE(again);
  CHECK(again->name == "bare");
  CHECK(again->data.size() == 2);
}

TEST_CASE("duplicate configuration entries are rejected naming both positions") {
  CHECK(config_error(R"({"name": "c", "configuration_data": [
                          {"name": "a", "value": 1}, {"name": "b"}, {"name": "a"}]})")
        == R"(configs/cfg.json: configuration_data[2].name: duplicate entry "a" (also configuration_data[0]))");
}

TEST_CASE("configuration shape errors name the JSON path") {
  CHECK(config_error(R"({"name": "c"})")
        == "configs/cfg.json: configuration_data: missing: a configuration needs a list of "
           "{name, value} entries");
  CHECK(config_error(R"({"name": "c", "configuration_data": {}})")
        == "configs/cfg.json: configuration_data: must be a list, not an object");
  CHECK(config_error(R"({"name": "c", "configuration_data": [{"name": "a"}, 5]})")
        == "configs/cfg.json: configuration_data[1]: must be an object, not a number");
  CHECK(config_error(R"({"name": "c", "configuration_data": [{"value": 1}]})")
        == "configs/cfg.json: configuration_data[0].name: an entry needs a non-empty name");
  CHECK(config_error(R"({"name": "c", "configuration_data": [{"name": "a", "encrypted": 1}]})")
        == "configs/cfg.json: configuration_data[0].encrypted: must be true or false");
  CHECK(config_error("\"text\"")
        == "configs/cfg.json: a configuration must be a JSON object, not a string");
}

TEST_CASE("unknown configuration keys survive to_json") {
  auto cfg = config_of(R"({"name": "c", "extra": [1], "configuration_data": [
                             {"name": "a", "value": 1, "note": "kept"}]})");
  auto out = to_json(cfg);
  CHECK(out.at("extra") == doc("[1]"));
  CHECK(out.at("configuration_data").at(0).at("note") == "kept");
}

// -- files ---------------------------------------------------------------------

TEST_CASE("file_stem strips the directory and the .json extension") {
  CHECK(file_stem("apps/sync_devices.json") == "sync_devices");
  CHECK(file_stem("/a/b/c.json") == "c");
  CHECK(file_stem("plain") == "plain");
  CHECK(file_stem("dir/x.yaml") == "x.yaml");
  CHECK(file_stem("a.json.json") == "a.json");
}

TEST_CASE("load_application_file names the application after the file when unnamed") {
  temp_dir dir;
  auto path = dir.write("apps/my_app.json", R"({"steps": [{"name": "A", "file": "Log"}]})");
  auto app = load_application_file(path);
  REQUIRE_MESSAGE(app, message_of(app.error()));
  CHECK(app->id == "my_app");
}

TEST_CASE("load_application_file errors name the file") {
  temp_dir dir;
  auto path = dir.write("bad.json", R"({"steps": 3})");
  auto app = load_application_file(path);
  REQUIRE_FALSE(app);
  CHECK(message_of(app.error()) == path + ": steps: must be a list, not a number");
}

TEST_CASE("load_application_file on a missing file is an io_error naming the path") {
  temp_dir dir;
  auto path = dir.file("missing.json");
  auto app = load_application_file(path);
  REQUIRE_FALSE(app);
  CHECK(code_of(app.error()) == errc::io_error);
  CHECK(message_of(app.error()).find(path) != std::string::npos);
}

TEST_CASE("load_application_file on malformed JSON is bad_json naming the file") {
  temp_dir dir;
  auto path = dir.write("broken.json", "{\"steps\": [");
  auto app = load_application_file(path);
  REQUIRE_FALSE(app);
  CHECK(code_of(app.error()) == errc::bad_json);
  CHECK(message_of(app.error()).rfind(path + ": line 1", 0) == 0);
}

TEST_CASE("load_configuration_file accepts the bare array form named after the file") {
  temp_dir dir;
  auto path = dir.write("configs/lab.json", R"([{"name": "host", "value": "h"}])");
  auto cfg = load_configuration_file(path);
  REQUIRE_MESSAGE(cfg, message_of(cfg.error()));
  CHECK(cfg->name == "lab");
  REQUIRE(cfg->find("host"));
  CHECK(cfg->find("host")->value == "h");
}
