#include "stepflow/runtime/content.hpp"

#include <algorithm>
#include <string>
#include <vector>

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

application app_of(std::string_view text, std::string_view default_id = "app") {
  auto app = parse_application(doc(text), "test", default_id);
  REQUIRE_MESSAGE(app, message_of(app.error()));
  return std::move(*app);
}

configuration config_of(std::string_view text, std::string_view default_name = "cfg") {
  auto cfg = parse_configuration(doc(text), "test", default_name);
  REQUIRE_MESSAGE(cfg, message_of(cfg.error()));
  return std::move(*cfg);
}

syncpack_content load(const std::string& dir) {
  auto pack = load_syncpack_dir(dir);
  REQUIRE_MESSAGE(pack, message_of(pack.error()));
  return std::move(*pack);
}

std::vector<std::string> app_ids(const syncpack_content& p) {
  std::vector<std::string> out;
  for (const auto& a : p.apps)
    out.push_back(a.id);
  return out;
}

std::vector<std::string> config_names(const syncpack_content& p) {
  std::vector<std::string> out;
  for (const auto& c : p.configs)
    out.push_back(c.name);
  return out;
}

/// Writes a small SyncPack under `root`/`sub` ("" for root itself).
void write_pack(const temp_dir& dir, const std::string& sub) {
  auto base = sub.empty() ? std::string{} : sub + "/";
  dir.write(base + "meta.json", R"({"name": "demo_pack", "version": "1.2.0"})");
  dir.write(base + "apps/b_app.json", R"({"steps": [{"name": "A", "file": "Log"}]})");
  dir.write(base + "apps/a_app.json",
            R"({"name": "named_app", "steps": [{"name": "A", "file": "Log"}]})");
  dir.write(base + "apps/readme.txt", "not json, ignored");
  dir.write(base + "configs/lab.json", R"([{"name": "host", "value": "h"}])");
  dir.write(base + "steps/Log.py", "# step code is not loaded");
}

constexpr std::string_view simple_app = R"({"name": "sync", "steps": [{"name": "A", "file": "Log"}]})";

} // namespace

// -- load_syncpack_dir ---------------------------------------------------------------

TEST_CASE("a SyncPack directory is loaded with its meta, apps and configs") {
  temp_dir dir;
  write_pack(dir, "");
  auto pack = load(dir.path());
  CHECK(pack.name == "demo_pack");
  CHECK(pack.version == "1.2.0");
  CHECK(pack.dir == dir.path());
  CHECK(pack.meta.at("name") == "demo_pack");
  // files in name order: a_app.json (named "named_app"), b_app.json
  CHECK(app_ids(pack) == std::vector<std::string>{"named_app", "b_app"});
  CHECK(config_names(pack) == std::vector<std::string>{"lab"});
}

TEST_CASE("PowerFlow's nested pf_name/name layout is accepted from the project root") {
  temp_dir dir;
  write_pack(dir, "pf_demo/demo");
  dir.write("pf_demo/README.md", "project root");
  dir.write("pf_demo/docs/index.md", "not a pack");
  auto pack = load(dir.file("pf_demo"));
  CHECK(pack.name == "demo_pack");
  CHECK(pack.dir == dir.file("pf_demo/demo"));
  CHECK(app_ids(pack) == std::vector<std::string>{"named_app", "b_app"});
  CHECK(config_names(pack) == std::vector<std::string>{"lab"});
}

TEST_CASE("a SyncPack without meta.json is named after its directory") {
  temp_dir dir;
  dir.write("my_pack/apps/x.json", R"({"steps": [{"name": "A", "file": "Log"}]})");
  auto pack = load(dir.file("my_pack"));
  CHECK(pack.name == "my_pack");
  CHECK(pack.version.empty());
  CHECK(pack.meta.is_null());
  CHECK(app_ids(pack) == std::vector<std::string>{"x"});
  CHECK(pack.configs.empty());
}

TEST_CASE("a directory that is no SyncPack is rejected") {
  temp_dir dir;
  dir.write("empty/file.txt", "x");
  auto pack = load_syncpack_dir(dir.file("empty"));
  REQUIRE_FALSE(pack);
  CHECK(code_of(pack.error()) == errc::invalid_definition);
  CHECK(message_of(pack.error())
        == dir.file("empty") + ": not a SyncPack (no meta.json, apps/ or configs/)");
}

TEST_CASE("a project root holding two packages is ambiguous and rejected") {
  temp_dir dir;
  write_pack(dir, "root/one");
  write_pack(dir, "root/two");
  auto pack = load_syncpack_dir(dir.file("root"));
  REQUIRE_FALSE(pack);
  CHECK(code_of(pack.error()) == errc::invalid_definition);
}

