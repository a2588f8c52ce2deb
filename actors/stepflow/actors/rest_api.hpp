#pragma once
// PowerFlow's REST API under /api/v1 (docs/api.md, /api/v1/openapi.json),
// served by runtime/http_server. Handlers never block on a run: submissions
// answer after the durable commit, ?wait= answers from a callback.
#include <functional>
#include <memory>
#include <string>

#include "stepflow/runtime/http_server.hpp"
#include "stepflow/runtime/json.hpp"
#include "stepflow/runtime/model.hpp"

namespace stepflow {
class cache;
}

namespace stepflow::actors {

class task_service;

/// What the API needs from its surroundings.
struct rest_api_context {
  task_service* service = nullptr;
  stepflow::cache* cache = nullptr;
  std::string version;
  /// The one authentication check: the user name for valid credentials,
  /// "" otherwise. Every endpoint but GET /api/v1/status calls it.
  std::function<std::string(const http_request_data&)> authenticate;
  /// Encrypts a configuration's `encrypted` values before it is stored.
  std::function<caf::expected<configuration>(configuration)> encrypt_config;
  /// The configuration as the API shows it (encrypted values masked).
  std::function<json::value(const configuration&)> show_config;
  /// Extra health information for GET /status (store, workers...).
  std::function<json::object()> health;
  /// Makes an uploaded step definition runnable (POST /steps); an error
  /// sentence starts with the offending field. Empty: uploads are only stored.
  std::function<caf::error(const json::object&)> install_step;
  /// Forgets an uploaded step (DELETE /steps/{name}). May be empty.
  std::function<void(const std::string&)> remove_step;
};

class rest_api {
public:
  explicit rest_api(rest_api_context ctx);
  void handle(std::shared_ptr<const http_request_data> req, http_responder respond);

private:
  rest_api_context ctx_;
};

/// The OpenAPI 3 description served at /api/v1/openapi.json.
const std::string& openapi_document();

} // namespace stepflow::actors
