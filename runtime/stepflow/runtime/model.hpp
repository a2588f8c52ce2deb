#pragma once
// PowerFlow's content model: applications and configuration objects, read
// from and written to PowerFlow's own JSON. Parsing checks shapes and the
// step graph; every error names the source, the JSON path and the problem,
// e.g. `apps/sync.json: steps[2].output_to[0]: no step named "Post Incident"`.
// Unknown keys are kept in `raw` and written back unchanged.
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "stepflow/runtime/json.hpp"

namespace stepflow {

struct app_variable {
  std::string name;
  std::string description;
  bool required = false;
  /// The "value" key, null when absent.
  json::value value;
  json::value sample_value;
  json::value default_value;
};

/// Keys of a step object that are not step parameters.
bool is_reserved_step_key(std::string_view key) noexcept;

struct step_def {
  std::string name;
  /// The step type (PowerFlow: the step's class / file name).
  std::string file;
  std::string syncpack;
  std::vector<std::string> output_to;
  std::vector<std::string> data_from;
  /// Every other key of the step object: the flat step parameters.
  json::object params;
};

struct application {
  /// "name" when present, else the file name without ".json".
  std::string id;
  std::string friendly_name;
  std::string description;
  std::string author;
  std::string version;
  /// Name of the aligned configuration object, "" for none.
  std::string configuration;
  std::vector<app_variable> app_variables;
  std::vector<step_def> steps;

  /// The step graph (derived): for each step, the indexes of the steps that
  /// feed it and that it feeds, ascending, without duplicates.
  std::vector<std::vector<size_t>> preds;
  std::vector<std::vector<size_t>> succs;
  /// A topological order of the steps (stable: ties keep file order).
  std::vector<size_t> topo_order;

  /// The document as read, including unknown keys.
  json::object raw;

  /// Index of the step named `name`, or -1.
  long step_index(std::string_view name) const noexcept;
};

/// Parses and validates an application document. `source` names it in errors
/// (usually the file path); `default_id` is used when there is no "name" key.
caf::expected<application> parse_application(const json::value& doc, std::string_view source,
                                             std::string_view default_id);

/// The application as PowerFlow JSON (the raw document with "name" set).
json::value to_json(const application& app);

struct config_entry {
  std::string name;
  json::value value;
  bool encrypted = false;
};

struct configuration {
  std::string name;
  std::string friendly_name;
  std::string description;
  std::string author;
  std::string version;
  std::vector<config_entry> data;
  json::object raw;

  /// The entry named `name`, or nullptr.
  const config_entry* find(std::string_view name) const noexcept;
};

/// Parses a configuration object. Accepts PowerFlow's object form
/// ({name, ..., configuration_data: [...]}) and the bare array of entries the
/// manual also shows (the name then comes from `default_name`).
caf::expected<configuration> parse_configuration(const json::value& doc, std::string_view source,
                                                 std::string_view default_name);

json::value to_json(const configuration& cfg);

/// The file name of `path` without directory and ".json".
std::string file_stem(std::string_view path);

/// Loads and parses an application / configuration file.
caf::expected<application> load_application_file(const std::string& path);
caf::expected<configuration> load_configuration_file(const std::string& path);

} // namespace stepflow
