#pragma once
// Plumbing of the SL1 connector's steps (internal): the SL1 connection
// parameters and the endpoint they describe, plus SL1 and GraphQL helpers.
// Requests, completions and failure data come from http_common; the steps'
// .cpp files use both namespaces.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http_common/http_common.hpp"
#include "sl1/sl1.hpp"
#include "stepflow/runtime/json.hpp"
#include "stepflow/runtime/step.hpp"

namespace stepflow::connectors::sl1_detail {

/// The connection parameters of the SL1 steps (sl1_url, host, protocol,
/// port, user, password, verify_ssl, ca_file, proxy, timeout, retries).
void add_sl1_params(std::vector<param_info>& params, const sl1_connector_options& o);

/// Checks the connection parameters: a URL or a host, no credentials in the
/// URL, sane numbers. Errors start with "<step>: ".
caf::error check_sl1_params(const json::object& params, std::string_view step);

/// The SL1 endpoint a step's parameters describe.
caf::expected<http_common::endpoint> sl1_endpoint(const step_context& ctx,
                                                  const sl1_connector_options& o);

/// An object id from a number, a digit string, or a URI ("/api/device/12"
/// gives "12"); empty when the value is none of these.
std::string id_of(const json::value* v);

/// The parameter `name` as an object: an object as is, a string holding a
/// JSON object parsed, null or absent as `{}`. Empty when it is neither.
std::optional<json::object> object_param(const step_context& ctx, std::string_view name);

/// The value at a dot path ("data.devices") inside `root`, or nullptr.
const json::value* at_path(const json::value& root, std::string_view path);

/// The first GraphQL error's message of a body with a non-empty "errors",
/// else empty.
std::optional<std::string> graphql_error(const json::value& body);

/// Adds SL1GraphQL and QueryGQL (sl1_graphql_steps.cpp).
caf::error add_graphql_steps(step_registry& registry, const sl1_connector_options& options);

} // namespace stepflow::connectors::sl1_detail
