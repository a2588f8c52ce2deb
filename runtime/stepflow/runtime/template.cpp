// Template engine API, the process-wide cache, and Python-like value helpers
// (str/repr, equality, ordering, json.dumps).
#include "stepflow/runtime/template.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <map>
#include <mutex>

#include "stepflow/runtime/template_internal.hpp"

namespace stepflow {

compiled_template::compiled_template(std::unique_ptr<const impl> p) noexcept
  : impl_(std::move(p)) {}

compiled_template::~compiled_template() = default;

const std::string& compiled_template::name() const noexcept {
  return impl_->name;
}

namespace {

std::vector<size_t> line_starts_of(std::string_view src) {
  std::vector<size_t> starts{0};
  for (size_t i = 0; i < src.size(); ++i)
    if (src[i] == '\n')
      starts.push_back(i + 1);
  return starts;
}

std::string located(const std::string& name, const std::vector<size_t>& starts, long pos,
                    const std::string& msg) {
  size_t line = 1;
  size_t col = 1;
  if (pos >= 0) {
    auto it = std::upper_bound(starts.begin(), starts.end(), static_cast<size_t>(pos));
    line = static_cast<size_t>(it - starts.begin());
    col = static_cast<size_t>(pos) - starts[line - 1] + 1;
  }
  return name + ":" + std::to_string(line) + ":" + std::to_string(col) + ": " + msg;
}

// Jinja2's lexer splits on \r\n, \r and \n, joins with \n, and (without
// keep_trailing_newline) drops one trailing newline.
std::string normalize_source(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    char c = source[i];
    if (c == '\r') {
      out += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n')
        ++i;
    } else {
      out += c;
    }
  }
  if (!out.empty() && out.back() == '\n')
    out.pop_back();
  return out;
}

} // namespace

caf::expected<std::shared_ptr<const compiled_template>>
compile_template(std::string_view source, std::string_view name) {
  auto p = std::make_unique<compiled_template::impl>();
  p->name = std::string(name);
  std::string src = normalize_source(source);
  p->line_starts = line_starts_of(src);
  try {
    p->body = tmpl::parse_template(src, static_cast<int>(template_limits{}.max_depth) + 56);
  } catch (const tmpl::template_error& e) {
    return make_error(errc::invalid_argument, located(p->name, p->line_starts, e.pos, e.msg));
  }
  return std::make_shared<const compiled_template>(std::move(p));
}

caf::expected<std::string> render(const compiled_template& t, const json::object& context,
                                  const template_limits& limits) {
  const auto& p = t.internals();
  try {
    tmpl::evaluator ev(limits);
    return ev.render(p.body, context);
  } catch (const tmpl::template_error& e) {
    return make_error(errc::invalid_argument, located(p.name, p.line_starts, e.pos, e.msg));
  } catch (const std::bad_alloc&) {
    return make_error(errc::invalid_argument, p.name + ": out of memory while rendering");
  }
}

caf::expected<std::shared_ptr<const compiled_template>>
cached_template(std::string_view source, std::string_view name) {
  static std::mutex mtx;
  static std::map<std::pair<std::string, std::string>, std::shared_ptr<const compiled_template>,
                  std::less<>>
    cache;
  constexpr size_t max_entries = 4096;
  std::pair<std::string, std::string> key{std::string(name), std::string(source)};
  {
    std::lock_guard<std::mutex> g(mtx);
    if (auto it = cache.find(key); it != cache.end())
      return it->second;
  }
  auto compiled = compile_template(source, name);
  if (!compiled)
    return compiled;
  std::lock_guard<std::mutex> g(mtx);
  if (cache.size() >= max_entries)
    cache.clear();
  auto [it, inserted] = cache.emplace(std::move(key), *compiled);
  return it->second;
}

} // namespace stepflow

