#pragma once
// The built-in step library (PowerFlow's "Base Steps" SyncPack): each
// factory returns a shared, stateless step type. Parameters are documented in
// each step's step_info (GET /api/v1/steps, `stepflow steps`) and in
// docs/steps.md.
#include <memory>

#include "stepflow/runtime/step.hpp"

namespace stepflow::connectors {

/// StaticData: outputs its "data" parameter.
std::shared_ptr<const step_type> make_static_data_step();
/// Log: writes "message" at "level"; passes its input data on.
std::shared_ptr<const step_type> make_log_step();
/// QueryREST: one HTTP request through the asynchronous HTTP client.
std::shared_ptr<const step_type> make_query_rest_step();
/// CacheSave / CacheRead / CacheDelete / DirectCacheRead over the LMDB cache.
std::shared_ptr<const step_type> make_cache_save_step();
std::shared_ptr<const step_type> make_cache_read_step();
std::shared_ptr<const step_type> make_cache_delete_step();
std::shared_ptr<const step_type> make_direct_cache_read_step();
/// Transform / JinjaTemplateDataRender: render a Jinja2 template over inputs.
std::shared_ptr<const step_type> make_transform_step();
std::shared_ptr<const step_type> make_jinja_template_data_render_step();
/// Condition: flow control, marks branches not taken.
std::shared_ptr<const step_type> make_condition_step();
/// TriggerApplication: starts another application (blocking or not).
std::shared_ptr<const step_type> make_trigger_application_step();

} // namespace stepflow::connectors
