#include "stepflow/runtime/content.hpp"

#include "stepflow/runtime/archive.hpp"

#include <algorithm>
#include <filesystem>

#include <fmt/format.h>

namespace stepflow {

namespace fs = std::filesystem;

namespace {

std::vector<std::string> json_files(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    return out;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file() && e.path().extension() == ".json")
      out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

bool is_pack_dir(const fs::path& p) {
  std::error_code ec;
  return fs::exists(p / "meta.json", ec) || fs::is_directory(p / "apps", ec)
         || fs::is_directory(p / "configs", ec);
}

} // namespace

caf::expected<syncpack_content> load_syncpack(const std::string& path,
                                              const std::string& extract_root) {
  fs::path p(path);
  std::error_code ec;
  if (p.extension() != ".whl" || fs::is_directory(p, ec))
    return load_syncpack_dir(path);
  if (!fs::is_regular_file(p, ec))
    return make_error(errc::io_error, fmt::format("{}: no such SyncPack file", path));
  auto dest = fs::path(extract_root) / p.stem();
  fs::remove_all(dest, ec);
  if (auto err = extract_zip(path, dest.string()))
    return err;
  auto pack = load_syncpack_dir(dest.string());
  if (!pack)
    return make_error(code_of(pack.error()),
                      fmt::format("{} (extracted from {})", message_of(pack.error()), path));
  return pack;
}

caf::expected<syncpack_content> load_syncpack_dir(const std::string& dir) {
  std::error_code ec;
  fs::path root(dir);
  if (!fs::is_directory(root, ec))
    return make_error(errc::io_error, fmt::format("{}: not a directory", dir));
  fs::path pack = root;
  if (!is_pack_dir(root)) {
    std::vector<fs::path> inner;
    for (const auto& e : fs::directory_iterator(root, ec))
      if (e.is_directory() && is_pack_dir(e.path()))
        inner.push_back(e.path());
    if (inner.size() != 1)
      return make_error(errc::invalid_definition,
                        fmt::format("{}: not a SyncPack (no meta.json, apps/ or configs/)", dir));
    pack = inner.front();
  }
  syncpack_content out;
  out.dir = pack.string();
  out.name = pack.filename().string();
  if (fs::exists(pack / "meta.json", ec)) {
    auto meta = load_json_file((pack / "meta.json").string());
    if (!meta)
      return meta.error();
    out.meta = *meta;
    if (meta->is_object()) {
      const auto& mo = meta->get_object();
      if (auto it = mo.find("name"); it != mo.end() && it->value().is_string())
        out.name = std::string(it->value().get_string());
      if (auto it = mo.find("version"); it != mo.end() && it->value().is_string())
        out.version = std::string(it->value().get_string());
    } else {
      return make_error(errc::invalid_definition,
                        fmt::format("{}: meta.json must be a JSON object", out.dir));
    }
  }
  for (const auto& f : json_files(pack / "apps")) {
    auto app = load_application_file(f);
    if (!app)
      return app.error();
    out.apps.push_back(std::move(*app));
  }
  for (const auto& f : json_files(pack / "configs")) {
    auto cfg = load_configuration_file(f);
    if (!cfg)
      return cfg.error();
    out.configs.push_back(std::move(*cfg));
  }
  return out;
}

// -- content_store ------------------------------------------------------------

caf::error content_store::put(const application& app) {
  return store_.write({{write_op::put, table::applications, app.id, to_json(to_json(app))}});
}

caf::error content_store::put(const configuration& cfg) {
  return store_.write(
    {{write_op::put, table::configurations, cfg.name, to_json(to_json(cfg))}});
}

caf::expected<std::optional<application>>
content_store::application_by_id(const std::string& id) const {
  auto raw = store_.get(table::applications, id);
  if (!raw)
    return raw.error();
  if (!*raw)
    return std::optional<application>{};
  auto source = fmt::format("stored application {}", quote_json(id));
  auto doc = parse_json(**raw, source);
  if (!doc)
    return doc.error();
  auto app = parse_application(*doc, source, id);
  if (!app)
    return app.error();
  return std::optional<application>{std::move(*app)};
}

caf::expected<std::optional<configuration>>
content_store::configuration_by_name(const std::string& name) const {
  auto raw = store_.get(table::configurations, name);
  if (!raw)
    return raw.error();
  if (!*raw)
    return std::optional<configuration>{};
  auto source = fmt::format("stored configuration {}", quote_json(name));
  auto doc = parse_json(**raw, source);
  if (!doc)
    return doc.error();
  auto cfg = parse_configuration(*doc, source, name);
  if (!cfg)
    return cfg.error();
  return std::optional<configuration>{std::move(*cfg)};
}

namespace {
caf::expected<std::vector<std::string>> keys_of(kv_store& s, table t) {
  std::vector<std::string> out;
  auto err = s.scan(t, {}, {}, false, [&](std::string_view k, std::string_view) {
    out.emplace_back(k);
    return true;
  });
  if (err)
    return err;
  return out;
}

caf::expected<bool> erase_key(kv_store& s, table t, const std::string& key) {
  auto raw = s.get(t, key);
  if (!raw)
    return raw.error();
  if (!*raw)
    return false;
  if (auto err = s.write({{write_op::erase, t, key, {}}}))
    return err;
  return true;
}
} // namespace

caf::expected<std::vector<std::string>> content_store::application_ids() const {
  return keys_of(store_, table::applications);
}

caf::expected<std::vector<std::string>> content_store::configuration_names() const {
  return keys_of(store_, table::configurations);
}

caf::expected<bool> content_store::erase_application(const std::string& id) {
  return erase_key(store_, table::applications, id);
}

caf::expected<bool> content_store::erase_configuration(const std::string& name) {
  return erase_key(store_, table::configurations, name);
}

// -- content_catalog ----------------------------------------------------------

void content_catalog::add(syncpack_content pack) {
  packs_.push_back(std::move(pack));
}

caf::expected<std::optional<application>>
content_catalog::find_application(const std::string& id) const {
  for (const auto& p : packs_)
    for (const auto& a : p.apps)
      if (a.id == id)
        return std::optional<application>{a};
  if (store_)
    return store_->application_by_id(id);
  return std::optional<application>{};
}

caf::expected<std::optional<configuration>>
content_catalog::find_configuration(const std::string& name) const {
  for (const auto& p : packs_)
    for (const auto& c : p.configs)
      if (c.name == name)
        return std::optional<configuration>{c};
  if (store_)
    return store_->configuration_by_name(name);
  return std::optional<configuration>{};
}

} // namespace stepflow