namespace stepflow::tmpl {

// -- construction ------------------------------------------------------------------

value make_undefined(std::string hint) {
  value v;
  v.v = undefined_t{std::make_shared<const std::string>(std::move(hint))};
  return v;
}

value make_list(std::vector<value> items) {
  return value(list_v{std::make_shared<std::vector<value>>(std::move(items))});
}

value make_view(uint8_t kind, std::vector<value> items) {
  return value(list_v{std::make_shared<std::vector<value>>(std::move(items)), kind});
}

value make_tuple(std::vector<value> items) {
  return value(tuple_v{std::make_shared<std::vector<value>>(std::move(items))});
}

value make_dict() {
  return value(dict_v{std::make_shared<dict_t>()});
}

value make_callable(std::string name, std::function<value(evaluator&, call_args&)> fn) {
  return value(call_v{std::make_shared<const callable_t>(callable_t{std::move(name), std::move(fn)})});
}

void fail(std::string msg) {
  throw template_error{std::move(msg), -1};
}

void fail_undefined(const value& u) {
  const auto& h = std::get<undefined_t>(u.v).hint;
  fail(h && !h->empty() ? *h : std::string("value is undefined"));
}

const value* call_args::get(size_t i, std::string_view name) const {
  for (auto& [k, v] : kw)
    if (k == name)
      return &v;
  if (i < pos.size())
    return &pos[i];
  return nullptr;
}

// -- dict --------------------------------------------------------------------------

std::string hash_key(const value& v) {
  switch (v.v.index()) {
    case 0: return "u";
    case 1: return "n";
    case 2:
    case 3: return "i" + std::to_string(v.as_int());
    case 4: {
      double d = std::get<double>(v.v);
      if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.2e18)
        return "i" + std::to_string(static_cast<int64_t>(d));
      return "f" + float_repr(d);
    }
    case 5: return "s" + v.str();
    case 7: {
      std::string k = "t(";
      for (auto& x : v.items())
        k += hash_key(x) + ",";
      return k + ")";
    }
    case 9: return "c" + std::to_string(reinterpret_cast<uintptr_t>(std::get<call_v>(v.v).p.get()));
    default: fail("unhashable type: '" + type_name(v) + "'");
  }
}

value* dict_t::find(const value& key) {
  auto it = index.find(hash_key(key));
  return it == index.end() ? nullptr : &entries[it->second].second;
}

value* dict_t::find_str(std::string_view key) {
  auto it = index.find("s" + std::string(key));
  return it == index.end() ? nullptr : &entries[it->second].second;
}

void dict_t::set(value key, value v) {
  auto h = hash_key(key);
  auto it = index.find(h);
  if (it != index.end()) {
    entries[it->second].second = std::move(v);
    return;
  }
  index.emplace(std::move(h), entries.size());
  entries.emplace_back(std::move(key), std::move(v));
}

bool dict_t::erase(const value& key) {
  auto it = index.find(hash_key(key));
  if (it == index.end())
    return false;
  size_t i = it->second;
  entries.erase(entries.begin() + static_cast<ptrdiff_t>(i));
  index.clear();
  for (size_t k = 0; k < entries.size(); ++k)
    index.emplace(hash_key(entries[k].first), k);
  return true;
}

// -- UTF-8 -------------------------------------------------------------------------

std::u32string decode_utf8(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    char32_t cp;
    int n;
    if (c < 0x80) {
      cp = c;
      n = 1;
    } else if ((c >> 5) == 6) {
      cp = c & 0x1f;
      n = 2;
    } else if ((c >> 4) == 14) {
      cp = c & 0x0f;
      n = 3;
    } else if ((c >> 3) == 30) {
      cp = c & 0x07;
      n = 4;
    } else {
      out += U'\uFFFD';
      ++i;
      continue;
    }
    if (i + static_cast<size_t>(n) > s.size()) {
      out += U'\uFFFD';
      ++i;
      continue;
    }
    bool ok = true;
    for (int k = 1; k < n; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + static_cast<size_t>(k)]);
      if ((cc >> 6) != 2) {
        ok = false;
        break;
      }
      cp = (cp << 6) | (cc & 0x3f);
    }
    if (!ok) {
      out += U'\uFFFD';
      ++i;
      continue;
    }
    out += cp;
    i += static_cast<size_t>(n);
  }
  return out;
}