TEST_CASE("a path that is not a directory is an io_error") {
  temp_dir dir;
  auto pack = load_syncpack_dir(dir.file("missing"));
  REQUIRE_FALSE(pack);
  CHECK(code_of(pack.error()) == errc::io_error);
  CHECK(message_of(pack.error()) == dir.file("missing") + ": not a directory");
}

TEST_CASE("an invalid application file fails the whole SyncPack naming the file") {
  temp_dir dir;
  write_pack(dir, "");
  auto bad = dir.write("apps/c_bad.json", R"({"steps": [{"name": "A"}]})");
  auto pack = load_syncpack_dir(dir.path());
  REQUIRE_FALSE(pack);
  CHECK(code_of(pack.error()) == errc::invalid_definition);
  CHECK(message_of(pack.error()).rfind(bad + ": steps[0].file:", 0) == 0);
}

TEST_CASE("malformed JSON in a configuration file fails the SyncPack") {
  temp_dir dir;
  write_pack(dir, "");
  auto bad = dir.write("configs/broken.json", "[{");
  auto pack = load_syncpack_dir(dir.path());
  REQUIRE_FALSE(pack);
  CHECK(code_of(pack.error()) == errc::bad_json);
  CHECK(message_of(pack.error()).rfind(bad + ": line 1", 0) == 0);
}

TEST_CASE("a meta.json that is not an object is rejected") {
  temp_dir dir;
  dir.write("meta.json", "[1]");
  auto pack = load_syncpack_dir(dir.path());
  REQUIRE_FALSE(pack);
  CHECK(code_of(pack.error()) == errc::invalid_definition);
  CHECK(message_of(pack.error()) == dir.path() + ": meta.json must be a JSON object");
}

// -- content_store -------------------------------------------------------------------

TEST_CASE("the content store returns what was put, keyed by application id") {
  auto kv = make_memory_store();
  content_store cs(*kv);
  auto app = app_of(R"({"steps": [{"name": "A", "file": "Log", "x": 1}], "extra": true})",
                    "from_file");
  REQUIRE_FALSE(cs.put(app));
  auto got = cs.application_by_id("from_file");
  REQUIRE_MESSAGE(got, message_of(got.error()));
  REQUIRE(got->has_value());
  CHECK((*got)->id == "from_file");
  CHECK((*got)->steps.size() == 1);
  CHECK((*got)->steps[0].params.at("x") == 1);
  CHECK((*got)->raw.at("extra") == true);
}

TEST_CASE("the content store answers an empty optional for unknown names") {
  auto kv = make_memory_store();
  content_store cs(*kv);
  auto app = cs.application_by_id("nope");
  REQUIRE(app);
  CHECK_FALSE(app->has_value());
  auto cfg = cs.configuration_by_name("nope");
  REQUIRE(cfg);
  CHECK_FALSE(cfg->has_value());
}

TEST_CASE("the content store keeps configurations with their entries") {
  auto kv = make_memory_store();
  content_store cs(*kv);
  REQUIRE_FALSE(cs.put(config_of(R"([{"name": "pw", "value": "enc:xyz", "encrypted": true}])",
                                 "bare_cfg")));
  auto got = cs.configuration_by_name("bare_cfg");
  REQUIRE_MESSAGE(got, message_of(got.error()));
  REQUIRE(got->has_value());
  CHECK((*got)->name == "bare_cfg");
  REQUIRE((*got)->find("pw"));
  CHECK((*got)->find("pw")->encrypted);
  CHECK((*got)->find("pw")->value == "enc:xyz");
}

TEST_CASE("putting an application again replaces it") {
  auto kv = make_memory_store();
  content_store cs(*kv);
  REQUIRE_FALSE(cs.put(app_of(simple_app)));
  REQUIRE_FALSE(cs.put(app_of(
    R"({"name": "sync", "steps": [{"name": "A", "file": "Log"}, {"name": "B", "file": "Log"}]})")));
  auto got = cs.application_by_id("sync");
  REQUIRE(got);
  REQUIRE(got->has_value());
  CHECK((*got)->steps.size() == 2);
  auto ids = cs.application_ids();
  REQUIRE(ids);
  CHECK(*ids == std::vector<std::string>{"sync"});
}

