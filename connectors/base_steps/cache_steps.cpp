#include "base_steps/base_steps.hpp"

#include <fmt/format.h>

#include "stepflow/runtime/cache.hpp"

namespace stepflow::connectors {

namespace {

const param_info key_param{"key", "The cache key.", true, nullptr, "string"};

/// Common base: every cache step needs the cache service.
class cache_step : public step_type {
public:
  const step_info& info() const noexcept override { return info_; }

protected:
  static bool need_cache(const step_context& ctx, const step_done& done) {
    if (ctx.services.cache)
      return true;
    done(step_outcome::failure("no cache is available to this run"));
    return false;
  }
  step_info info_;
};

class cache_save_step final : public cache_step {
public:
  cache_save_step() {
    info_.name = "CacheSave";
    info_.friendly_name = "Cache Save";
    info_.description = "Saves a value in the cache under a key and passes the value on.";
    info_.params = {key_param,
                    {"value", "The value to save; default: the data of the previous step(s).",
                     false, nullptr, "any"},
                    {"ttl", "Seconds until the entry expires; 0 keeps it forever.", false, 0,
                     "number"}};
  }
  void run(std::shared_ptr<step_context> ctx, step_done done) const override {
    if (!need_cache(*ctx, done))
      return;
    auto key = ctx->param_string("key");
    if (key.empty()) {
      done(step_outcome::failure("parameter \"key\" must not be empty"));
      return;
    }
    auto* v = ctx->param("value");
    auto value = std::make_shared<json::value>(v ? *v : ctx->joined_input());
    auto ttl = static_cast<int64_t>(ctx->param_number("ttl", 0));
    ctx->log(20, fmt::format("saving cache key {}", quote_json(key)));
    ctx->services.cache->put_async(key, *value, ttl, [value, key, done](caf::error err) {
      if (err)
        done(step_outcome::failure(
          fmt::format("cannot save cache key {}: {}", quote_json(key), message_of(err))));
      else
        done(step_outcome::success(std::move(*value)));
    });
  }
};

class cache_read_step final : public cache_step {
public:
  cache_read_step() {
    info_.name = "CacheRead";
    info_.friendly_name = "Cache Read";
    info_.description = "Outputs the cached value under a key. A missing key fails the step "
                        "unless \"default\" is given.";
    info_.params = {key_param,
                    {"default", "Output when the key is missing or expired.", false, nullptr,
                     "any"}};
  }
  void run(std::shared_ptr<step_context> ctx, step_done done) const override {
    if (!need_cache(*ctx, done))
      return;
    auto key = ctx->param_string("key");
    auto v = ctx->services.cache->get(key);
    if (!v) {
      done(step_outcome::failure(message_of(v.error())));
    } else if (*v) {
      done(step_outcome::success(std::move(**v)));
    } else if (auto* d = ctx->param("default")) {
      done(step_outcome::success(*d));
    } else {
      done(step_outcome::failure(fmt::format("no cache entry named {}", quote_json(key))));
    }
  }
};

class cache_delete_step final : public cache_step {
public:
  cache_delete_step() {
    info_.name = "CacheDelete";
    info_.friendly_name = "Cache Delete";
    info_.description = "Deletes a cache entry (a missing key is not an error); passes its "
                        "input data on.";
    info_.params = {key_param};
  }
  void run(std::shared_ptr<step_context> ctx, step_done done) const override {
    if (!need_cache(*ctx, done))
      return;
    auto key = ctx->param_string("key");
    auto passed_on = std::make_shared<json::value>(ctx->joined_input());
    ctx->services.cache->erase_async(key, [passed_on, done](caf::error err) {
      if (err)
        done(step_outcome::failure(message_of(err)));
      else
        done(step_outcome::success(std::move(*passed_on)));
    });
  }
};

class direct_cache_read_step final : public cache_step {
public:
  direct_cache_read_step() {
    info_.name = "DirectCacheRead";
    info_.friendly_name = "Direct Cache Read";
    info_.description = "Reads one or more cache keys and outputs {key: value}; missing or "
                        "expired keys give null instead of failing.";
    info_.params = {{"key", "One cache key.", false, nullptr, "string"},
                    {"keys", "A list of cache keys.", false, nullptr, "array"}};
  }
  caf::error check(const json::object& params) const override {
    auto k = params.find("key");
    auto ks = params.find("keys");
    if ((k == params.end() || k->value().is_null()) && (ks == params.end() || ks->value().is_null()))
      return make_error(errc::invalid_definition, "DirectCacheRead needs \"key\" or \"keys\"");
    if (ks != params.end() && !ks->value().is_null() && !ks->value().is_array())
      return make_error(errc::invalid_definition, "parameter \"keys\" must be a list of keys");
    return {};
  }
  void run(std::shared_ptr<step_context> ctx, step_done done) const override {
    if (!need_cache(*ctx, done))
      return;
    std::vector<std::string> keys;
    if (auto* k = ctx->param("key"); k && !k->is_null())
      keys.push_back(to_text(*k));
    if (auto* ks = ctx->param("keys"); ks && ks->is_array())
      for (const auto& e : ks->get_array())
        keys.push_back(to_text(e));
    json::object out;
    for (const auto& key : keys) {
      auto v = ctx->services.cache->get(key);
      if (!v) {
        done(step_outcome::failure(message_of(v.error())));
        return;
      }
      out[key] = *v ? std::move(**v) : json::value(nullptr);
    }
    done(step_outcome::success(std::move(out)));
  }
};

} // namespace

std::shared_ptr<const step_type> make_cache_save_step() {
  return std::make_shared<cache_save_step>();
}
std::shared_ptr<const step_type> make_cache_read_step() {
  return std::make_shared<cache_read_step>();
}
std::shared_ptr<const step_type> make_cache_delete_step() {
  return std::make_shared<cache_delete_step>();
}
std::shared_ptr<const step_type> make_direct_cache_read_step() {
  return std::make_shared<direct_cache_read_step>();
}

} // namespace stepflow::connectors