std::string encode_utf8(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) {
    if (c < 0x80) {
      out += static_cast<char>(c);
    } else if (c < 0x800) {
      out += static_cast<char>(0xc0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3f));
    } else if (c < 0x10000) {
      out += static_cast<char>(0xe0 | (c >> 12));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (c & 0x3f));
    } else {
      out += static_cast<char>(0xf0 | (c >> 18));
      out += static_cast<char>(0x80 | ((c >> 12) & 0x3f));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (c & 0x3f));
    }
  }
  return out;
}

size_t utf8_length(std::string_view s) {
  size_t n = 0;
  for (char c : s)
    if ((static_cast<unsigned char>(c) & 0xc0) != 0x80)
      ++n;
  return n;
}

char32_t upper_cp(char32_t c) {
  if (c >= 'a' && c <= 'z')
    return c - 32;
  if (c < 0x80)
    return c;
  if ((c >= 0xe0 && c <= 0xfe && c != 0xf7))
    return c - 32;
  if (c == 0xff)
    return 0x178;
  if (c >= 0x100 && c <= 0x17f && c != 0x130 && c != 0x131 && c != 0x138 && c != 0x149 &&
      c != 0x17f) {
    bool odd_upper = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e);
    if (odd_upper)
      return (c % 2 == 0) ? c - 1 : c;
    return (c % 2 == 1) ? c - 1 : c;
  }
  if (c >= 0x3b1 && c <= 0x3c9 && c != 0x3c2)
    return c - 32;
  if (c >= 0x430 && c <= 0x44f)
    return c - 32;
  if (c >= 0x450 && c <= 0x45f)
    return c - 80;
  return c;
}

char32_t lower_cp(char32_t c) {
  if (c >= 'A' && c <= 'Z')
    return c + 32;
  if (c < 0x80)
    return c;
  if (c >= 0xc0 && c <= 0xde && c != 0xd7)
    return c + 32;
  if (c == 0x178)
    return 0xff;
  if (c >= 0x100 && c <= 0x17f && c != 0x130 && c != 0x131 && c != 0x138 && c != 0x149 &&
      c != 0x17f) {
    bool odd_upper = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e);
    if (odd_upper)
      return (c % 2 == 1) ? c + 1 : c;
    return (c % 2 == 0) ? c + 1 : c;
  }
  if (c >= 0x391 && c <= 0x3a9 && c != 0x3a2)
    return c + 32;
  if (c >= 0x410 && c <= 0x42f)
    return c + 32;
  if (c >= 0x400 && c <= 0x40f)
    return c + 80;
  return c;
}

bool is_space_cp(char32_t c) {
  return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f) || c == 0x85 ||
         c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 ||
         c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

std::string str_upper(std::string_view s) {
  auto u = decode_utf8(s);
  for (auto& c : u)
    c = upper_cp(c);
  return encode_utf8(u);
}

std::string str_lower(std::string_view s) {
  auto u = decode_utf8(s);
  for (auto& c : u)
    c = lower_cp(c);
  return encode_utf8(u);
}

// -- str / repr --------------------------------------------------------------------

std::string type_name(const value& v) {
  switch (v.v.index()) {
    case 0: return "Undefined";
    case 1: return "NoneType";
    case 2: return "bool";
    case 3: return "int";
    case 4: return "float";
    case 5: return "str";
    case 6:
      return v.view() == 1   ? "dict_keys"
             : v.view() == 2 ? "dict_values"
             : v.view() == 3 ? "dict_items"
                             : "list";
    case 7: return "tuple";
    case 8: {
      auto k = v.dict().kind;
      return k == dict_t::kind_t::namespace_ ? "Namespace"
             : k == dict_t::kind_t::loop   ? "LoopContext"
                                           : "dict";
    }
    default: return "function";
  }
}

bool truthy(const value& v) {
  switch (v.v.index()) {
    case 0:
    case 1: return false;
    case 2: return std::get<bool>(v.v);
    case 3: return std::get<int64_t>(v.v) != 0;
    case 4: return std::get<double>(v.v) != 0.0;
    case 5: return !v.str().empty();
    case 6:
    case 7: return !v.items().empty();
    case 8: return v.dict().kind != dict_t::kind_t::plain || !v.dict().entries.empty();
    default: return true;
  }
}

