// Flow-control and data-shaping steps (PowerFlow builder operators):
// Transform, JinjaTemplateDataRender and Condition. Formats: docs/applications.md.
#include "base_steps/base_steps.hpp"

#include <fmt/format.h>

#include "stepflow/runtime/launcher.hpp"
#include "stepflow/runtime/plan.hpp"
#include "stepflow/runtime/template.hpp"

namespace stepflow::connectors {

namespace {

/// The template context: every input by step name, "input" (the only
/// input's data, or an object of all inputs by name when there are several),
/// "inputs" (always the object by name, for names that are not identifiers),
/// "app_variables" and "config".
json::object template_context(const step_context& ctx) {
  json::object c;
  json::object by_name;
  for (const auto& [name, data] : ctx.inputs) {
    auto v = data ? *data : json::value(nullptr);
    c[name] = v;
    by_name[name] = std::move(v);
  }
  c["input"] = ctx.joined_input();
  c["inputs"] = std::move(by_name);
  c["app_variables"] = ctx.app_variables ? json::value(*ctx.app_variables) : json::value(json::object{});
  c["config"] = ctx.configuration ? json::value(*ctx.configuration) : json::value(json::object{});
  return c;
}

/// Renders `source`; the output is parsed as JSON when it is JSON (after
/// trimming blanks), else kept as text.
caf::expected<json::value> render_to_value(const step_context& ctx, const std::string& source,
                                           const json::object& extra) {
  auto tmpl = cached_template(source, ctx.step_name);
  if (!tmpl)
    return tmpl.error();
  auto context = template_context(ctx);
  for (const auto& kv : extra)
    context[kv.key()] = kv.value();
  auto out = render(**tmpl, context);
  if (!out)
    return out.error();
  auto first = out->find_first_not_of(" \t\r\n");
  if (first == std::string::npos)
    return json::value(json::string(*out));
  auto last = out->find_last_not_of(" \t\r\n");
  std::string_view trimmed(out->data() + first, last - first + 1);
  if (trimmed.front() == '{' || trimmed.front() == '[' || trimmed.front() == '"') {
    auto v = parse_json(trimmed, "template output");
    if (v)
      return std::move(*v);
  }
  return json::value(json::string(*out));
}

class render_step : public step_type {
public:
  render_step(std::string name, std::string friendly, std::string description) {
    info_.name = std::move(name);
    info_.friendly_name = std::move(friendly);
    info_.description = std::move(description);
    info_.params = {
      {"template", "The Jinja2 template. Inputs are available by step name, as \"input\", "
                   "\"inputs\", \"app_variables\" and \"config\".", true, nullptr, "string"},
      {"data", "Extra variables for the template (an object).", false, nullptr, "object"},
    };
  }
  const step_info& info() const noexcept override { return info_; }
  bool completes_inline() const noexcept override { return true; }
  caf::error check(const json::object& params) const override {
    if (auto err = step_type::check(params))
      return err;
    auto it = params.find("template");
    if (!it->value().is_string())
      return make_error(errc::invalid_definition, "parameter \"template\" must be a string");
    if (auto t = cached_template(it->value().get_string(), info_.name); !t)
      return t.error();
    return {};
  }
  void run(std::shared_ptr<step_context> ctx, step_done done) const override {
    json::object extra;
    if (auto* d = ctx->param("data"); d && d->is_object())
      extra = d->get_object();
    auto v = render_to_value(*ctx, ctx->param_string("template"), extra);
    if (!v)
      done(step_outcome::failure(message_of(v.error())));
    else
      done(step_outcome::success(std::move(*v)));
  }

private:
  step_info info_;
};

// -- Condition ------------------------------------------------------------------

/// Truthiness of a JSON value, as Jinja2/Python.
bool truthy(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null: return false;
    case json::kind::bool_: return v.get_bool();
    case json::kind::int64: return v.get_int64() != 0;
    case json::kind::uint64: return v.get_uint64() != 0;
    case json::kind::double_: return v.get_double() != 0;
    case json::kind::string: {
      auto s = v.get_string();
      return !(s.empty() || s == "false" || s == "False" || s == "0");
    }
    case json::kind::array: return !v.get_array().empty();
    case json::kind::object: return !v.get_object().empty();
  }
  return false;
}

caf::expected<double> as_number(const json::value& v, std::string_view what) {
  if (v.is_number())
    return v.to_number<double>();
  if (v.is_string()) {
    std::string s(v.get_string());
    char* end = nullptr;
    double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && end && *end == '\0')
      return d;
  }
  return make_error(errc::invalid_argument,
                    fmt::format("{} must be a number, not {}", what, to_json(v)));
}

