#pragma once
// Where applications and configuration objects come from: files, SyncPack
// directories (PowerFlow's layout: <pack>/meta.json, apps/*.json,
// configs/*.json, steps/*.py) and the store. A content_catalog answers
// "the application / configuration named X" over all of them.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "stepflow/runtime/kv_store.hpp"
#include "stepflow/runtime/model.hpp"

namespace stepflow {

struct syncpack_content {
  std::string name;    ///< meta.json "name", else the directory name
  std::string version; ///< meta.json "version"
  std::string dir;     ///< the directory holding apps/ and configs/
  json::value meta;    ///< meta.json as read (null when absent)
  std::vector<application> apps;
  std::vector<configuration> configs;
};

/// Loads a SyncPack directory. Accepts the package directory itself (with
/// apps/ or meta.json) or a project root holding exactly one such package
/// (PowerFlow's pf_<name>/<name>/ layout). Every file must be valid.
caf::expected<syncpack_content> load_syncpack_dir(const std::string& dir);

/// Loads a SyncPack directory, or a SyncPack wheel (`*.whl`, PowerFlow's
/// distribution format), which is first extracted to
/// `<extract_root>/<wheel file name without .whl>/` (replacing what was
/// there) and loaded from there; its Python steps run from that copy.
caf::expected<syncpack_content> load_syncpack(const std::string& path,
                                              const std::string& extract_root);

/// Applications and configurations stored in the kv_store. Thread-safe.
class content_store {
public:
  explicit content_store(kv_store& store) noexcept : store_(store) {}

  caf::error put(const application& app);
  caf::error put(const configuration& cfg);
  caf::expected<std::optional<application>> application_by_id(const std::string& id) const;
  caf::expected<std::optional<configuration>> configuration_by_name(const std::string& name) const;
  caf::expected<std::vector<std::string>> application_ids() const;
  caf::expected<std::vector<std::string>> configuration_names() const;
  /// True when something was removed.
  caf::expected<bool> erase_application(const std::string& id);
  caf::expected<bool> erase_configuration(const std::string& name);

private:
  kv_store& store_;
};

/// Looks names up in SyncPacks loaded for this process first, then in the
/// store (when given).
class content_catalog {
public:
  explicit content_catalog(content_store* store = nullptr) noexcept : store_(store) {}

  void add(syncpack_content pack);
  const std::vector<syncpack_content>& syncpacks() const noexcept { return packs_; }

  caf::expected<std::optional<application>> find_application(const std::string& id) const;
  caf::expected<std::optional<configuration>> find_configuration(const std::string& name) const;

private:
  content_store* store_;
  std::vector<syncpack_content> packs_;
};

} // namespace stepflow