std::string float_repr(double d) {
  if (std::isnan(d))
    return "nan";
  if (std::isinf(d))
    return d < 0 ? "-inf" : "inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string s(buf, r.ptr);
  std::string sign;
  if (s[0] == '-') {
    sign = "-";
    s.erase(0, 1);
  }
  size_t e = s.find('e');
  std::string mant = s.substr(0, e);
  int exp = std::stoi(s.substr(e + 1));
  std::string digits;
  for (char c : mant)
    if (c != '.')
      digits += c;
  while (digits.size() > 1 && digits.back() == '0')
    digits.pop_back();
  int decpt = exp + 1;
  std::string out;
  if (decpt > 16 || decpt < -3) {
    out = digits.substr(0, 1);
    if (digits.size() > 1)
      out += "." + digits.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof eb, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
    out += eb;
  } else if (decpt <= 0) {
    out = "0." + std::string(static_cast<size_t>(-decpt), '0') + digits;
  } else if (static_cast<size_t>(decpt) >= digits.size()) {
    out = digits + std::string(static_cast<size_t>(decpt) - digits.size(), '0') + ".0";
  } else {
    out = digits.substr(0, static_cast<size_t>(decpt)) + "." +
          digits.substr(static_cast<size_t>(decpt));
  }
  return sign + out;
}

namespace {

std::string repr_str(const std::string& s) {
  bool has_single = s.find('\'') != std::string::npos;
  bool has_double = s.find('"') != std::string::npos;
  char q = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, q);
  for (char32_t c : decode_utf8(s)) {
    char buf[16];
    if (c == static_cast<char32_t>(q) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f || (c >= 0x80 && c <= 0xa0) || c == 0xad) {
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(c));
      out += buf;
    } else if ((c >= 0x2028 && c <= 0x202f) || (c >= 0xd800 && c <= 0xdfff) || c == 0xfeff) {
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
      out += buf;
    } else {
      out += encode_utf8(std::u32string(1, c));
    }
  }
  out += q;
  return out;
}

} // namespace

std::string repr(const value& v) {
  switch (v.v.index()) {
    case 0: return "Undefined";
    case 5: return repr_str(v.str());
    case 6: {
      std::string out = "[";
      bool first = true;
      for (auto& x : v.items()) {
        if (!first)
          out += ", ";
        first = false;
        out += repr(x);
      }
      out += "]";
      switch (v.view()) {
        case 1: return "dict_keys(" + out + ")";
        case 2: return "dict_values(" + out + ")";
        case 3: return "dict_items(" + out + ")";
        default: return out;
      }
    }
    case 7: {
      std::string out = "(";
      auto& items = v.items();
      for (size_t i = 0; i < items.size(); ++i) {
        if (i)
          out += ", ";
        out += repr(items[i]);
      }
      if (items.size() == 1)
        out += ",";
      return out + ")";
    }
    case 8: {
      auto& d = v.dict();
      if (d.kind == dict_t::kind_t::loop) {
        auto* idx = d.find_str("index");
        auto* len = d.find_str("length");
        return "<LoopContext " + (idx ? to_str(*idx) : "?") + "/" + (len ? to_str(*len) : "?") + ">";
      }
      std::string out = "{";
      bool first = true;
      for (auto& [k, x] : d.entries) {
        if (!first)
          out += ", ";
        first = false;
        out += repr(k) + ": " + repr(x);
      }
      out += "}";
      if (d.kind == dict_t::kind_t::namespace_)
        return "<Namespace " + out + ">";
      return out;
    }
    default: return to_str(v);
  }
}

std::string to_str(const value& v) {
  switch (v.v.index()) {
    case 0: return "";
    case 1: return "None";
    case 2: return std::get<bool>(v.v) ? "True" : "False";
    case 3: return std::to_string(std::get<int64_t>(v.v));
    case 4: return float_repr(std::get<double>(v.v));
    case 5: return v.str();
    case 9: return "<built-in function " + v.fn().name + ">";
    default: return repr(v);
  }
}

// -- comparison --------------------------------------------------------------------