caf::expected<bool> evaluate(const step_context& ctx, const json::value& cond, int depth = 0) {
  if (depth > 32)
    return make_error(errc::invalid_argument, "conditions are nested too deeply");
  if (!cond.is_object())
    return make_error(errc::invalid_argument, "a condition must be an object with a \"type\"");
  const auto& o = cond.get_object();
  auto tit = o.find("type");
  if (tit == o.end() || !tit->value().is_string())
    return make_error(errc::invalid_argument, "a condition needs a \"type\"");
  auto type = std::string(tit->value().get_string());
  auto value = [&]() -> json::value {
    auto it = o.find("value");
    return it == o.end() ? json::value(nullptr) : it->value();
  };
  if (type == "equal") {
    bool want = true;
    if (auto it = o.find("equal_to"); it != o.end())
      want = truthy(it->value());
    return truthy(value()) == want;
  }
  if (type == "numeric") {
    auto v = as_number(value(), "the value of a numeric condition");
    if (!v)
      return v.error();
    if (auto it = o.find("above"); it != o.end() && !it->value().is_null()) {
      auto a = as_number(it->value(), "\"above\"");
      if (!a)
        return a.error();
      if (!(*v > *a))
        return false;
    }
    if (auto it = o.find("below"); it != o.end() && !it->value().is_null()) {
      auto b = as_number(it->value(), "\"below\"");
      if (!b)
        return b.error();
      if (!(*v < *b))
        return false;
    }
    return true;
  }
  if (type == "template") {
    auto v = value();
    if (!v.is_string())
      return truthy(v); // a whole ${...} reference already gave a value
    auto expr = std::string(v.get_string());
    auto rendered = render_to_value(ctx, "{{ (" + expr + ") }}", {});
    if (!rendered)
      return rendered.error();
    return rendered->is_string() ? rendered->get_string() == "True" : truthy(*rendered);
  }
  if (type == "and" || type == "or") {
    auto it = o.find("conditions");
    if (it == o.end() || !it->value().is_array() || it->value().get_array().empty())
      return make_error(errc::invalid_argument,
                        fmt::format("an \"{}\" condition needs a list of \"conditions\"", type));
    for (const auto& c : it->value().get_array()) {
      auto r = evaluate(ctx, c, depth + 1);
      if (!r)
        return r;
      if (type == "and" && !*r)
        return false;
      if (type == "or" && *r)
        return true;
    }
    return type == "and";
  }
  if (type == "not") {
    auto it = o.find("condition");
    if (it == o.end())
      return make_error(errc::invalid_argument, "a \"not\" condition needs one \"condition\"");
    auto r = evaluate(ctx, it->value(), depth + 1);
    if (!r)
      return r;
    return !*r;
  }
  return make_error(errc::invalid_argument,
                    fmt::format("unknown condition type {} (equal, numeric, template, and, or, not)",
                                quote_json(type)));
}

class condition_step final : public step_type {
public:
  condition_step() {
    info_.name = "Condition";
    info_.friendly_name = "Condition";
    info_.description = "Branches: each entry of \"conditions\" is bound to a step this one "
                        "feeds; branches whose condition is false are not taken (their steps, "
                        "and what only they lead to, are skipped). Steps without an entry are "
                        "always taken. Passes its input data on.";
    info_.params = {{"conditions",
                     "[{\"step\": name, \"label\": text, \"condition\": {\"type\": \"equal\" | "
                     "\"numeric\" | \"template\" | \"and\" | \"or\" | \"not\", ...}}]",
                     true, nullptr, "array"}};
  }
  const step_info& info() const noexcept override { return info_; }
  bool completes_inline() const noexcept override { return true; }
  caf::error check(const json::object& params) const override {
    if (auto err = step_type::check(params))
      return err;
    const auto& c = params.find("conditions")->value();
    if (!c.is_array())
      return make_error(errc::invalid_definition, "parameter \"conditions\" must be a list");
    size_t i = 0;
    for (const auto& e : c.get_array()) {
      if (!e.is_object() || !e.get_object().contains("step")
          || !e.get_object().at("step").is_string() || !e.get_object().contains("condition"))
        return make_error(errc::invalid_definition,
                          fmt::format("conditions[{}] needs \"step\" (a step name) and "
                                      "\"condition\"", i));
      ++i;
    }
    return {};
  }
  void run(std::shared_ptr<step_context> ctx, step_done done) const override {
    const auto* conds = ctx->param("conditions");
    step_outcome out = step_outcome::success(ctx->joined_input());
    size_t i = 0;
    for (const auto& e : conds->get_array()) {
      const auto& eo = e.get_object();
      auto step = std::string(eo.at("step").get_string());
      if (std::find(ctx->outputs.begin(), ctx->outputs.end(), step) == ctx->outputs.end()) {
        done(step_outcome::failure(fmt::format(
          "conditions[{}]: {} is not a step this Condition feeds", i, quote_json(step))));
        return;
      }
      auto r = evaluate(*ctx, eo.at("condition"));
      if (!r) {
        done(step_outcome::failure(fmt::format("conditions[{}] ({}): {}", i, quote_json(step),
                                               message_of(r.error()))));
        return;
      }
      std::string label = eo.contains("label") ? to_text(eo.at("label")) : step;
      ctx->log(20, fmt::format("branch {} ({}): {}", quote_json(step), label,
                               *r ? "taken" : "not taken"));
      if (!*r)
        out.not_taken.push_back(step);
      ++i;
    }
    done(std::move(out));
  }

private:
  step_info info_;
};

