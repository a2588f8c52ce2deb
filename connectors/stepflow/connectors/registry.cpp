#include "stepflow/connectors/registry.hpp"

#include "base_steps/base_steps.hpp"

namespace stepflow::connectors {

caf::error register_all(step_registry& registry) {
  for (auto make : {make_static_data_step, make_log_step, make_query_rest_step,
                    make_cache_save_step, make_cache_read_step, make_cache_delete_step,
                    make_direct_cache_read_step, make_transform_step,
                    make_jinja_template_data_render_step, make_condition_step,
                    make_trigger_application_step})
    if (auto err = registry.add(make()))
      return err;
  return {};
}

} // namespace stepflow::connectors