bool equals(const value& a, const value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float())
      return a.as_float() == b.as_float();
    return a.as_int() == b.as_int();
  }
  if (a.v.index() != b.v.index() || a.view() != b.view())
    return false;
  switch (a.v.index()) {
    case 0:
    case 1: return true;
    case 5: return a.str() == b.str();
    case 6:
    case 7: {
      auto& x = a.items();
      auto& y = b.items();
      if (&x == &y)
        return true;
      if (x.size() != y.size())
        return false;
      for (size_t i = 0; i < x.size(); ++i)
        if (!equals(x[i], y[i]))
          return false;
      return true;
    }
    case 8: {
      auto& x = a.dict();
      auto& y = b.dict();
      if (&x == &y)
        return true;
      if (x.entries.size() != y.entries.size() || x.kind != y.kind)
        return false;
      if (x.kind != dict_t::kind_t::plain)
        return false;
      for (auto& [k, v] : x.entries) {
        auto* o = y.find(k);
        if (!o || !equals(v, *o))
          return false;
      }
      return true;
    }
    case 9: return std::get<call_v>(a.v).p == std::get<call_v>(b.v).p;
    default: return false;
  }
}

int compare(const value& a, const value& b) {
  if (a.is_undefined())
    fail_undefined(a);
  if (b.is_undefined())
    fail_undefined(b);
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) {
      double x = a.as_float(), y = b.as_float();
      return x < y ? -1 : x > y ? 1 : 0;
    }
    int64_t x = a.as_int(), y = b.as_int();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is_str() && b.is_str()) {
    int c = a.str().compare(b.str());
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  if ((a.is_list() && b.is_list()) || (a.is_tuple() && b.is_tuple())) {
    auto& x = a.items();
    auto& y = b.items();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (equals(x[i], y[i]))
        continue;
      return compare(x[i], y[i]);
    }
    return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
  }
  fail("'<' not supported between instances of '" + type_name(a) + "' and '" + type_name(b) + "'");
}

std::vector<value> iterate(const value& v) {
  switch (v.v.index()) {
    case 0: return {};
    case 5: {
      std::vector<value> out;
      for (char32_t c : decode_utf8(v.str()))
        out.emplace_back(encode_utf8(std::u32string(1, c)));
      return out;
    }
    case 6:
    case 7: return v.items();
    case 8: {
      std::vector<value> out;
      for (auto& [k, x] : v.dict().entries)
        out.push_back(k);
      return out;
    }
    default: fail("'" + type_name(v) + "' object is not iterable");
  }
}

int64_t length(const value& v) {
  switch (v.v.index()) {
    case 0: return 0;
    case 5: return static_cast<int64_t>(utf8_length(v.str()));
    case 6:
    case 7: return static_cast<int64_t>(v.items().size());
    case 8: return static_cast<int64_t>(v.dict().entries.size());
    default: fail("object of type '" + type_name(v) + "' has no len()");
  }
}

bool contains(const value& c, const value& item) {
  switch (c.v.index()) {
    case 0: return false;
    case 5:
      if (!item.is_str())
        fail("'in <string>' requires string as left operand, not " + type_name(item));
      return c.str().find(item.str()) != std::string::npos;
    case 6:
    case 7:
      for (auto& x : c.items())
        if (equals(x, item))
          return true;
      return false;
    case 8: return c.dict().find(item) != nullptr;
    default: fail("argument of type '" + type_name(c) + "' is not iterable");
  }
}

value from_json(const json::value& j) {
  switch (j.kind()) {
    case json::kind::null: return value(none_t{});
    case json::kind::bool_: return value(j.get_bool());
    case json::kind::int64: return value(j.get_int64());
    case json::kind::uint64: {
      uint64_t u = j.get_uint64();
      if (u <= static_cast<uint64_t>(INT64_MAX))
        return value(static_cast<int64_t>(u));
      return value(static_cast<double>(u));
    }
    case json::kind::double_: return value(j.get_double());
    case json::kind::string: return value(std::string(j.get_string()));
    case json::kind::array: {
      std::vector<value> items;
      items.reserve(j.get_array().size());
      for (auto& x : j.get_array())
        items.push_back(from_json(x));
      return make_list(std::move(items));
    }
    case json::kind::object: {
      auto d = make_dict();
      auto& dd = d.dict();
      for (auto& [k, x] : j.get_object())
        dd.set(value(std::string(k)), from_json(x));
      return d;
    }
  }
  return value(none_t{});
}

