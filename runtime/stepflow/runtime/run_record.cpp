#include "stepflow/runtime/run_record.hpp"

#include <random>

#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include "stepflow/runtime/clock.hpp"
#include "stepflow/runtime/launcher.hpp"
#include "stepflow/runtime/log_level.hpp"

namespace stepflow {

namespace {

std::string step_key(const std::string& id, size_t index) {
  std::string k = id;
  k.push_back('\0');
  k += be32(static_cast<uint32_t>(index));
  return k;
}

std::optional<step_status> parse_step_status(std::string_view s) {
  for (auto st : {step_status::pending, step_status::running, step_status::success,
                  step_status::failed, step_status::skipped})
    if (to_string(st) == s)
      return st;
  return std::nullopt;
}

std::optional<run_status> parse_run_status(std::string_view s) {
  for (auto st : {run_status::pending, run_status::running, run_status::success,
                  run_status::failed, run_status::revoked})
    if (to_string(st) == s)
      return st;
  return std::nullopt;
}

double seconds(int64_t from, int64_t to) {
  return from > 0 && to >= from ? static_cast<double>(to - from) / 1e9 : 0.0;
}

int64_t get_i64(const json::object& o, std::string_view k) {
  auto it = o.find(k);
  return it != o.end() && it->value().is_number() ? it->value().to_number<int64_t>() : 0;
}

std::string get_str(const json::object& o, std::string_view k) {
  auto it = o.find(k);
  return it != o.end() && it->value().is_string() ? std::string(it->value().get_string())
                                                  : std::string{};
}

} // namespace

std::string new_task_id() {
  // UUID version 7 (RFC 9562): 48-bit Unix milliseconds, then random bits.
  // Ids made close in time sort close together, so LMDB inserts keyed by task
  // id land on few B-tree pages (random v4 ids dirtied a page per insert).
  thread_local std::mt19937_64 rng{std::random_device{}()};
  auto ms = static_cast<uint64_t>(system_clock().now_ns() / 1'000'000);
  uint64_t r1 = rng(), r2 = rng();
  uint64_t hi = (ms << 16) | 0x7000u | (r1 & 0x0fffu);                 // time | ver | rand_a
  uint64_t lo = (r2 & 0x3fffffffffffffffull) | 0x8000000000000000ull;  // variant | rand_b
  return fmt::format("isapp-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", hi >> 32, (hi >> 16) & 0xffff,
                     hi & 0xffff, lo >> 48, lo & 0xffffffffffffull);
}

json::value to_json(const log_line& l) {
  return json::object{{"time", format_time(l.time_ns)},
                      {"time_ns", l.time_ns},
                      {"level", l.level},
                      {"levelname", log_level_name(l.level)},
                      {"message", l.message}};
}

json::value to_json(const run_record& r, bool with_data) {
  json::array steps;
  for (size_t i = 0; i < r.steps.size(); ++i) {
    const auto& s = r.steps[i];
    json::object so{{"name", s.name},
                    {"file", s.file},
                    {"status", to_string(s.status)},
                    {"started", s.started_ns ? json::value(format_time(s.started_ns)) : nullptr},
                    {"ended", s.ended_ns ? json::value(format_time(s.ended_ns)) : nullptr},
                    {"started_ns", s.started_ns},
                    {"ended_ns", s.ended_ns},
                    {"duration", seconds(s.started_ns, s.ended_ns)},
                    {"error", s.error.empty() ? json::value(nullptr) : json::value(s.error)},
                    {"log_count", s.log_count},
                    {"logs_href", fmt::format("/api/v1/tasks/{}/steps/{}/logs", r.task_id, i)},
                    {"data_href", fmt::format("/api/v1/tasks/{}/steps/{}/data", r.task_id, i)}};
    if (with_data)
      so["data"] = s.data ? *s.data : json::value(nullptr);
    steps.push_back(std::move(so));
  }
  json::object o{{"task_id", r.task_id},
                 {"application", r.application},
                 {"status", to_string(r.status)},
                 {"log_level", r.log_level},
                 {"configuration", r.configuration},
                 {"queue", r.queue},
                 {"priority", r.priority},
                 {"params", r.params},
                 {"created", format_time(r.created_ns)},
                 {"started", r.started_ns ? json::value(format_time(r.started_ns)) : nullptr},
                 {"ended", r.ended_ns ? json::value(format_time(r.ended_ns)) : nullptr},
                 {"created_ns", r.created_ns},
                 {"started_ns", r.started_ns},
                 {"ended_ns", r.ended_ns},
                 {"duration", seconds(r.started_ns, r.ended_ns)},
                 {"error", r.error.empty() ? json::value(nullptr) : json::value(r.error)},
                 {"parent_task", r.parent_task.empty() ? json::value(nullptr)
                                                       : json::value(r.parent_task)},
                 {"replay_of", r.replay_of.empty() ? json::value(nullptr)
                                                   : json::value(r.replay_of)},
                 {"attempt", r.attempt},
                 {"href", fmt::format("/api/v1/tasks/{}", r.task_id)},
                 {"steps", std::move(steps)}};
  return o;
}

namespace {

caf::expected<run_record> from_json(const json::value& v) {
  if (!v.is_object())
    return make_error(errc::store_error, "corrupt run record");
  const auto& o = v.get_object();
  run_record r;
  r.task_id = get_str(o, "task_id");
  r.application = get_str(o, "application");
  r.configuration = get_str(o, "configuration");
  r.queue = get_str(o, "queue");
  r.priority = static_cast<int>(get_i64(o, "priority"));
  if (auto it = o.find("params"); it != o.end() && it->value().is_object())
    r.params = it->value().get_object();
  r.log_level = static_cast<int>(get_i64(o, "log_level"));
  r.status = parse_run_status(get_str(o, "status")).value_or(run_status::pending);
  r.created_ns = get_i64(o, "created_ns");
  r.started_ns = get_i64(o, "started_ns");
  r.ended_ns = get_i64(o, "ended_ns");
  r.error = get_str(o, "error");
  r.parent_task = get_str(o, "parent_task");
  r.replay_of = get_str(o, "replay_of");
  r.queue = r.queue.empty() ? std::string("default") : r.queue;
  auto attempt = get_i64(o, "attempt");
  r.attempt = attempt > 0 ? static_cast<uint32_t>(attempt) : 1;
  if (auto it = o.find("steps"); it != o.end() && it->value().is_array())
    for (const auto& sv : it->value().get_array()) {
      if (!sv.is_object())
        continue;
      const auto& so = sv.get_object();
      step_record s;
      s.name = get_str(so, "name");
      s.file = get_str(so, "file");
      s.status = parse_step_status(get_str(so, "status")).value_or(step_status::pending);
      s.started_ns = get_i64(so, "started_ns");
      s.ended_ns = get_i64(so, "ended_ns");
      s.error = get_str(so, "error");
      s.log_count = static_cast<uint32_t>(get_i64(so, "log_count"));
      r.steps.push_back(std::move(s));
    }
  return r;
}

} // namespace

namespace {

// The stored task object: what from_json reads, with defaults left out
// (accepting a run writes one of these on the hot path, and the smaller it
// is the fewer LMDB pages each commit writes). The display form is made by
// to_json when read.
void append_int(std::string& out, int64_t v) {
  fmt::format_int f(v);
  out.append(f.data(), f.size());
}

void append_key(std::string& out, std::string_view key) {
  out += ",\"";
  out += key;
  out += "\":";
}

void append_text_unless_empty(std::string& out, std::string_view key, const std::string& v) {
  if (!v.empty()) {
    append_key(out, key);
    append_json_string(out, v);
  }
}

void append_int_unless(std::string& out, std::string_view key, int64_t v, int64_t dflt) {
  if (v != dflt) {
    append_key(out, key);
    append_int(out, v);
  }
}

} // namespace

std::string stored_run_json(const run_record& r) {
  std::string out;
  out.reserve(256 + 64 * r.steps.size());
  out += "{\"task_id\":";
  append_json_string(out, r.task_id);
  append_key(out, "application");
  append_json_string(out, r.application);
  append_key(out, "status");
  append_json_string(out, to_string(r.status));
  append_key(out, "log_level");
  append_int(out, r.log_level);
  append_key(out, "queue");
  append_json_string(out, r.queue);
  append_text_unless_empty(out, "configuration", r.configuration);
  append_int_unless(out, "priority", r.priority, 0);
  if (!r.params.empty()) {
    append_key(out, "params");
    out += json::serialize(r.params); // no copy into a value first
  }
  append_int_unless(out, "created_ns", r.created_ns, 0);
  append_int_unless(out, "started_ns", r.started_ns, 0);
  append_int_unless(out, "ended_ns", r.ended_ns, 0);
  append_text_unless_empty(out, "error", r.error);
  append_text_unless_empty(out, "parent_task", r.parent_task);
  append_text_unless_empty(out, "replay_of", r.replay_of);
  append_int_unless(out, "attempt", r.attempt, 1);
  out += ",\"steps\":[";
  for (size_t i = 0; i < r.steps.size(); ++i) {
    const auto& st = r.steps[i];
    out += i ? ",{\"name\":" : "{\"name\":";
    append_json_string(out, st.name);
    append_key(out, "file");
    append_json_string(out, st.file);
    if (st.status != step_status::pending) {
      append_key(out, "status");
      append_json_string(out, to_string(st.status));
    }
    append_int_unless(out, "started_ns", st.started_ns, 0);
    append_int_unless(out, "ended_ns", st.ended_ns, 0);
    append_text_unless_empty(out, "error", st.error);
    append_int_unless(out, "log_count", st.log_count, 0);
    out += '}';
  }
  out += "]}";
  return out;
}


caf::expected<run_record> parse_stored_run(std::string_view raw) {
  auto doc = parse_json(raw, "run record");
  if (!doc)
    return doc.error();
  return from_json(*doc);
}

write_batch run_store::record_ops(const run_record& r) const {
  write_batch b;
  b.push_back({write_op::put, table::runs, r.task_id, stored_run_json(r)});
  b.push_back({write_op::put, table::runs_by_time, be64(static_cast<uint64_t>(r.created_ns)) + r.task_id, {}});
  return b;
}

write_batch run_store::step_ops(const run_record& r, size_t index,
                                const std::vector<log_line>& logs, uint32_t first_seq) const {
  // Only this step: the cost of recording a step does not grow with the
  // number of steps. load() merges step records over the run record.
  write_batch b;
  const auto& s = r.steps[index];
  auto key = step_key(r.task_id, index);
  // Serialised directly: the step's data is written, never copied.
  std::string rec = fmt::format(R"({{"status":"{}","started_ns":{},"ended_ns":{},"error":{},)"
                                R"("log_count":{},"data":)",
                                to_string(s.status), s.started_ns, s.ended_ns,
                                quote_json(s.error), s.log_count);
  rec += s.data ? to_json(*s.data) : std::string("null");
  rec += '}';
  b.push_back({write_op::put, table::step_state, key, std::move(rec)});
  uint32_t seq = first_seq;
  for (const auto& l : logs) {
    // Stored compactly; the display form (with "time" and "levelname") is
    // built when read.
    json::object lo{{"time_ns", l.time_ns}, {"level", l.level}, {"message", l.message}};
    b.push_back({write_op::put, table::step_logs, key + be32(seq++), to_json(lo)});
  }
  return b;
}

caf::expected<std::optional<run_record>> run_store::load(const std::string& task_id) const {
  auto raw = store_.get(table::runs, task_id);
  if (!raw)
    return raw.error();
  if (!*raw)
    return std::optional<run_record>{};
  auto doc = parse_json(**raw, "run record");
  if (!doc)
    return doc.error();
  auto rec = from_json(*doc);
  if (!rec)
    return rec.error();
  for (size_t i = 0; i < rec->steps.size(); ++i) {
    auto d = store_.get(table::step_state, step_key(task_id, i));
    if (!d)
      return d.error();
    if (*d) {
      auto v = parse_json(**d, "step record");
      if (!v)
        return v.error();
      if (!v->is_object())
        return make_error(errc::store_error, "corrupt step record");
      auto& so = v->get_object();
      auto& s = rec->steps[i];
      if (auto st = parse_step_status(get_str(so, "status")))
        s.status = *st;
      s.started_ns = get_i64(so, "started_ns");
      s.ended_ns = get_i64(so, "ended_ns");
      s.error = get_str(so, "error");
      s.log_count = static_cast<uint32_t>(get_i64(so, "log_count"));
      if (auto it = so.find("data"); it != so.end() && !(it->value().is_null() && s.status != step_status::success))
        s.data = std::make_shared<const json::value>(std::move(it->value()));
    }
  }
  // A run whose record still says pending but whose steps have started is
  // running (the server does not rewrite the record when a run starts).
  if (rec->status == run_status::pending)
    for (const auto& s : rec->steps)
      if (s.status != step_status::pending && s.started_ns > 0) {
        rec->status = run_status::running;
        if (rec->started_ns == 0 || s.started_ns < rec->started_ns)
          rec->started_ns = s.started_ns;
      }
  return std::optional<run_record>{std::move(*rec)};
}

caf::expected<std::vector<log_line>> run_store::logs(const std::string& task_id,
                                                     size_t index) const {
  std::vector<log_line> out;
  caf::error parse_err;
  auto err = store_.scan(table::step_logs, step_key(task_id, index), {}, false,
                         [&](std::string_view, std::string_view v) {
                           auto doc = parse_json(v, "log line");
                           if (!doc || !doc->is_object()) {
                             parse_err = make_error(errc::store_error, "corrupt log line");
                             return false;
                           }
                           const auto& o = doc->get_object();
                           log_line l;
                           l.level = static_cast<int>(get_i64(o, "level"));
                           l.message = get_str(o, "message");
                           // time is stored formatted; keep ns 0 and the text in message order
                           l.time_ns = 0;
                           if (auto t = o.find("time_ns"); t != o.end() && t->value().is_number())
                             l.time_ns = t->value().to_number<int64_t>();
                           out.push_back(std::move(l));
                           return true;
                         });
  if (err)
    return err;
  if (parse_err)
    return parse_err;
  return out;
}

caf::expected<std::vector<run_record>> run_store::list(size_t limit) const {
  if (limit == 0)
    return std::vector<run_record>{};
  std::vector<std::string> ids;
  auto err = store_.scan(table::runs_by_time, {}, {}, true,
                         [&](std::string_view k, std::string_view) {
                           ids.emplace_back(k.substr(8));
                           return ids.size() < limit;
                         });
  if (err)
    return err;
  std::vector<run_record> out;
  for (const auto& id : ids) {
    auto raw = store_.get(table::runs, id);
    if (!raw)
      return raw.error();
    if (!*raw)
      continue;
    auto doc = parse_json(**raw, "run record");
    if (!doc)
      return doc.error();
    auto rec = from_json(*doc);
    if (!rec)
      return rec.error();
    out.push_back(std::move(*rec));
  }
  return out;
}

caf::expected<uint64_t> run_store::purge_before(int64_t cutoff_ns) {
  std::vector<std::string> keys;
  auto err = store_.scan(table::runs_by_time, {}, {}, false,
                         [&](std::string_view k, std::string_view) {
                           if (static_cast<int64_t>(read_be64(k)) >= cutoff_ns)
                             return false;
                           keys.emplace_back(k);
                           return true;
                         });
  if (err)
    return err;
  uint64_t n = 0;
  for (size_t start = 0; start < keys.size(); start += 256) {
    write_batch b;
    for (size_t i = start; i < keys.size() && i < start + 256; ++i) {
      auto id = keys[i].substr(8);
      b.push_back({write_op::erase, table::runs_by_time, keys[i], {}});
      b.push_back({write_op::erase, table::runs, id, {}});
      b.push_back({write_op::erase_prefix, table::step_state, id + std::string(1, '\0'), {}});
      b.push_back({write_op::erase_prefix, table::step_logs, id + std::string(1, '\0'), {}});
      ++n;
    }
    if (auto werr = store_.write(std::move(b)))
      return werr;
  }
  return n;
}

json::value child_result(const run_record& r, const std::vector<bool>& is_sink) {
  json::object by_name;
  const json::value* only = nullptr;
  size_t n = 0;
  for (size_t i = 0; i < r.steps.size(); ++i) {
    const auto& s = r.steps[i];
    if (i < is_sink.size() && !is_sink[i])
      continue;
    if (s.status != step_status::success)
      continue;
    auto v = s.data ? *s.data : json::value(nullptr);
    by_name[s.name] = v;
    ++n;
    only = s.data ? s.data.get() : nullptr;
  }
  if (n == 1)
    return only ? *only : json::value(nullptr);
  return by_name;
}

} // namespace stepflow
