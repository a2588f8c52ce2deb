#include "stepflow/connectors/connector.hpp"

#include <algorithm>
#include <cstdlib>

#include <fmt/format.h>

#include "external/external.hpp"
#include "plugins/plugins.hpp"
#include "servicenow/servicenow.hpp"
#include "sl1/sl1.hpp"
#include "ssh/ssh.hpp"
#include "sql/sql.hpp"

namespace stepflow::connectors {

namespace {

// The one explicit list. A connector is added here and nowhere else. The
// order matters: native step types first, then plugins, then the SyncPacks'
// external steps, which give way to a native step of the same name (an
// exported base_steps_syncpack ships its own QueryREST.py and QueryGQL.py).
constexpr connector_entry entries[] = {
  {"sl1", make_sl1_connector},
  {"servicenow", make_servicenow_connector},
  {"ssh", make_ssh_connector},
  {"sql", make_sql_connector},
  {"plugins", make_plugin_connector},
  {"external", make_external_connector},
};

} // namespace

std::span<const connector_entry> connector_list() {
  return entries;
}

caf::expected<std::vector<std::shared_ptr<connector>>>
connect_all(const json::object& options, const std::vector<syncpack_content>& syncpacks,
            step_registry& registry) {
  for (const auto& kv : options) {
    auto name = std::string_view(kv.key());
    if (std::none_of(std::begin(entries), std::end(entries),
                     [&](const connector_entry& e) { return e.name == name; }))
      return make_error(errc::invalid_definition,
                        fmt::format("connectors options: no connector named {}",
                                    quote_json(name)));
    if (!kv.value().is_object())
      return make_error(errc::invalid_definition,
                        fmt::format("connectors options: {} must be an object", name));
  }
  std::vector<std::shared_ptr<connector>> out;
  const json::object empty;
  for (const auto& e : entries) {
    auto it = options.find(e.name);
    connector_setup setup{it == options.end() ? &empty : &it->value().get_object(), &syncpacks};
    auto made = e.make(setup);
    if (!made)
      return std::move(made.error());
    if (auto err = (*made)->add_steps(registry))
      return err;
    out.push_back(std::move(*made));
  }
  return out;
}

caf::expected<json::object> load_connector_options() {
  const char* path = std::getenv("STEPFLOW_CONNECTORS");
  if (!path || !*path)
    return json::object{};
  auto text = read_file(path);
  if (!text)
    return std::move(text.error());
  auto doc = parse_json(*text, path);
  if (!doc)
    return std::move(doc.error());
  if (!doc->is_object())
    return make_error(errc::invalid_definition,
                      fmt::format("{}: the connectors options must be a JSON object", path));
  return std::move(doc->get_object());
}

} // namespace stepflow::connectors
