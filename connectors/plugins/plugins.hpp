#pragma once
// The "plugins" connector: loads every shared library (*.so) of the plugin
// directories at start-up through the C entry point of plugin_api.hpp and
// adds the step types each one provides. Plugins stay loaded for the life
// of the process.
#include "stepflow/connectors/connector.hpp"

namespace stepflow::connectors {

/// Options ("plugins" in the connectors options):
///  dirs   folders to load plugins from (array of strings). Default: the
///         folders in $STEPFLOW_PLUGIN_DIR (colon-separated), plus
///         /usr/lib/stepflow/plugins when it exists.
/// A folder that does not exist is an error when named explicitly.
caf::expected<std::shared_ptr<connector>> make_plugin_connector(const connector_setup& setup);

} // namespace stepflow::connectors