// -- json.dumps ------------------------------------------------------------------------

namespace {

void dump_string(std::string& out, const std::string& s) {
  out += '"';
  for (char32_t c : decode_utf8(s)) {
    char buf[16];
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c >= 0x20 && c < 0x7f) {
          out += static_cast<char>(c);
        } else if (c < 0x10000) {
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          char32_t v = c - 0x10000;
          std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", static_cast<unsigned>(0xd800 + (v >> 10)),
                        static_cast<unsigned>(0xdc00 + (v & 0x3ff)));
          out += buf;
        }
    }
  }
  out += '"';
}

std::string json_key(const value& k) {
  if (k.is_str())
    return k.str();
  if (k.is_bool())
    return std::get<bool>(k.v) ? "true" : "false";
  if (k.is_int())
    return std::to_string(k.as_int());
  if (k.is_float())
    return float_repr(k.as_float());
  if (k.is_none())
    return "null";
  fail("keys must be str, int, float, bool or None, not " + type_name(k));
}

void dump(std::string& out, const value& v, int indent, int level) {
  auto newline = [&](int lvl) {
    out += '\n';
    out.append(static_cast<size_t>(indent * lvl), ' ');
  };
  switch (v.v.index()) {
    case 1: out += "null"; return;
    case 2: out += std::get<bool>(v.v) ? "true" : "false"; return;
    case 3: out += std::to_string(v.as_int()); return;
    case 4: {
      double d = v.as_float();
      if (std::isnan(d))
        out += "NaN";
      else if (std::isinf(d))
        out += d < 0 ? "-Infinity" : "Infinity";
      else
        out += float_repr(d);
      return;
    }
    case 5: dump_string(out, v.str()); return;
    case 6:
    case 7: {
      if (v.view())
        fail(std::string("Object of type ") +
             (v.view() == 1 ? "dict_keys" : v.view() == 2 ? "dict_values" : "dict_items") +
             " is not JSON serializable");
      auto& items = v.items();
      if (items.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t i = 0; i < items.size(); ++i) {
        if (i)
          out += indent >= 0 ? "," : ", ";
        if (indent >= 0)
          newline(level + 1);
        dump(out, items[i], indent, level + 1);
      }
      if (indent >= 0)
        newline(level);
      out += ']';
      return;
    }
    case 8: {
      auto& d = v.dict();
      if (d.kind != dict_t::kind_t::plain)
        fail("Object of type " + type_name(v) + " is not JSON serializable");
      if (d.entries.empty()) {
        out += "{}";
        return;
      }
      std::vector<const std::pair<value, value>*> order;
      for (auto& e : d.entries)
        order.push_back(&e);
      std::stable_sort(order.begin(), order.end(), [](auto* a, auto* b) {
        if (a->first.is_none() || b->first.is_none())
          fail("'<' not supported between instances of '" + type_name(a->first) + "' and '" +
               type_name(b->first) + "'");
        return compare(a->first, b->first) < 0;
      });
      out += '{';
      bool first = true;
      for (auto* e : order) {
        if (!first)
          out += indent >= 0 ? "," : ", ";
        first = false;
        if (indent >= 0)
          newline(level + 1);
        dump_string(out, json_key(e->first));
        out += ": ";
        dump(out, e->second, indent, level + 1);
      }
      if (indent >= 0)
        newline(level);
      out += '}';
      return;
    }
    default: fail("Object of type " + type_name(v) + " is not JSON serializable");
  }
}

} // namespace

std::string dumps(const value& v, int indent, bool html_safe) {
  std::string out;
  dump(out, v, indent, 0);
  if (!html_safe)
    return out;
  std::string safe;
  safe.reserve(out.size());
  for (char c : out) {
    switch (c) {
      case '<': safe += "\\u003c"; break;
      case '>': safe += "\\u003e"; break;
      case '&': safe += "\\u0026"; break;
      case '\'': safe += "\\u0027"; break;
      default: safe += c;
    }
  }
  return safe;
}

} // namespace stepflow::tmpl