// -- Trigger Application ----------------------------------------------------------

class trigger_step final : public step_type {
public:
  trigger_step() {
    info_.name = "TriggerApplication";
    info_.friendly_name = "Trigger Application";
    info_.description = "Starts another application. Blocking (default): waits, outputs the "
                        "child's final data and fails when the child fails. Non-blocking: "
                        "outputs {\"task_id\", \"href\"} at once. Runs started by runs nest at "
                        "most 8 deep.";
    info_.params = {
      {"application", "The application to run.", true, nullptr, "string"},
      {"params", "One-time parameters (application variables) for the child.", false, nullptr,
       "object"},
      {"configuration", "Configuration for the child; default: the child's own.", false, nullptr,
       "string"},
      {"queue", "Queue for the child; default: the parent's.", false, nullptr, "string"},
      {"blocking", "Wait for the child and output its data.", false, true, "boolean"},
    };
  }
  const step_info& info() const noexcept override { return info_; }
  caf::error check(const json::object& params) const override {
    if (auto err = step_type::check(params))
      return err;
    if (!params.at("application").is_string())
      return make_error(errc::invalid_definition, "parameter \"application\" must be a string");
    if (auto it = params.find("params"); it != params.end() && !it->value().is_null()
                                          && !it->value().is_object())
      return make_error(errc::invalid_definition, "parameter \"params\" must be an object");
    return {};
  }
  void run(std::shared_ptr<step_context> ctx, step_done done) const override {
    auto* launcher = ctx->services.launcher;
    if (!launcher) {
      done(step_outcome::failure("this run cannot start other applications (no launcher)"));
      return;
    }
    child_run_request req;
    req.application = ctx->param_string("application");
    if (auto* p = ctx->param("params"); p && p->is_object())
      req.params = p->get_object();
    req.configuration = ctx->param_string("configuration");
    req.queue = ctx->param_string("queue");
    req.parent_task = ctx->run_id;
    bool blocking = ctx->param_bool("blocking", true);
    launcher->launch(std::move(req), [ctx, done, blocking, launcher](caf::expected<std::string> id) {
      if (!id) {
        done(step_outcome::failure(message_of(id.error())));
        return;
      }
      ctx->log(20, fmt::format("started child run {}", *id));
      if (!blocking) {
        done(step_outcome::success(json::object{
          {"task_id", *id}, {"href", fmt::format("/api/v1/tasks/{}", *id)}}));
        return;
      }
      launcher->when_done(*id, [done, id = *id](std::optional<run_record> r, json::value result) {
        if (!r) {
          done(step_outcome::failure(fmt::format("child run {} disappeared", id)));
          return;
        }
        if (r->status != run_status::success) {
          std::string why;
          for (const auto& s : r->steps)
            if (s.status == step_status::failed) {
              why = fmt::format(": step {}: {}", quote_json(s.name), s.error);
              break;
            }
          if (why.empty() && !r->error.empty())
            why = ": " + r->error;
          done(step_outcome::failure(
            fmt::format("child run {} ended {}{}", id, to_string(r->status), why),
            json::object{{"task_id", id}, {"status", to_string(r->status)}}));
          return;
        }
        done(step_outcome::success(std::move(result)));
      });
    });
  }

private:
  step_info info_;
};

} // namespace

std::shared_ptr<const step_type> make_trigger_application_step() {
  return std::make_shared<trigger_step>();
}

std::shared_ptr<const step_type> make_transform_step() {
  return std::make_shared<render_step>(
    "Transform", "Transform",
    "Renders a Jinja2 template over the data of the steps connected to it and passes the "
    "result (parsed as JSON when it is JSON) to the next steps.");
}

std::shared_ptr<const step_type> make_jinja_template_data_render_step() {
  return std::make_shared<render_step>(
    "JinjaTemplateDataRender", "Jinja Template Data Render",
    "Renders its \"template\" parameter with the input data (and \"data\") as context; the "
    "output is JSON when the text is JSON.");
}

std::shared_ptr<const step_type> make_condition_step() {
  return std::make_shared<condition_step>();
}

} // namespace stepflow::connectors