TEST_CASE("the content store lists ids and names in order") {
  auto kv = make_memory_store();
  content_store cs(*kv);
  for (auto id : {"zeta", "alpha", "mid"})
    REQUIRE_FALSE(cs.put(app_of(R"({"steps": [{"name": "A", "file": "Log"}]})", id)));
  for (auto name : {"c2", "c1"})
    REQUIRE_FALSE(cs.put(config_of("[]", name)));
  auto ids = cs.application_ids();
  REQUIRE(ids);
  CHECK(*ids == std::vector<std::string>{"alpha", "mid", "zeta"});
  auto names = cs.configuration_names();
  REQUIRE(names);
  CHECK(*names == std::vector<std::string>{"c1", "c2"});
}

TEST_CASE("erasing reports whether something was removed") {
  auto kv = make_memory_store();
  content_store cs(*kv);
  REQUIRE_FALSE(cs.put(app_of(simple_app)));
  REQUIRE_FALSE(cs.put(config_of("[]", "cfg")));
  auto erased = cs.erase_application("sync");
  REQUIRE(erased);
  CHECK(*erased);
  erased = cs.erase_application("sync");
  REQUIRE(erased);
  CHECK_FALSE(*erased);
  auto got = cs.application_by_id("sync");
  REQUIRE(got);
  CHECK_FALSE(got->has_value());
  erased = cs.erase_configuration("cfg");
  REQUIRE(erased);
  CHECK(*erased);
  auto names = cs.configuration_names();
  REQUIRE(names);
  CHECK(names->empty());
  erased = cs.erase_configuration("cfg");
  REQUIRE(erased);
  CHECK_FALSE(*erased);
}

TEST_CASE("a corrupt stored application is an error naming it") {
  auto kv = make_memory_store();
  REQUIRE_FALSE(kv->write({{write_op::put, table::applications, "bad", "{not json"}}));
  content_store cs(*kv);
  auto got = cs.application_by_id("bad");
  REQUIRE_FALSE(got);
  CHECK(code_of(got.error()) == errc::bad_json);
  CHECK(message_of(got.error()).rfind(R"(stored application "bad": line 1)", 0) == 0);
}

// -- content_catalog -------------------------------------------------------------------

TEST_CASE("the catalog finds applications and configurations of loaded SyncPacks") {
  temp_dir dir;
  write_pack(dir, "");
  content_catalog cat;
  cat.add(load(dir.path()));
  CHECK(cat.syncpacks().size() == 1);
  auto app = cat.find_application("b_app");
  REQUIRE(app);
  REQUIRE(app->has_value());
  CHECK((*app)->id == "b_app");
  auto cfg = cat.find_configuration("lab");
  REQUIRE(cfg);
  CHECK(cfg->has_value());
  auto none = cat.find_application("nope");
  REQUIRE(none);
  CHECK_FALSE(none->has_value());
  auto no_cfg = cat.find_configuration("nope");
  REQUIRE(no_cfg);
  CHECK_FALSE(no_cfg->has_value());
}

TEST_CASE("the catalog prefers loaded SyncPacks over the store") {
  auto kv = make_memory_store();
  content_store cs(*kv);
  // The store holds a two-step "sync" and a configuration "lab" with other data.
  REQUIRE_FALSE(cs.put(app_of(
    R"({"name": "sync", "steps": [{"name": "A", "file": "Log"}, {"name": "B", "file": "Log"}]})")));
  REQUIRE_FALSE(cs.put(config_of(R"([{"name": "host", "value": "from store"}])", "lab")));
  REQUIRE_FALSE(cs.put(app_of(R"({"name": "only_stored", "steps": [{"name": "A", "file": "Log"}]})")));
  syncpack_content pack;
  pack.name = "p";
  pack.apps.push_back(app_of(simple_app));
  pack.configs.push_back(config_of(R"([{"name": "host", "value": "from pack"}])", "lab"));
  content_catalog cat(&cs);
  cat.add(std::move(pack));
  auto app = cat.find_application("sync");
  REQUIRE(app);
  REQUIRE(app->has_value());
  CHECK((*app)->steps.size() == 1);
  auto cfg = cat.find_configuration("lab");
  REQUIRE(cfg);
  REQUIRE(cfg->has_value());
  CHECK((*cfg)->find("host")->value == "from pack");
  auto stored = cat.find_application("only_stored");
  REQUIRE(stored);
  CHECK(stored->has_value());
}

TEST_CASE("the catalog searches SyncPacks in the order they were added") {
  syncpack_content first, second;
  first.apps.push_back(app_of(simple_app));
  second.apps.push_back(app_of(
    R"({"name": "sync", "steps": [{"name": "A", "file": "Log"}, {"name": "B", "file": "Log"}]})"));
  content_catalog cat;
  cat.add(std::move(first));
  cat.add(std::move(second));
  auto app = cat.find_application("sync");
  REQUIRE(app);
  REQUIRE(app->has_value());
  CHECK((*app)->steps.size() == 1);
}
