// The OpenAPI 3 description of /api/v1, served at /api/v1/openapi.json.
// Kept in step with docs/api.md.
#include "stepflow/actors/rest_api.hpp"

namespace stepflow::actors {

const std::string& openapi_document() {
  static const std::string doc = R"json({
  "openapi": "3.0.3",
  "info": {"title": "stepflow API (PowerFlow-compatible)", "version": "1"},
  "servers": [{"url": "/api/v1"}],
  "components": {
    "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
    "schemas": {
      "Error": {"type": "object", "required": ["error"],
                "properties": {"error": {"type": "string"}, "detail": {}}},
      "Accepted": {"type": "object", "properties": {"task_id": {"type": "string"},
                   "status": {"type": "string"}, "href": {"type": "string"}}},
      "RunRequest": {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string"}, "params": {"type": "object"},
        "configuration": {"type": "string"}, "queue": {"type": "string"},
        "priority": {"type": "integer", "minimum": 0, "maximum": 9},
        "log_level": {"oneOf": [{"type": "integer"}, {"type": "string"}]}}}
    }
  },
  "security": [{"basic": []}],
  "paths": {
    "/status": {"get": {"security": [], "summary": "Health of store, queues and workers", "responses": {"200": {"description": "ok"}}}},
    "/about": {"get": {"summary": "Version, build and dependencies", "responses": {"200": {"description": "ok"}}}},
    "/applications": {"get": {"summary": "List applications", "responses": {"200": {"description": "ok"}}},
                      "post": {"summary": "Add or overwrite an application", "responses": {"200": {"description": "replaced"}, "201": {"description": "created"}, "400": {"description": "invalid", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}}},
    "/applications/{name}": {"parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
      "get": {"summary": "An application", "responses": {"200": {"description": "ok"}, "404": {"description": "unknown"}}},
      "delete": {"summary": "Delete an application", "responses": {"200": {"description": "deleted"}, "404": {"description": "unknown"}}}},
    "/applications/{name}/logs": {"parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
      "get": {"summary": "Step logs of the application's recent runs", "responses": {"200": {"description": "ok"}}}},
    "/applications/run": {"post": {"summary": "Run an application", "parameters": [{"name": "wait", "in": "query", "schema": {"type": "integer", "maximum": 30}}],
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RunRequest"}}}},
      "responses": {"202": {"description": "accepted (durably queued)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}},
                    "200": {"description": "with wait: the finished task"}, "400": {"description": "invalid request or missing required variables"},
                    "404": {"description": "unknown application or configuration"}, "503": {"description": "queue full; see Retry-After"}}}},
    "/applications/{name}/run": {"parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
      "post": {"summary": "Run an application by name", "responses": {"202": {"description": "accepted"}}}},
    "/configurations": {"get": {"summary": "List configurations (encrypted values masked)", "responses": {"200": {"description": "ok"}}},
                        "post": {"summary": "Add or overwrite a configuration; encrypted values are encrypted at rest", "responses": {"200": {"description": "replaced"}, "201": {"description": "created"}}}},
    "/configurations/{name}": {"parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
      "get": {"summary": "A configuration (masked)", "responses": {"200": {"description": "ok"}}},
      "delete": {"summary": "Delete a configuration", "responses": {"200": {"description": "deleted"}}}},
    "/steps": {"get": {"summary": "List step types (built-in and stored)", "responses": {"200": {"description": "ok"}}},
               "post": {"summary": "Store uploaded step code (runs once a host for its language exists)", "responses": {"201": {"description": "stored"}, "200": {"description": "replaced"}, "400": {"description": "invalid"}, "409": {"description": "built-in name"}}}},
    "/steps/run": {"post": {"summary": "Run one step with parameters and input data", "responses": {"200": {"description": "the finished task"}, "202": {"description": "still running after wait"}}}},
    "/steps/{name}": {"parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
      "get": {"summary": "A step type", "responses": {"200": {"description": "ok"}}},
      "delete": {"summary": "Delete a stored step (built-in: 409)", "responses": {"200": {"description": "deleted"}, "409": {"description": "built-in"}}}},
    "/tasks": {"get": {"summary": "Runs, newest first (Timeline filter)", "parameters": [
        {"name": "app", "in": "query", "schema": {"type": "string"}}, {"name": "status", "in": "query", "schema": {"type": "string"}},
        {"name": "queue", "in": "query", "schema": {"type": "string"}}, {"name": "configuration", "in": "query", "schema": {"type": "string"}},
        {"name": "since", "in": "query", "schema": {"type": "string"}}, {"name": "until", "in": "query", "schema": {"type": "string"}},
        {"name": "limit", "in": "query", "schema": {"type": "integer"}}], "responses": {"200": {"description": "ok"}}},
      "delete": {"summary": "Terminate every pending and running task", "responses": {"200": {"description": "ok"}}}},
    "/tasks/{id}": {"parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
      "get": {"summary": "A task with every step", "responses": {"200": {"description": "ok"}, "404": {"description": "unknown"}}},
      "delete": {"summary": "Terminate a task", "responses": {"200": {"description": "ok"}, "409": {"description": "already ended"}}}},
    "/tasks/{id}/steps/{step}/logs": {"parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}, {"name": "step", "in": "path", "required": true, "schema": {"type": "string"}}],
      "get": {"summary": "Log lines of one step (index or name)", "responses": {"200": {"description": "ok"}}}},
    "/tasks/{id}/steps/{step}/data": {"parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}, {"name": "step", "in": "path", "required": true, "schema": {"type": "string"}}],
      "get": {"summary": "Output data of one step", "responses": {"200": {"description": "ok"}}}},
    "/tasks/{id}/replay": {"parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
      "post": {"summary": "Run again with the same variables, configuration and queue", "responses": {"202": {"description": "accepted"}}}},
    "/tasks/{id}/revoke": {"parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
      "post": {"summary": "Revoke a task (or every task of an application id); {\"terminate\": true} stops the running step", "responses": {"200": {"description": "ok"}, "409": {"description": "already ended"}}}},
    "/cache/{key}": {"parameters": [{"name": "key", "in": "path", "required": true, "schema": {"type": "string"}}],
      "get": {"summary": "A cache entry", "responses": {"200": {"description": "ok"}, "404": {"description": "unknown"}}},
      "delete": {"summary": "Delete a cache entry", "responses": {"200": {"description": "deleted"}}}}
  }
})json";
  return doc;
}

} // namespace stepflow::actors
