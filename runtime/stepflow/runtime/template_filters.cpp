// Filters, tests, attribute lookup, Python methods and string formatting of
// the template engine.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <unordered_map>

#include "stepflow/runtime/template_internal.hpp"

namespace stepflow::tmpl {

std::string py_percent_format(const std::string& fmt, const value& args);

namespace {

// -- argument helpers --------------------------------------------------------------

const value* arg(const call_args& a, size_t i, std::string_view name) {
  return a.get(i, name);
}

bool arg_bool(const call_args& a, size_t i, std::string_view name, bool def) {
  auto* v = arg(a, i, name);
  return v ? truthy(*v) : def;
}

int64_t to_index(const value& v, std::string_view what) {
  if (v.is_undefined())
    fail_undefined(v);
  if (!v.is_integral())
    fail("'" + type_name(v) + "' object cannot be interpreted as an integer (" + std::string(what) +
         ")");
  return v.as_int();
}

int64_t arg_int(const call_args& a, size_t i, std::string_view name, int64_t def) {
  auto* v = arg(a, i, name);
  if (!v || v->is_none())
    return def;
  return to_index(*v, name);
}

std::optional<std::string> arg_str(const call_args& a, size_t i, std::string_view name) {
  auto* v = arg(a, i, name);
  if (!v || v->is_none())
    return std::nullopt;
  return to_str(*v);
}

std::string require_str(const value& v, std::string_view what) {
  if (v.is_undefined())
    fail_undefined(v);
  if (!v.is_str())
    fail(std::string(what) + " must be str, not " + type_name(v));
  return v.str();
}

// Jinja2's soft_str: str() of anything (undefined is "").
std::string soft_str(const value& v) {
  return to_str(v);
}

std::string u8(char32_t c) {
  return encode_utf8(std::u32string(1, c));
}

// -- attribute getters -----------------------------------------------------------------

// Jinja2's make_attrgetter: dotted path, integer parts index, each step via getitem.
value attr_path(const value& item, const std::string& attribute) {
  value v = item;
  size_t start = 0;
  for (;;) {
    size_t dot = attribute.find('.', start);
    std::string part = attribute.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    value key = digits ? value(static_cast<int64_t>(std::strtoll(part.c_str(), nullptr, 10))) : value(part);
    v = get_item(v, key);
    if (dot == std::string::npos)
      break;
    start = dot + 1;
  }
  return v;
}

value ignore_case(const value& v) {
  if (v.is_str())
    return value(str_lower(v.str()));
  return v;
}

std::vector<std::string> split_attrs(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t c = s.find(',', start);
    out.push_back(s.substr(start, c == std::string::npos ? std::string::npos : c - start));
    if (c == std::string::npos)
      break;
    start = c + 1;
  }
  return out;
}

// Sort key of one item: attribute(s), optionally lower-cased.
value sort_key(const value& item, const std::optional<std::string>& attribute, bool case_sensitive,
               bool multi) {
  if (!attribute) {
    return case_sensitive ? item : ignore_case(item);
  }
  if (multi) {
    std::vector<value> parts;
    for (auto& a : split_attrs(*attribute)) {
      value v = attr_path(item, a);
      parts.push_back(case_sensitive ? v : ignore_case(v));
    }
    return make_tuple(std::move(parts));
  }
  value v = attr_path(item, *attribute);
  return case_sensitive ? v : ignore_case(v);
}

std::vector<value> to_list(evaluator& ev, const value& v) {
  auto items = iterate(v);
  ev.tick(items.size());
  return items;
}

value py_add(const value& a, const value& b) {
  if (a.is_undefined())
    fail_undefined(a);
  if (b.is_undefined())
    fail_undefined(b);
  if (a.is_integral() && b.is_integral()) {
    int64_t r;
    if (__builtin_add_overflow(a.as_int(), b.as_int(), &r))
      fail("integer overflow (stepflow integers are 64-bit)");
    return value(r);
  }
  if (a.is_number() && b.is_number())
    return value(a.as_float() + b.as_float());
  if ((a.is_list() && b.is_list()) || (a.is_tuple() && b.is_tuple())) {
    std::vector<value> r = a.items();
    r.insert(r.end(), b.items().begin(), b.items().end());
    return a.is_list() ? make_list(std::move(r)) : make_tuple(std::move(r));
  }
  fail("unsupported operand type(s) for +: '" + type_name(a) + "' and '" + type_name(b) + "'");
}

// -- string helpers ------------------------------------------------------------------

std::u32string strip_set(const std::optional<std::string>& chars) {
  return chars ? decode_utf8(*chars) : std::u32string();
}

std::string py_strip(const std::string& s, const std::optional<std::string>& chars, bool left,
                     bool right) {
  auto u = decode_utf8(s);
  auto set = strip_set(chars);
  auto is_strip = [&](char32_t c) {
    return chars ? set.find(c) != std::u32string::npos : is_space_cp(c);
  };
  size_t b = 0, e = u.size();
  if (left)
    while (b < e && is_strip(u[b]))
      ++b;
  if (right)
    while (e > b && is_strip(u[e - 1]))
      --e;
  return encode_utf8(u.substr(b, e - b));
}

std::vector<value> py_split(const std::string& s, const std::optional<std::string>& sep,
                            int64_t maxsplit, bool from_right) {
  std::vector<value> out;
  if (sep) {
    if (sep->empty())
      fail("empty separator");
    if (!from_right) {
      size_t start = 0;
      int64_t n = 0;
      for (;;) {
        size_t p = (maxsplit >= 0 && n >= maxsplit) ? std::string::npos : s.find(*sep, start);
        if (p == std::string::npos) {
          out.emplace_back(s.substr(start));
          break;
        }
        out.emplace_back(s.substr(start, p - start));
        start = p + sep->size();
        ++n;
      }
    } else {
      size_t end = s.size();
      int64_t n = 0;
      std::vector<value> rev;
      for (;;) {
        size_t p = std::string::npos;
        if (!(maxsplit >= 0 && n >= maxsplit) && end >= sep->size())
          p = s.rfind(*sep, end - sep->size());
        if (p == std::string::npos) {
          rev.emplace_back(s.substr(0, end));
          break;
        }
        rev.emplace_back(s.substr(p + sep->size(), end - p - sep->size()));
        end = p;
        ++n;
      }
      out.assign(rev.rbegin(), rev.rend());
    }
    return out;
  }
  auto u = decode_utf8(s);
  if (!from_right) {
    size_t i = 0;
    int64_t n = 0;
    while (i < u.size()) {
      while (i < u.size() && is_space_cp(u[i]))
        ++i;
      if (i >= u.size())
        break;
      if (maxsplit >= 0 && n >= maxsplit) {
        size_t e = u.size();
        while (e > i && is_space_cp(u[e - 1]))
          --e;
        out.emplace_back(encode_utf8(u.substr(i, e - i)));
        break;
      }
      size_t j = i;
      while (j < u.size() && !is_space_cp(u[j]))
        ++j;
      out.emplace_back(encode_utf8(u.substr(i, j - i)));
      ++n;
      i = j;
    }
  } else {
    std::vector<value> rev;
    size_t i = u.size();
    int64_t n = 0;
    while (i > 0) {
      while (i > 0 && is_space_cp(u[i - 1]))
        --i;
      if (i == 0)
        break;
      if (maxsplit >= 0 && n >= maxsplit) {
        size_t b = 0;
        while (b < i && is_space_cp(u[b]))
          ++b;
        rev.emplace_back(encode_utf8(u.substr(b, i - b)));
        break;
      }
      size_t j = i;
      while (j > 0 && !is_space_cp(u[j - 1]))
        --j;
      rev.emplace_back(encode_utf8(u.substr(j, i - j)));
      ++n;
      i = j;
    }
    out.assign(rev.rbegin(), rev.rend());
  }
  return out;
}

std::string py_replace(const std::string& s, const std::string& old, const std::string& rep,
                       int64_t count) {
  if (count == 0)
    return s;
  std::string out;
  if (old.empty()) {
    auto u = decode_utf8(s);
    int64_t n = 0;
    for (size_t i = 0; i <= u.size(); ++i) {
      if (count < 0 || n < count) {
        out += rep;
        ++n;
      }
      if (i < u.size())
        out += u8(u[i]);
    }
    return out;
  }
  size_t start = 0;
  int64_t n = 0;
  for (;;) {
    size_t p = (count >= 0 && n >= count) ? std::string::npos : s.find(old, start);
    if (p == std::string::npos) {
      out += s.substr(start);
      return out;
    }
    out += s.substr(start, p - start);
    out += rep;
    start = p + old.size();
    ++n;
  }
}

bool is_cased_lower(char32_t c) {
  return upper_cp(c) != c;
}
bool is_cased_upper(char32_t c) {
  return lower_cp(c) != c;
}
bool is_alpha_cp(char32_t c) {
  return (c < 0x80 && std::isalpha(static_cast<int>(c))) || (c >= 0xc0 && c != 0xd7 && c != 0xf7 && (upper_cp(c) != c || lower_cp(c) != c));
}

std::string py_title(const std::string& s) {
  auto u = decode_utf8(s);
  bool prev_cased = false;
  for (auto& c : u) {
    bool cased = is_cased_lower(c) || is_cased_upper(c);
    if (cased) {
      c = prev_cased ? lower_cp(c) : upper_cp(c);
    }
    prev_cased = cased;
  }
  return encode_utf8(u);
}

std::string py_capitalize(const std::string& s) {
  auto u = decode_utf8(s);
  for (size_t i = 0; i < u.size(); ++i)
    u[i] = i == 0 ? upper_cp(u[i]) : lower_cp(u[i]);
  return encode_utf8(u);
}

// Jinja2's title filter: split on runs of [-\s({\[<], capitalize each piece.
std::string jinja_title(const std::string& s) {
  auto u = decode_utf8(s);
  auto is_sep = [](char32_t c) {
    return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || is_space_cp(c);
  };
  std::u32string out;
  size_t i = 0;
  while (i < u.size()) {
    size_t j = i;
    bool sep = is_sep(u[i]);
    while (j < u.size() && is_sep(u[j]) == sep)
      ++j;
    for (size_t k = i; k < j; ++k)
      out += k == i ? upper_cp(u[k]) : lower_cp(u[k]);
    i = j;
  }
  return encode_utf8(out);
}

std::string pad_str(const std::string& s, int64_t width, char32_t fill, char align) {
  int64_t len = static_cast<int64_t>(utf8_length(s));
  if (width <= len)
    return s;
  int64_t pad = width - len;
  std::string f = u8(fill);
  auto rep = [&](int64_t n) {
    std::string r;
    for (int64_t i = 0; i < n; ++i)
      r += f;
    return r;
  };
  if (align == '<')
    return s + rep(pad);
  if (align == '>')
    return rep(pad) + s;
  int64_t left = pad / 2;
  if (align == 'c')  // str.center: extra space on the right when odd and len even...
    left = (pad / 2) + ((pad & width & 1) ? 1 : 0);
  return rep(left) + s + rep(pad - left);
}

std::vector<std::string> splitlines(const std::string& s, bool keepends = false) {
  std::vector<std::string> out;
  size_t start = 0;
  size_t i = 0;
  while (i < s.size()) {
    char c = s[i];
    if (c == '\n' || c == '\r' || c == '\v' || c == '\f' || c == '\x1c' || c == '\x1d' || c == '\x1e') {
      size_t end = i;
      size_t next = i + 1;
      if (c == '\r' && next < s.size() && s[next] == '\n')
        ++next;
      out.push_back(s.substr(start, (keepends ? next : end) - start));
      start = next;
      i = next;
    } else {
      ++i;
    }
  }
  if (start < s.size())
    out.push_back(s.substr(start));
  return out;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string url_quote(const std::string& s, bool for_qs) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '_' || c == '.' || c == '-' || c == '~' || (!for_qs && c == '/')) {
      out += static_cast<char>(c);
    } else if (for_qs && c == ' ') {
      out += '+';
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

// -- number formatting (format specs and %-formatting) --------------------------------

std::string group_digits(const std::string& digits, char sep) {
  std::string out;
  int n = 0;
  for (size_t i = digits.size(); i-- > 0;) {
    if (n && n % 3 == 0)
      out += sep;
    out += digits[i];
    ++n;
  }
  std::reverse(out.begin(), out.end());
  return out;
}

std::string fmt_double(char type, int prec, double d, bool alt) {
  if (std::isnan(d))
    return (type >= 'A' && type <= 'Z') ? "NAN" : "nan";
  if (std::isinf(d))
    return std::string(d < 0 ? "-" : "") + ((type >= 'A' && type <= 'Z') ? "INF" : "inf");
  char f[16];
  std::snprintf(f, sizeof f, "%%%s.%d%c", alt ? "#" : "", prec, type);
  char buf[512];
  std::snprintf(buf, sizeof buf, f, d);
  return buf;
}

std::string int_digits(int64_t v, char type) {
  uint64_t u = v < 0 ? 0 - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
  char buf[80];
  switch (type) {
    case 'x': std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(u)); break;
    case 'X': std::snprintf(buf, sizeof buf, "%llX", static_cast<unsigned long long>(u)); break;
    case 'o': std::snprintf(buf, sizeof buf, "%llo", static_cast<unsigned long long>(u)); break;
    case 'b': {
      std::string s;
      do {
        s += static_cast<char>('0' + (u & 1));
        u >>= 1;
      } while (u);
      std::reverse(s.begin(), s.end());
      return s;
    }
    default: std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(u));
  }
  return buf;
}

// Python's format(value, spec).
std::string format_spec(const value& v, const std::string& spec) {
  if (spec.empty())
    return to_str(v);
  auto u = decode_utf8(spec);
  size_t i = 0;
  char32_t fill = ' ';
  char align = 0;
  auto is_align = [](char32_t c) { return c == '<' || c == '>' || c == '^' || c == '='; };
  if (u.size() >= 2 && is_align(u[1])) {
    fill = u[0];
    align = static_cast<char>(u[1]);
    i = 2;
  } else if (!u.empty() && is_align(u[0])) {
    align = static_cast<char>(u[0]);
    i = 1;
  }
  char sign = '-';
  if (i < u.size() && (u[i] == '+' || u[i] == '-' || u[i] == ' '))
    sign = static_cast<char>(u[i++]);
  bool alt = false;
  if (i < u.size() && u[i] == '#') {
    alt = true;
    ++i;
  }
  if (i < u.size() && u[i] == '0') {
    if (!align) {
      fill = '0';
      align = '=';
    }
    ++i;
  }
  int64_t width = 0;
  while (i < u.size() && u[i] >= '0' && u[i] <= '9')
    width = width * 10 + (u[i++] - '0');
  char group = 0;
  if (i < u.size() && (u[i] == ',' || u[i] == '_'))
    group = static_cast<char>(u[i++]);
  int prec = -1;
  if (i < u.size() && u[i] == '.') {
    ++i;
    prec = 0;
    while (i < u.size() && u[i] >= '0' && u[i] <= '9')
      prec = prec * 10 + static_cast<int>(u[i++] - '0');
  }
  char type = 0;
  if (i < u.size())
    type = static_cast<char>(u[i++]);
  if (i != u.size())
    fail("Invalid format specifier");

  if (v.is_str() || (!v.is_number())) {
    if (!v.is_str()) {
      fail("unsupported format string passed to " + type_name(v) + ".__format__");
    }
    if (type && type != 's')
      fail(std::string("Unknown format code '") + type + "' for object of type 'str'");
    std::string s = v.str();
    if (prec >= 0) {
      auto su = decode_utf8(s);
      if (su.size() > static_cast<size_t>(prec))
        s = encode_utf8(su.substr(0, static_cast<size_t>(prec)));
    }
    return pad_str(s, width, fill, align ? (align == '^' ? 'c' : align) : '<');
  }
  std::string body;
  bool negative = false;
  bool is_int_type = type == 'd' || type == 'x' || type == 'X' || type == 'o' || type == 'b' ||
                     type == 'c' || type == 'n';
  if (v.is_integral() && (type == 0 || is_int_type)) {
    if (prec >= 0)
      fail("Precision not allowed in integer format specifier");
    int64_t x = v.as_int();
    if (v.is_bool() && type == 0)
      return pad_str(to_str(v), width, fill, align ? (align == '^' ? 'c' : align) : '<');
    if (type == 'c')
      body = u8(static_cast<char32_t>(x));
    else {
      negative = x < 0;
      body = int_digits(x, type ? type : 'd');
      if (group)
        body = group_digits(body, group);
      if (alt && (type == 'x' || type == 'X' || type == 'o' || type == 'b'))
        body = std::string("0") + type + body;
    }
  } else {
    if (is_int_type)
      fail(std::string("Unknown format code '") + type + "' for object of type 'float'");
    double d = v.as_float();
    negative = std::signbit(d) && !std::isnan(d);
    double ad = std::fabs(d);
    if (type == 0) {
      if (prec < 0) {
        body = v.is_float() ? float_repr(ad) : std::to_string(v.as_int() < 0 ? -v.as_int() : v.as_int());
      } else {
        body = fmt_double('g', prec == 0 ? 1 : prec, ad, false);
        if (body.find_first_of(".en") == std::string::npos)
          body += ".0";
      }
    } else if (type == '%') {
      body = fmt_double('f', prec < 0 ? 6 : prec, ad * 100.0, alt) + "%";
    } else if (type == 'f' || type == 'F' || type == 'e' || type == 'E' || type == 'g' || type == 'G') {
      body = fmt_double(type, prec < 0 ? 6 : prec, ad, alt);
    } else {
      fail(std::string("Unknown format code '") + type + "' for object of type 'float'");
    }
    if (group) {
      size_t dot = body.find_first_of(".eE%");
      std::string ip = body.substr(0, dot);
      std::string rest = dot == std::string::npos ? "" : body.substr(dot);
      if (std::all_of(ip.begin(), ip.end(), [](char c) { return c >= '0' && c <= '9'; }))
        body = group_digits(ip, group) + rest;
    }
  }
  std::string sgn = negative ? "-" : sign == '+' ? "+" : sign == ' ' ? " " : "";
  if (!align)
    align = '>';
  if (align == '=') {
    int64_t len = static_cast<int64_t>(utf8_length(sgn + body));
    std::string pad;
    for (int64_t k = len; k < width; ++k)
      pad += u8(fill);
    return sgn + pad + body;
  }
  return pad_str(sgn + body, width, fill, align == '^' ? 'c' : align);
}

value format_field_value(const std::string& field, size_t& auto_idx, const call_args& a) {
  size_t p = 0;
  while (p < field.size() && field[p] != '.' && field[p] != '[')
    ++p;
  std::string head = field.substr(0, p);
  value v;
  if (head.empty()) {
    if (auto_idx >= a.pos.size())
      fail("Replacement index " + std::to_string(auto_idx) + " out of range for positional args tuple");
    v = a.pos[auto_idx++];
  } else if (std::all_of(head.begin(), head.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    size_t idx = std::stoul(head);
    if (idx >= a.pos.size())
      fail("Replacement index " + head + " out of range for positional args tuple");
    v = a.pos[idx];
  } else {
    bool found = false;
    for (auto& [k, x] : a.kw)
      if (k == head) {
        v = x;
        found = true;
      }
    if (!found)
      fail("KeyError: '" + head + "'");
  }
  while (p < field.size()) {
    if (field[p] == '.') {
      size_t q = p + 1;
      while (q < field.size() && field[q] != '.' && field[q] != '[')
        ++q;
      v = get_attr(v, field.substr(p + 1, q - p - 1));
      if (v.is_undefined())
        fail("AttributeError: " + field.substr(p + 1, q - p - 1));
      p = q;
    } else {
      size_t q = field.find(']', p);
      if (q == std::string::npos)
        fail("Missing ']' in format string");
      std::string key = field.substr(p + 1, q - p - 1);
      bool digits = !key.empty() && std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; });
      v = get_item(v, digits ? value(static_cast<int64_t>(std::stoll(key))) : value(key));
      if (v.is_undefined())
        fail("KeyError: " + key);
      p = q + 1;
    }
  }
  return v;
}

std::string py_str_format(const std::string& fmt, const call_args& a) {
  std::string out;
  size_t auto_idx = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    char c = fmt[i];
    if (c == '}') {
      if (i + 1 < fmt.size() && fmt[i + 1] == '}') {
        out += '}';
        ++i;
        continue;
      }
      fail("Single '}' encountered in format string");
    }
    if (c != '{') {
      out += c;
      continue;
    }
    if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    // find the matching '}' allowing one nesting level in the spec
    size_t j = i + 1;
    int depth = 1;
    while (j < fmt.size() && depth > 0) {
      if (fmt[j] == '{')
        ++depth;
      else if (fmt[j] == '}')
        --depth;
      if (depth > 0)
        ++j;
    }
    if (j >= fmt.size())
      fail("expected '}' before end of string");
    std::string field = fmt.substr(i + 1, j - i - 1);
    i = j;
    std::string spec;
    char conv = 0;
    size_t colon = std::string::npos;
    for (size_t k = 0; k < field.size(); ++k) {
      if (field[k] == '[') {
        k = field.find(']', k);
        if (k == std::string::npos)
          break;
      } else if (field[k] == ':' || field[k] == '!') {
        colon = k;
        break;
      }
    }
    std::string name = field.substr(0, colon);
    if (colon != std::string::npos) {
      std::string rest = field.substr(colon);
      if (rest[0] == '!') {
        if (rest.size() < 2)
          fail("end of string while looking for conversion specifier");
        conv = rest[1];
        rest = rest.substr(2);
      }
      if (!rest.empty()) {
        if (rest[0] != ':')
          fail("expected ':' after conversion specifier");
        spec = rest.substr(1);
      }
    }
    if (spec.find('{') != std::string::npos) {
      call_args none;
      spec = py_str_format(spec, a);
    }
    value v = format_field_value(name, auto_idx, a);
    if (conv == 'r' || conv == 'a')
      v = value(repr(v));
    else if (conv == 's')
      v = value(to_str(v));
    else if (conv)
      fail(std::string("Unknown conversion specifier ") + conv);
    out += format_spec(v, spec);
  }
  return out;
}

} // namespace

std::string py_percent_format(const std::string& fmt, const value& args) {
  std::vector<value> items;
  const dict_t* mapping = nullptr;
  bool single = false;
  if (args.is_tuple()) {
    items = args.items();
  } else {
    if (args.is_dict())
      mapping = &args.dict();
    items.push_back(args);
    single = true;
  }
  size_t next = 0;
  bool used_mapping = false;
  std::string out;
  auto take = [&]() -> value {
    if (next >= items.size())
      fail("not enough arguments for format string");
    return items[next++];
  };
  for (size_t i = 0; i < fmt.size(); ++i) {
    char c = fmt[i];
    if (c != '%') {
      out += c;
      continue;
    }
    if (++i >= fmt.size())
      fail("incomplete format");
    value val;
    bool have_val = false;
    if (fmt[i] == '(') {
      size_t e = fmt.find(')', i);
      if (e == std::string::npos)
        fail("incomplete format key");
      if (!mapping)
        fail("format requires a mapping");
      std::string key = fmt.substr(i + 1, e - i - 1);
      auto* f = const_cast<dict_t*>(mapping)->find_str(key);
      if (!f)
        fail("KeyError: '" + key + "'");
      val = *f;
      have_val = true;
      used_mapping = true;
      i = e + 1;
    }
    std::string flags;
    while (i < fmt.size() && std::strchr("-+ #0", fmt[i]) && fmt[i] != '\0')
      flags += fmt[i++];
    int64_t width = -1;
    if (i < fmt.size() && fmt[i] == '*') {
      width = to_index(take(), "width");
      ++i;
    } else {
      while (i < fmt.size() && fmt[i] >= '0' && fmt[i] <= '9') {
        width = (width < 0 ? 0 : width) * 10 + (fmt[i] - '0');
        ++i;
      }
    }
    int prec = -1;
    if (i < fmt.size() && fmt[i] == '.') {
      ++i;
      prec = 0;
      if (i < fmt.size() && fmt[i] == '*') {
        prec = static_cast<int>(to_index(take(), "precision"));
        ++i;
      } else {
        while (i < fmt.size() && fmt[i] >= '0' && fmt[i] <= '9')
          prec = prec * 10 + (fmt[i++] - '0');
      }
    }
    while (i < fmt.size() && (fmt[i] == 'l' || fmt[i] == 'h' || fmt[i] == 'L'))
      ++i;
    if (i >= fmt.size())
      fail("incomplete format");
    char type = fmt[i];
    if (type == '%') {
      out += '%';
      continue;
    }
    if (!have_val)
      val = take();
    bool left = flags.find('-') != std::string::npos;
    bool zero = flags.find('0') != std::string::npos && !left;
    std::string body;
    std::string sgn;
    bool numeric = false;
    switch (type) {
      case 's':
      case 'r':
      case 'a': {
        body = type == 's' ? to_str(val) : repr(val);
        if (prec >= 0) {
          auto u = decode_utf8(body);
          if (u.size() > static_cast<size_t>(prec))
            body = encode_utf8(u.substr(0, static_cast<size_t>(prec)));
        }
        break;
      }
      case 'd':
      case 'i':
      case 'u':
      case 'x':
      case 'X':
      case 'o': {
        if (val.is_undefined())
          fail_undefined(val);
        if (!val.is_number())
          fail(std::string("%") + type + " format: " +
               (type == 'x' || type == 'X' || type == 'o' ? "an integer" : "a real number") +
               " is required, not " + type_name(val));
        if (val.is_float() && (type == 'x' || type == 'X' || type == 'o'))
          fail(std::string("%") + type + " format: an integer is required, not float");
        int64_t x;
        if (val.is_float()) {
          double d = val.as_float();
          if (!std::isfinite(d))
            fail("cannot convert float infinity to integer");
          x = static_cast<int64_t>(std::trunc(d));
        } else {
          x = val.as_int();
        }
        numeric = true;
        body = int_digits(x, (type == 'i' || type == 'u') ? 'd' : type);
        if (prec >= 0 && body.size() < static_cast<size_t>(prec))
          body = std::string(static_cast<size_t>(prec) - body.size(), '0') + body;
        if (flags.find('#') != std::string::npos && type != 'd' && type != 'i' && type != 'u')
          body = std::string("0") + (type == 'o' ? 'o' : type) + body;
        sgn = x < 0 ? "-" : flags.find('+') != std::string::npos ? "+" : flags.find(' ') != std::string::npos ? " " : "";
        break;
      }
      case 'f':
      case 'F':
      case 'e':
      case 'E':
      case 'g':
      case 'G': {
        if (val.is_undefined())
          fail_undefined(val);
        if (!val.is_number())
          fail(std::string("must be real number, not ") + type_name(val));
        double d = val.as_float();
        numeric = true;
        body = fmt_double(type, prec < 0 ? 6 : prec, std::fabs(d), flags.find('#') != std::string::npos);
        sgn = std::signbit(d) ? "-" : flags.find('+') != std::string::npos ? "+" : flags.find(' ') != std::string::npos ? " " : "";
        break;
      }
      case 'c': {
        if (val.is_str() && utf8_length(val.str()) == 1)
          body = val.str();
        else if (val.is_integral())
          body = u8(static_cast<char32_t>(val.as_int()));
        else
          fail("%c requires int or char");
        break;
      }
      default:
        fail(std::string("unsupported format character '") + type + "'");
    }
    int64_t len = static_cast<int64_t>(utf8_length(sgn + body));
    if (width > len) {
      size_t pad = static_cast<size_t>(width - len);
      if (left)
        body = sgn + body + std::string(pad, ' ');
      else if (zero && numeric)
        body = sgn + std::string(pad, '0') + body;
      else
        body = std::string(pad, ' ') + sgn + body;
    } else {
      body = sgn + body;
    }
    out += body;
  }
  if (single && mapping) {
    (void)used_mapping;
  } else if (next < items.size()) {
    fail("not all arguments converted during string formatting");
  }
  return out;
}

// -- attribute access --------------------------------------------------------------------

namespace {

value bound(std::string name, value self,
            std::function<value(evaluator&, const value&, call_args&)> fn) {
  return make_callable(std::move(name), [self = std::move(self), fn = std::move(fn)](
                                          evaluator& ev, call_args& a) { return fn(ev, self, a); });
}

void want_args(const call_args& a, size_t lo, size_t hi, const char* name) {
  if (a.pos.size() < lo || a.pos.size() > hi)
    fail(std::string(name) + "() takes " +
         (lo == hi ? "exactly " + std::to_string(lo) : "from " + std::to_string(lo) + " to " + std::to_string(hi)) +
         " arguments (" + std::to_string(a.pos.size()) + " given)");
}

int64_t find_cp_index(const std::string& s, const std::string& sub, bool from_right, int64_t& out) {
  size_t p = from_right ? s.rfind(sub) : s.find(sub);
  if (p == std::string::npos) {
    out = -1;
    return -1;
  }
  out = static_cast<int64_t>(utf8_length(s.substr(0, p)));
  return out;
}

bool starts_or_ends(const value& self, const value& what, bool ends) {
  auto check = [&](const value& x) {
    std::string p = require_str(x, ends ? "endswith arg" : "startswith arg");
    const std::string& s = self.str();
    if (p.size() > s.size())
      return false;
    return ends ? s.compare(s.size() - p.size(), p.size(), p) == 0 : s.compare(0, p.size(), p) == 0;
  };
  if (what.is_tuple()) {
    for (auto& x : what.items())
      if (check(x))
        return true;
    return false;
  }
  return check(what);
}

value str_method(const value& self, const std::string& n) {
  using A = call_args;
  if (n == "upper")
    return bound(n, self, [](evaluator&, const value& s, A&) { return value(str_upper(s.str())); });
  if (n == "lower")
    return bound(n, self, [](evaluator&, const value& s, A&) { return value(str_lower(s.str())); });
  if (n == "strip" || n == "lstrip" || n == "rstrip") {
    bool l = n != "rstrip", r = n != "lstrip";
    return bound(n, self, [l, r](evaluator&, const value& s, A& a) {
      return value(py_strip(s.str(), arg_str(a, 0, "chars"), l, r));
    });
  }
  if (n == "split" || n == "rsplit") {
    bool right = n == "rsplit";
    return bound(n, self, [right](evaluator& ev, const value& s, A& a) {
      auto parts = py_split(s.str(), arg_str(a, 0, "sep"), arg_int(a, 1, "maxsplit", -1), right);
      ev.tick(parts.size());
      return make_list(std::move(parts));
    });
  }
  if (n == "splitlines")
    return bound(n, self, [](evaluator&, const value& s, A& a) {
      std::vector<value> out;
      for (auto& l : splitlines(s.str(), arg_bool(a, 0, "keepends", false)))
        out.emplace_back(l);
      return make_list(std::move(out));
    });
  if (n == "startswith" || n == "endswith") {
    bool ends = n == "endswith";
    return bound(n, self, [ends](evaluator&, const value& s, A& a) {
      want_args(a, 1, 1, ends ? "endswith" : "startswith");
      return value(starts_or_ends(s, a.pos[0], ends));
    });
  }
  if (n == "replace")
    return bound(n, self, [](evaluator& ev, const value& s, A& a) {
      want_args(a, 2, 3, "replace");
      std::string r = py_replace(s.str(), require_str(a.pos[0], "replace() argument 1"),
                                 require_str(a.pos[1], "replace() argument 2"), arg_int(a, 2, "count", -1));
      ev.check_size(r.size());
      return value(std::move(r));
    });
  if (n == "format")
    return bound(n, self, [](evaluator&, const value& s, A& a) { return value(py_str_format(s.str(), a)); });
  if (n == "join")
    return bound(n, self, [](evaluator& ev, const value& s, A& a) {
      want_args(a, 1, 1, "join");
      std::string out;
      bool first = true;
      size_t i = 0;
      for (auto& x : to_list(ev, a.pos[0])) {
        if (!x.is_str())
          fail("sequence item " + std::to_string(i) + ": expected str instance, " + type_name(x) + " found");
        if (!first)
          out += s.str();
        first = false;
        out += x.str();
        ++i;
      }
      return value(std::move(out));
    });
  if (n == "find" || n == "rfind" || n == "index" || n == "rindex") {
    bool right = n[0] == 'r';
    bool strict = n.find("index") != std::string::npos;
    return bound(n, self, [right, strict](evaluator&, const value& s, A& a) {
      want_args(a, 1, 1, "find");
      int64_t r;
      find_cp_index(s.str(), require_str(a.pos[0], "must be str"), right, r);
      if (r < 0 && strict)
        fail("substring not found");
      return value(r);
    });
  }
  if (n == "count")
    return bound(n, self, [](evaluator&, const value& s, A& a) {
      want_args(a, 1, 1, "count");
      std::string sub = require_str(a.pos[0], "must be str");
      if (sub.empty())
        return value(static_cast<int64_t>(utf8_length(s.str()) + 1));
      int64_t c = 0;
      for (size_t p = s.str().find(sub); p != std::string::npos; p = s.str().find(sub, p + sub.size()))
        ++c;
      return value(c);
    });
  if (n == "title")
    return bound(n, self, [](evaluator&, const value& s, A&) { return value(py_title(s.str())); });
  if (n == "capitalize")
    return bound(n, self, [](evaluator&, const value& s, A&) { return value(py_capitalize(s.str())); });
  if (n == "swapcase")
    return bound(n, self, [](evaluator&, const value& s, A&) {
      auto u = decode_utf8(s.str());
      for (auto& c : u)
        c = upper_cp(c) != c ? upper_cp(c) : lower_cp(c);
      return value(encode_utf8(u));
    });
  if (n == "isdigit" || n == "isnumeric" || n == "isdecimal")
    return bound(n, self, [](evaluator&, const value& s, A&) {
      auto& x = s.str();
      return value(!x.empty() && std::all_of(x.begin(), x.end(), [](char c) { return c >= '0' && c <= '9'; }));
    });
  if (n == "isalpha")
    return bound(n, self, [](evaluator&, const value& s, A&) {
      auto u = decode_utf8(s.str());
      return value(!u.empty() && std::all_of(u.begin(), u.end(), is_alpha_cp));
    });
  if (n == "isalnum")
    return bound(n, self, [](evaluator&, const value& s, A&) {
      auto u = decode_utf8(s.str());
      return value(!u.empty() && std::all_of(u.begin(), u.end(), [](char32_t c) {
        return is_alpha_cp(c) || (c >= '0' && c <= '9');
      }));
    });
  if (n == "isspace")
    return bound(n, self, [](evaluator&, const value& s, A&) {
      auto u = decode_utf8(s.str());
      return value(!u.empty() && std::all_of(u.begin(), u.end(), is_space_cp));
    });
  if (n == "isupper" || n == "islower") {
    bool up = n == "isupper";
    return bound(n, self, [up](evaluator&, const value& s, A&) {
      bool cased = false;
      for (char32_t c : decode_utf8(s.str())) {
        if (up ? is_cased_lower(c) : is_cased_upper(c))
          return value(false);
        if (is_cased_lower(c) || is_cased_upper(c))
          cased = true;
      }
      return value(cased);
    });
  }
  if (n == "zfill")
    return bound(n, self, [](evaluator&, const value& s, A& a) {
      want_args(a, 1, 1, "zfill");
      int64_t w = to_index(a.pos[0], "width");
      std::string x = s.str();
      int64_t len = static_cast<int64_t>(utf8_length(x));
      if (w <= len)
        return value(x);
      size_t signlen = (!x.empty() && (x[0] == '-' || x[0] == '+')) ? 1 : 0;
      return value(x.substr(0, signlen) + std::string(static_cast<size_t>(w - len), '0') + x.substr(signlen));
    });
  if (n == "center" || n == "ljust" || n == "rjust") {
    char align = n == "center" ? 'c' : n == "ljust" ? '<' : '>';
    return bound(n, self, [align](evaluator& ev, const value& s, A& a) {
      want_args(a, 1, 2, "justify");
      int64_t w = to_index(a.pos[0], "width");
      ev.check_size(static_cast<size_t>(std::max<int64_t>(w, 0)));
      char32_t fill = ' ';
      if (a.pos.size() > 1) {
        auto f = decode_utf8(require_str(a.pos[1], "fill character"));
        if (f.size() != 1)
          fail("The fill character must be exactly one character long");
        fill = f[0];
      }
      return value(pad_str(s.str(), w, fill, align));
    });
  }
  if (n == "partition" || n == "rpartition") {
    bool right = n[0] == 'r';
    return bound(n, self, [right](evaluator&, const value& s, A& a) {
      want_args(a, 1, 1, "partition");
      std::string sep = require_str(a.pos[0], "must be str");
      if (sep.empty())
        fail("empty separator");
      size_t p = right ? s.str().rfind(sep) : s.str().find(sep);
      if (p == std::string::npos)
        return right ? make_tuple({value(""), value(""), s}) : make_tuple({s, value(""), value("")});
      return make_tuple({value(s.str().substr(0, p)), value(sep), value(s.str().substr(p + sep.size()))});
    });
  }
  return value();
}

value dict_method(const value& self, const std::string& n) {
  using A = call_args;
  if (n == "keys" || n == "values" || n == "items") {
    int which = n == "keys" ? 0 : n == "values" ? 1 : 2;
    return bound(n, self, [which](evaluator& ev, const value& d, A& a) {
      want_args(a, 0, 0, "keys");
      std::vector<value> out;
      for (auto& [k, v] : d.dict().entries)
        out.push_back(which == 0 ? k : which == 1 ? v : make_tuple({k, v}));
      ev.tick(out.size());
      return make_view(static_cast<uint8_t>(which + 1), std::move(out));
    });
  }
  if (n == "get")
    return bound(n, self, [](evaluator&, const value& d, A& a) {
      want_args(a, 1, 2, "get");
      auto* v = d.dict().find(a.pos[0]);
      if (v)
        return *v;
      return a.pos.size() > 1 ? a.pos[1] : value(none_t{});
    });
  if (n == "update")
    return bound(n, self, [](evaluator& ev, const value& d, A& a) {
      if (a.pos.size() > 1)
        fail("update expected at most 1 argument, got " + std::to_string(a.pos.size()));
      auto& dd = d.dict();
      if (!a.pos.empty()) {
        const value& src = a.pos[0];
        if (src.is_dict()) {
          auto copy = src.dict().entries;
          for (auto& [k, v] : copy)
            dd.set(k, v);
        } else {
          size_t i = 0;
          for (auto& item : to_list(ev, src)) {
            auto kv = (item.is_seq() || item.is_str()) ? iterate(item) : std::vector<value>{};
            if (!(item.is_seq() || item.is_str()))
              fail("cannot convert dictionary update sequence element #" + std::to_string(i) + " to a sequence");
            if (kv.size() != 2)
              fail("dictionary update sequence element #" + std::to_string(i) + " has length " +
                   std::to_string(kv.size()) + "; 2 is required");
            dd.set(kv[0], kv[1]);
            ++i;
          }
        }
      }
      for (auto& [k, v] : a.kw)
        dd.set(value(k), v);
      return value(none_t{});
    });
  if (n == "pop")
    return bound(n, self, [](evaluator&, const value& d, A& a) {
      want_args(a, 1, 2, "pop");
      auto* v = d.dict().find(a.pos[0]);
      if (!v) {
        if (a.pos.size() > 1)
          return a.pos[1];
        fail("KeyError: " + repr(a.pos[0]));
      }
      value r = *v;
      d.dict().erase(a.pos[0]);
      return r;
    });
  if (n == "setdefault")
    return bound(n, self, [](evaluator&, const value& d, A& a) {
      want_args(a, 1, 2, "setdefault");
      auto* v = d.dict().find(a.pos[0]);
      if (v)
        return *v;
      value def = a.pos.size() > 1 ? a.pos[1] : value(none_t{});
      d.dict().set(a.pos[0], def);
      return def;
    });
  if (n == "copy")
    return bound(n, self, [](evaluator&, const value& d, A&) {
      auto r = make_dict();
      r.dict().entries = d.dict().entries;
      r.dict().index = d.dict().index;
      return r;
    });
  if (n == "clear")
    return bound(n, self, [](evaluator&, const value& d, A&) {
      d.dict().entries.clear();
      d.dict().index.clear();
      return value(none_t{});
    });
  return value();
}

value list_method(const value& self, const std::string& n) {
  using A = call_args;
  bool is_list = self.is_list();
  if (n == "index")
    return bound(n, self, [](evaluator&, const value& l, A& a) {
      want_args(a, 1, 1, "index");
      auto& items = l.items();
      for (size_t i = 0; i < items.size(); ++i)
        if (equals(items[i], a.pos[0]))
          return value(static_cast<int64_t>(i));
      fail(repr(a.pos[0]) + " is not in list");
    });
  if (n == "count")
    return bound(n, self, [](evaluator&, const value& l, A& a) {
      want_args(a, 1, 1, "count");
      int64_t c = 0;
      for (auto& x : l.items())
        if (equals(x, a.pos[0]))
          ++c;
      return value(c);
    });
  if (!is_list)
    return value();
  if (n == "append")
    return bound(n, self, [](evaluator& ev, const value& l, A& a) {
      want_args(a, 1, 1, "append");
      ev.check_size(l.items().size() + 1);
      l.items().push_back(a.pos[0]);
      return value(none_t{});
    });
  if (n == "extend")
    return bound(n, self, [](evaluator& ev, const value& l, A& a) {
      want_args(a, 1, 1, "extend");
      auto items = to_list(ev, a.pos[0]);
      ev.check_size(l.items().size() + items.size());
      l.items().insert(l.items().end(), items.begin(), items.end());
      return value(none_t{});
    });
  if (n == "insert")
    return bound(n, self, [](evaluator&, const value& l, A& a) {
      want_args(a, 2, 2, "insert");
      int64_t len = static_cast<int64_t>(l.items().size());
      int64_t i = to_index(a.pos[0], "index");
      if (i < 0)
        i = std::max<int64_t>(0, i + len);
      i = std::min(i, len);
      l.items().insert(l.items().begin() + i, a.pos[1]);
      return value(none_t{});
    });
  if (n == "pop")
    return bound(n, self, [](evaluator&, const value& l, A& a) {
      want_args(a, 0, 1, "pop");
      auto& items = l.items();
      if (items.empty())
        fail("pop from empty list");
      int64_t len = static_cast<int64_t>(items.size());
      int64_t i = a.pos.empty() ? len - 1 : to_index(a.pos[0], "index");
      if (i < 0)
        i += len;
      if (i < 0 || i >= len)
        fail("pop index out of range");
      value r = items[static_cast<size_t>(i)];
      items.erase(items.begin() + i);
      return r;
    });
  if (n == "remove")
    return bound(n, self, [](evaluator&, const value& l, A& a) {
      want_args(a, 1, 1, "remove");
      auto& items = l.items();
      for (size_t i = 0; i < items.size(); ++i)
        if (equals(items[i], a.pos[0])) {
          items.erase(items.begin() + static_cast<ptrdiff_t>(i));
          return value(none_t{});
        }
      fail("list.remove(x): x not in list");
    });
  if (n == "reverse")
    return bound(n, self, [](evaluator&, const value& l, A&) {
      std::reverse(l.items().begin(), l.items().end());
      return value(none_t{});
    });
  if (n == "sort")
    return bound(n, self, [](evaluator&, const value& l, A& a) {
      bool rev = arg_bool(a, 99, "reverse", false);
      auto& items = l.items();
      if (rev)
        std::stable_sort(items.begin(), items.end(), [](const value& x, const value& y) { return compare(y, x) < 0; });
      else
        std::stable_sort(items.begin(), items.end(), [](const value& x, const value& y) { return compare(x, y) < 0; });
      return value(none_t{});
    });
  if (n == "copy")
    return bound(n, self, [](evaluator&, const value& l, A&) { return make_list(l.items()); });
  if (n == "clear")
    return bound(n, self, [](evaluator&, const value& l, A&) {
      l.items().clear();
      return value(none_t{});
    });
  return value();
}

value undefined_attr(const value& obj, const std::string& name) {
  std::string what = obj.is_none() ? "'None'" : "'" + type_name(obj) + " object'";
  return make_undefined(what + " has no attribute '" + name + "'");
}

} // namespace

value get_method(const value& obj, const std::string& name) {
  if (obj.view())
    return value();
  if (obj.is_str())
    return str_method(obj, name);
  if (obj.is_dict())
    return obj.dict().kind == dict_t::kind_t::plain ? dict_method(obj, name) : value();
  if (obj.is_seq())
    return list_method(obj, name);
  if (obj.is_float() && name == "is_integer")
    return bound(name, obj, [](evaluator&, const value& f, call_args&) {
      double d = f.as_float();
      return value(std::isfinite(d) && d == std::floor(d));
    });
  return value();
}

value get_attr(const value& obj, const std::string& name) {
  if (obj.is_undefined())
    fail_undefined(obj);
  value m = get_method(obj, name);
  if (!m.is_undefined())
    return m;
  if (obj.is_dict()) {
    if (auto* v = obj.dict().find_str(name))
      return *v;
    if (obj.dict().kind == dict_t::kind_t::loop)
      return make_undefined("'LoopContext object' has no attribute '" + name + "'");
    return undefined_attr(obj, name);
  }
  if (obj.is_tuple() && obj.items().size() == 2 && (name == "grouper" || name == "list"))
    return obj.items()[name == "grouper" ? 0 : 1];
  if (obj.is_number() && (name == "real" || name == "imag")) {
    if (name == "imag")
      return obj.is_float() ? value(0.0) : value(int64_t{0});
    return obj.is_float() ? obj : value(obj.as_int());
  }
  return undefined_attr(obj, name);
}

value get_item(const value& obj, const value& key) {
  if (obj.is_undefined())
    fail_undefined(obj);
  if (obj.is_dict()) {
    value* v = nullptr;
    try {
      v = obj.dict().find(key);
    } catch (const template_error&) {
      v = nullptr;  // unhashable key: Jinja2 falls back to undefined
    }
    if (v)
      return *v;
  } else if ((obj.is_seq() || obj.is_str()) && key.is_integral() && !obj.view()) {
    int64_t i = key.as_int();
    if (obj.is_str()) {
      auto u = decode_utf8(obj.str());
      int64_t n = static_cast<int64_t>(u.size());
      if (i < 0)
        i += n;
      if (i >= 0 && i < n)
        return value(u8(u[static_cast<size_t>(i)]));
    } else {
      auto& items = obj.items();
      int64_t n = static_cast<int64_t>(items.size());
      if (i < 0)
        i += n;
      if (i >= 0 && i < n)
        return items[static_cast<size_t>(i)];
    }
    return make_undefined("'" + type_name(obj) + " object' has no element " + to_str(key));
  }
  if (key.is_str()) {
    value m = get_method(obj, key.str());
    if (!m.is_undefined())
      return m;
    if (obj.is_dict() || obj.is_none())
      return obj.is_dict() ? make_undefined("'dict object' has no attribute '" + key.str() + "'")
                           : undefined_attr(obj, key.str());
    return undefined_attr(obj, key.str());
  }
  return make_undefined("'" + type_name(obj) + " object' has no element " + repr(key));
}

// -- filters ---------------------------------------------------------------------------

namespace {

using A = call_args;

value f_tojson(evaluator&, value& v, A& a) {
  auto* ind = arg(a, 0, "indent");
  int indent = -1;
  if (ind && !ind->is_none())
    indent = static_cast<int>(to_index(*ind, "indent"));
  return value(dumps(v, indent, true));
}

value f_default(evaluator&, value& v, A& a) {
  auto* def = arg(a, 0, "default_value");
  bool boolean = arg_bool(a, 1, "boolean", false);
  if (v.is_undefined() || (boolean && !truthy(v)))
    return def ? *def : value(std::string());
  return v;
}

value f_length(evaluator&, value& v, A&) {
  return value(length(v));
}

value f_lower(evaluator&, value& v, A&) {
  return value(str_lower(soft_str(v)));
}
value f_upper(evaluator&, value& v, A&) {
  return value(str_upper(soft_str(v)));
}
value f_title(evaluator&, value& v, A&) {
  return value(jinja_title(soft_str(v)));
}
value f_capitalize(evaluator&, value& v, A&) {
  return value(py_capitalize(soft_str(v)));
}
value f_trim(evaluator&, value& v, A& a) {
  return value(py_strip(soft_str(v), arg_str(a, 0, "chars"), true, true));
}

value f_replace(evaluator& ev, value& v, A& a) {
  auto* old = arg(a, 0, "old");
  auto* rep = arg(a, 1, "new");
  if (!old || !rep)
    fail("replace() missing required arguments");
  std::string r = py_replace(soft_str(v), to_str(*old), to_str(*rep), arg_int(a, 2, "count", -1));
  ev.check_size(r.size());
  return value(std::move(r));
}

std::vector<value> maybe_attr(evaluator& ev, const value& v, const A& a, size_t attr_pos) {
  auto items = to_list(ev, v);
  if (auto attr = arg_str(a, attr_pos, "attribute"))
    for (auto& x : items)
      x = attr_path(x, *attr);
  return items;
}

value f_join(evaluator& ev, value& v, A& a) {
  auto sep = arg_str(a, 0, "d").value_or("");
  auto items = maybe_attr(ev, v, a, 1);
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i)
      out += sep;
    out += soft_str(items[i]);
    ev.check_size(out.size());
  }
  return value(std::move(out));
}

std::optional<int64_t> parse_py_int(std::string s, int64_t base) {
  s = py_strip(s, std::nullopt, true, true);
  std::string clean;
  bool neg = false;
  size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    neg = s[i] == '-';
    ++i;
  }
  auto has_prefix = [&](char p) {
    return i + 1 < s.size() && s[i] == '0' && (s[i + 1] == p || s[i + 1] == p - 32);
  };
  if (base == 16 && has_prefix('x'))
    i += 2;
  else if (base == 8 && has_prefix('o'))
    i += 2;
  else if (base == 2 && has_prefix('b'))
    i += 2;
  else if (base == 0) {
    if (has_prefix('x')) {
      base = 16;
      i += 2;
    } else if (has_prefix('o')) {
      base = 8;
      i += 2;
    } else if (has_prefix('b')) {
      base = 2;
      i += 2;
    } else {
      base = 10;
    }
  }
  if (base < 2 || base > 36)
    return std::nullopt;
  bool prev_digit = false;
  for (; i < s.size(); ++i) {
    char c = s[i];
    if (c == '_') {
      if (!prev_digit)
        return std::nullopt;
      prev_digit = false;
      continue;
    }
    int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'z') ? c - 'a' + 10 : (c >= 'A' && c <= 'Z') ? c - 'A' + 10 : 99;
    if (d >= base)
      return std::nullopt;
    clean += c;
    prev_digit = true;
  }
  if (clean.empty() || !prev_digit)
    return std::nullopt;
  errno = 0;
  long long r = std::strtoll(clean.c_str(), nullptr, static_cast<int>(base));
  if (errno == ERANGE)
    fail("integer out of the supported 64-bit range");
  return neg ? -r : r;
}

std::optional<double> parse_py_float(const std::string& in) {
  std::string s = py_strip(in, std::nullopt, true, true);
  std::string clean;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '_') {
      if (i == 0 || i + 1 >= s.size() || !std::isdigit(static_cast<unsigned char>(s[i - 1])) ||
          !std::isdigit(static_cast<unsigned char>(s[i + 1])))
        return std::nullopt;
      continue;
    }
    clean += s[i];
  }
  if (clean.empty())
    return std::nullopt;
  std::string low = str_lower(clean);
  std::string body = (low[0] == '+' || low[0] == '-') ? low.substr(1) : low;
  double sign = low[0] == '-' ? -1.0 : 1.0;
  if (body == "inf" || body == "infinity")
    return sign * std::numeric_limits<double>::infinity();
  if (body == "nan")
    return std::numeric_limits<double>::quiet_NaN();
  // digits[.digits][e[+-]digits] only (no hex floats)
  size_t i = 0;
  bool digits = false;
  while (i < body.size() && std::isdigit(static_cast<unsigned char>(body[i]))) {
    ++i;
    digits = true;
  }
  if (i < body.size() && body[i] == '.') {
    ++i;
    while (i < body.size() && std::isdigit(static_cast<unsigned char>(body[i]))) {
      ++i;
      digits = true;
    }
  }
  if (!digits)
    return std::nullopt;
  if (i < body.size() && body[i] == 'e') {
    ++i;
    if (i < body.size() && (body[i] == '+' || body[i] == '-'))
      ++i;
    bool ed = false;
    while (i < body.size() && std::isdigit(static_cast<unsigned char>(body[i]))) {
      ++i;
      ed = true;
    }
    if (!ed)
      return std::nullopt;
  }
  if (i != body.size())
    return std::nullopt;
  return sign * std::strtod(body.c_str(), nullptr);
}

value f_int(evaluator&, value& v, A& a) {
  auto* defp = arg(a, 0, "default");
  value def = defp ? *defp : value(int64_t{0});
  int64_t base = arg_int(a, 1, "base", 10);
  if (v.is_undefined())
    fail_undefined(v);
  if (v.is_str()) {
    if (auto r = parse_py_int(v.str(), base))
      return value(*r);
    if (auto f = parse_py_float(v.str())) {
      if (std::isnan(*f))
        fail("cannot convert float NaN to integer");
      if (std::isinf(*f))
        fail("cannot convert float infinity to integer");
      return value(static_cast<int64_t>(std::trunc(*f)));
    }
    return def;
  }
  if (v.is_integral())
    return value(v.as_int());
  if (v.is_float()) {
    double d = v.as_float();
    if (std::isnan(d))
      fail("cannot convert float NaN to integer");
    if (std::isinf(d))
      fail("cannot convert float infinity to integer");
    if (std::fabs(d) >= 9.2e18)
      fail("integer out of the supported 64-bit range");
    return value(static_cast<int64_t>(std::trunc(d)));
  }
  return def;
}

value f_float(evaluator&, value& v, A& a) {
  auto* defp = arg(a, 0, "default");
  value def = defp ? *defp : value(0.0);
  if (v.is_undefined())
    fail_undefined(v);
  if (v.is_number())
    return value(v.as_float());
  if (v.is_str()) {
    if (auto f = parse_py_float(v.str()))
      return value(*f);
  }
  return def;
}

value f_string(evaluator&, value& v, A&) {
  return value(soft_str(v));
}

value f_list(evaluator& ev, value& v, A&) {
  return make_list(to_list(ev, v));
}

value f_first(evaluator& ev, value& v, A&) {
  auto items = to_list(ev, v);
  if (items.empty())
    return make_undefined("No first item, sequence was empty.");
  return items.front();
}

value f_last(evaluator& ev, value& v, A&) {
  if (!(v.is_seq() || v.is_str() || v.is_dict() || v.is_undefined()))
    fail("'" + type_name(v) + "' object is not reversible");
  auto items = to_list(ev, v);
  if (items.empty())
    return make_undefined("No last item, sequence was empty.");
  return items.back();
}

void sort_items(std::vector<value>& items, std::vector<value>& keys, bool reverse) {
  std::vector<size_t> order(items.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  if (reverse)
    std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return compare(keys[y], keys[x]) < 0; });
  else
    std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return compare(keys[x], keys[y]) < 0; });
  std::vector<value> out;
  out.reserve(items.size());
  for (auto i : order)
    out.push_back(items[i]);
  items = std::move(out);
}

value f_sort(evaluator& ev, value& v, A& a) {
  bool reverse = arg_bool(a, 0, "reverse", false);
  bool cs = arg_bool(a, 1, "case_sensitive", false);
  auto attr = arg_str(a, 2, "attribute");
  auto items = to_list(ev, v);
  std::vector<value> keys;
  bool multi = attr && attr->find(',') != std::string::npos;
  for (auto& x : items)
    keys.push_back(sort_key(x, attr, cs, multi));
  sort_items(items, keys, reverse);
  return make_list(std::move(items));
}

value f_unique(evaluator& ev, value& v, A& a) {
  bool cs = arg_bool(a, 0, "case_sensitive", false);
  auto attr = arg_str(a, 1, "attribute");
  std::vector<value> out;
  std::unordered_map<std::string, bool> seen;
  for (auto& x : to_list(ev, v)) {
    auto k = hash_key(sort_key(x, attr, cs, false));
    if (seen.emplace(k, true).second)
      out.push_back(x);
  }
  return make_list(std::move(out));
}

value min_max(evaluator& ev, value& v, A& a, bool want_max) {
  bool cs = arg_bool(a, 0, "case_sensitive", false);
  auto attr = arg_str(a, 1, "attribute");
  auto items = to_list(ev, v);
  if (items.empty())
    return make_undefined("No aggregated item, sequence was empty.");
  size_t best = 0;
  value best_key = sort_key(items[0], attr, cs, false);
  for (size_t i = 1; i < items.size(); ++i) {
    value k = sort_key(items[i], attr, cs, false);
    int c = compare(k, best_key);
    if (want_max ? c > 0 : c < 0) {
      best = i;
      best_key = k;
    }
  }
  return items[best];
}
value f_min(evaluator& ev, value& v, A& a) {
  return min_max(ev, v, a, false);
}
value f_max(evaluator& ev, value& v, A& a) {
  return min_max(ev, v, a, true);
}

value f_sum(evaluator& ev, value& v, A& a) {
  auto attr = arg_str(a, 0, "attribute");
  auto* startp = arg(a, 1, "start");
  value total = startp ? *startp : value(int64_t{0});
  for (auto& x : to_list(ev, v))
    total = py_add(total, attr ? attr_path(x, *attr) : x);
  return total;
}

double round_half_even(double x, int64_t prec) {
  if (!std::isfinite(x))
    return x;
  if (prec >= 0) {
    if (prec > 300)
      return x;
    char buf[512];
    std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(prec), x);
    return std::strtod(buf, nullptr);
  }
  double p = std::pow(10.0, static_cast<double>(-prec));
  double y = x / p;
  double r = std::nearbyint(y);
  return r * p;
}

value f_round(evaluator&, value& v, A& a) {
  int64_t prec = arg_int(a, 0, "precision", 0);
  auto method = arg_str(a, 1, "method").value_or("common");
  if (method != "common" && method != "ceil" && method != "floor")
    fail("method must be common, ceil or floor");
  if (v.is_undefined())
    fail("type Undefined doesn't define __round__ method");
  if (!v.is_number())
    fail(method == "common" ? "type " + type_name(v) + " doesn't define __round__ method"
                            : "must be real number, not " + type_name(v));
  if (method == "common") {
    if (v.is_integral()) {
      if (prec >= 0)
        return value(v.as_int());
      double r = round_half_even(static_cast<double>(v.as_int()), prec);
      return value(static_cast<int64_t>(r));
    }
    return value(round_half_even(v.as_float(), prec));
  }
  double p = std::pow(10.0, static_cast<double>(prec));
  double x = v.as_float() * p;
  x = method == "ceil" ? std::ceil(x) : std::floor(x);
  return value(x / p);
}

value f_abs(evaluator&, value& v, A&) {
  if (v.is_integral()) {
    if (v.as_int() == std::numeric_limits<int64_t>::min())
      fail("integer overflow (stepflow integers are 64-bit)");
    return value(v.as_int() < 0 ? -v.as_int() : v.as_int());
  }
  if (v.is_float())
    return value(std::fabs(v.as_float()));
  fail("bad operand type for abs(): '" + type_name(v) + "'");
}

value f_map(evaluator& ev, value& v, A& a) {
  auto items = to_list(ev, v);
  if (a.pos.empty()) {
    auto attr = arg_str(a, 99, "attribute");
    if (!attr)
      fail("map requires a filter argument");
    const value* def = nullptr;
    for (auto& [k, x] : a.kw)
      if (k == "default")
        def = &x;
    for (auto& x : items) {
      x = attr_path(x, *attr);
      if (def && x.is_undefined())
        x = *def;
    }
    return make_list(std::move(items));
  }
  std::string name = to_str(a.pos[0]);
  A rest;
  rest.pos.assign(a.pos.begin() + 1, a.pos.end());
  rest.kw = a.kw;
  for (auto& x : items) {
    A copy = rest;
    x = ev.apply_filter(name, x, copy);
  }
  return make_list(std::move(items));
}

value select_impl(evaluator& ev, value& v, A& a, bool attr_mode, bool keep) {
  auto items = to_list(ev, v);
  size_t first = 0;
  std::optional<std::string> attr;
  if (attr_mode) {
    if (a.pos.empty())
      fail("Missing parameter for attribute name");
    attr = to_str(a.pos[0]);
    first = 1;
  }
  std::optional<std::string> test;
  A rest;
  if (a.pos.size() > first) {
    test = to_str(a.pos[first]);
    rest.pos.assign(a.pos.begin() + static_cast<ptrdiff_t>(first) + 1, a.pos.end());
    rest.kw = a.kw;
  }
  std::vector<value> out;
  for (auto& x : items) {
    value subject = attr ? attr_path(x, *attr) : x;
    bool r;
    if (test) {
      A copy = rest;
      r = ev.apply_test(*test, subject, copy);
    } else {
      r = truthy(subject);
    }
    if (r == keep)
      out.push_back(x);
  }
  return make_list(std::move(out));
}
value f_select(evaluator& ev, value& v, A& a) {
  return select_impl(ev, v, a, false, true);
}
value f_reject(evaluator& ev, value& v, A& a) {
  return select_impl(ev, v, a, false, false);
}
value f_selectattr(evaluator& ev, value& v, A& a) {
  return select_impl(ev, v, a, true, true);
}
value f_rejectattr(evaluator& ev, value& v, A& a) {
  return select_impl(ev, v, a, true, false);
}

value f_dictsort(evaluator& ev, value& v, A& a) {
  bool cs = arg_bool(a, 0, "case_sensitive", false);
  std::string by = arg_str(a, 1, "by").value_or("key");
  bool reverse = arg_bool(a, 2, "reverse", false);
  if (v.is_undefined())
    fail_undefined(v);
  if (!v.is_dict())
    fail("'" + type_name(v) + "' object has no attribute 'items'");
  int pos;
  if (by == "key")
    pos = 0;
  else if (by == "value")
    pos = 1;
  else
    fail("You can only sort by either \"key\" or \"value\"");
  std::vector<value> items, keys;
  for (auto& [k, x] : v.dict().entries) {
    items.push_back(make_tuple({k, x}));
    const value& key = pos == 0 ? k : x;
    keys.push_back(cs ? key : ignore_case(key));
  }
  ev.tick(items.size());
  sort_items(items, keys, reverse);
  return make_list(std::move(items));
}

value f_items(evaluator& ev, value& v, A&) {
  if (v.is_undefined())
    return make_list();
  if (!v.is_dict())
    fail("Can only get item pairs from a mapping.");
  std::vector<value> out;
  for (auto& [k, x] : v.dict().entries)
    out.push_back(make_tuple({k, x}));
  ev.tick(out.size());
  return make_list(std::move(out));
}

value f_batch(evaluator& ev, value& v, A& a) {
  auto* np = arg(a, 0, "linecount");
  if (!np)
    fail("do_batch() missing 1 required positional argument: 'linecount'");
  int64_t n = to_index(*np, "linecount");
  auto* fill = arg(a, 1, "fill_with");
  std::vector<value> out, cur;
  for (auto& x : to_list(ev, v)) {
    if (static_cast<int64_t>(cur.size()) == n) {
      out.push_back(make_list(std::move(cur)));
      cur.clear();
    }
    cur.push_back(x);
  }
  if (!cur.empty()) {
    if (fill && !fill->is_none())
      while (static_cast<int64_t>(cur.size()) < n)
        cur.push_back(*fill);
    out.push_back(make_list(std::move(cur)));
  }
  return make_list(std::move(out));
}

value f_slice(evaluator& ev, value& v, A& a) {
  int64_t slices = arg_int(a, 0, "slices", -1);
  if (slices <= 0)
    fail("slices must be positive");
  auto* fill = arg(a, 1, "fill_with");
  auto seq = to_list(ev, v);
  int64_t len = static_cast<int64_t>(seq.size());
  int64_t per = len / slices, extra = len % slices, offset = 0;
  std::vector<value> out;
  for (int64_t s = 0; s < slices; ++s) {
    int64_t start = offset + s * per;
    if (s < extra)
      ++offset;
    int64_t end = offset + (s + 1) * per;
    std::vector<value> tmp(seq.begin() + start, seq.begin() + end);
    if (fill && !fill->is_none() && s >= extra)
      tmp.push_back(*fill);
    out.push_back(make_list(std::move(tmp)));
  }
  return make_list(std::move(out));
}

value f_truncate(evaluator&, value& v, A& a) {
  std::string s = soft_str(v);
  int64_t len = arg_int(a, 0, "length", 255);
  bool killwords = arg_bool(a, 1, "killwords", false);
  std::string end = arg_str(a, 2, "end").value_or("...");
  int64_t leeway = arg_int(a, 3, "leeway", 5);
  int64_t endlen = static_cast<int64_t>(utf8_length(end));
  if (len < endlen)
    fail("expected length >= " + std::to_string(endlen) + ", got " + std::to_string(len));
  if (leeway < 0)
    fail("expected leeway >= 0, got " + std::to_string(leeway));
  auto u = decode_utf8(s);
  if (static_cast<int64_t>(u.size()) <= len + leeway)
    return value(s);
  std::string head = encode_utf8(u.substr(0, static_cast<size_t>(len - endlen)));
  if (killwords)
    return value(head + end);
  size_t sp = head.rfind(' ');
  if (sp != std::string::npos)
    head = head.substr(0, sp);
  return value(head + end);
}

value f_format(evaluator&, value& v, A& a) {
  if (!a.pos.empty() && !a.kw.empty())
    fail("can't handle positional and keyword arguments at the same time");
  value args;
  if (!a.kw.empty()) {
    args = make_dict();
    for (auto& [k, x] : a.kw)
      args.dict().set(value(k), x);
  } else {
    args = make_tuple(a.pos);
  }
  if (v.is_undefined())
    fail_undefined(v);
  return value(py_percent_format(soft_str(v), args));
}

value f_indent(evaluator& ev, value& v, A& a) {
  auto* w = arg(a, 0, "width");
  std::string ind;
  if (w && w->is_str())
    ind = w->str();
  else
    ind = std::string(static_cast<size_t>(std::max<int64_t>(0, w ? to_index(*w, "width") : 4)), ' ');
  bool first = arg_bool(a, 1, "first", false);
  bool blank = arg_bool(a, 2, "blank", false);
  if (v.is_undefined())
    fail_undefined(v);
  std::string s = soft_str(v) + "\n";
  auto lines = splitlines(s);
  std::string rv;
  if (blank) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i)
        rv += "\n" + ind;
      rv += lines[i];
    }
  } else {
    rv = lines.empty() ? "" : lines[0];
    for (size_t i = 1; i < lines.size(); ++i)
      rv += "\n" + (lines[i].empty() ? "" : ind + lines[i]);
  }
  if (first)
    rv = ind + rv;
  ev.check_size(rv.size());
  return value(std::move(rv));
}

value f_urlencode(evaluator& ev, value& v, A&) {
  if (v.is_str() || !(v.is_seq() || v.is_dict() || v.is_undefined()))
    return value(url_quote(soft_str(v), false));
  std::vector<std::pair<value, value>> pairs;
  if (v.is_dict()) {
    pairs = v.dict().entries;
  } else {
    for (auto& item : to_list(ev, v)) {
      auto kv = iterate(item);
      if (kv.size() != 2)
        fail("too many values to unpack (expected 2)");
      pairs.emplace_back(kv[0], kv[1]);
    }
  }
  std::string out;
  for (size_t i = 0; i < pairs.size(); ++i) {
    if (i)
      out += "&";
    out += url_quote(to_str(pairs[i].first), true) + "=" + url_quote(to_str(pairs[i].second), true);
  }
  return value(std::move(out));
}

value f_escape(evaluator&, value& v, A&) {
  return value(html_escape(soft_str(v)));
}
value f_safe(evaluator&, value& v, A&) {
  return value(soft_str(v));
}

value f_reverse(evaluator& ev, value& v, A&) {
  if (v.is_str()) {
    auto u = decode_utf8(v.str());
    std::reverse(u.begin(), u.end());
    return value(encode_utf8(u));
  }
  auto items = to_list(ev, v);
  std::reverse(items.begin(), items.end());
  return make_list(std::move(items));
}

value f_center(evaluator& ev, value& v, A& a) {
  int64_t w = arg_int(a, 0, "width", 80);
  ev.check_size(static_cast<size_t>(std::max<int64_t>(w, 0)));
  return value(pad_str(soft_str(v), w, ' ', 'c'));
}

value f_wordcount(evaluator&, value& v, A&) {
  int64_t n = 0;
  bool in = false;
  for (char32_t c : decode_utf8(soft_str(v))) {
    bool w = c == '_' || (c >= '0' && c <= '9') || is_alpha_cp(c);
    if (w && !in)
      ++n;
    in = w;
  }
  return value(n);
}

value f_attr(evaluator&, value& v, A& a) {
  auto* n = arg(a, 0, "name");
  if (!n)
    fail("attr() missing required argument 'name'");
  if (v.is_undefined())
    fail_undefined(v);
  value m = get_method(v, to_str(*n));
  if (!m.is_undefined())
    return m;
  return undefined_attr(v, to_str(*n));
}

value f_groupby(evaluator& ev, value& v, A& a) {
  auto attr = arg_str(a, 0, "attribute");
  if (!attr)
    fail("groupby() missing required argument 'attribute'");
  auto* def = arg(a, 1, "default");
  bool cs = arg_bool(a, 2, "case_sensitive", false);
  auto items = to_list(ev, v);
  std::vector<value> keys;
  for (auto& x : items) {
    value k = attr_path(x, *attr);
    if (def && k.is_undefined())
      k = *def;
    keys.push_back(cs ? k : ignore_case(k));
  }
  std::vector<value> raw_keys;
  for (auto& x : items) {
    value k = attr_path(x, *attr);
    if (def && k.is_undefined())
      k = *def;
    raw_keys.push_back(k);
  }
  std::vector<size_t> order(items.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return compare(keys[x], keys[y]) < 0; });
  std::vector<value> out;
  size_t i = 0;
  while (i < order.size()) {
    size_t j = i;
    std::vector<value> group;
    while (j < order.size() && equals(keys[order[j]], keys[order[i]]))
      group.push_back(items[order[j++]]);
    out.push_back(make_tuple({raw_keys[order[i]], make_list(std::move(group))}));
    i = j;
  }
  return make_list(std::move(out));
}

value f_filesizeformat(evaluator&, value& v, A& a) {
  bool binary = arg_bool(a, 0, "binary", false);
  double bytes;
  if (v.is_number())
    bytes = v.as_float();
  else if (v.is_str()) {
    auto f = parse_py_float(v.str());
    if (!f)
      fail("could not convert string to float: " + repr(v));
    bytes = *f;
  } else
    fail("float() argument must be a string or a real number, not '" + type_name(v) + "'");
  double base = binary ? 1024 : 1000;
  const char* units[2][8] = {{"kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"},
                             {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"}};
  if (bytes == 1)
    return value("1 Byte");
  if (bytes < base) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%d Bytes", static_cast<int>(bytes));
    return value(buf);
  }
  double unit = base;
  for (int i = 0; i < 8; ++i) {
    unit = std::pow(base, i + 2);
    if (bytes < unit || i == 7) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.1f %s", base * bytes / unit, units[binary ? 1 : 0][i]);
      return value(buf);
    }
  }
  return value("");
}

value f_striptags(evaluator&, value& v, A&) {
  std::string s = soft_str(v);
  std::string out;
  bool in_tag = false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s.compare(i, 4, "<!--") == 0) {
      size_t e = s.find("-->", i);
      if (e == std::string::npos)
        break;
      i = e + 2;
      continue;
    }
    if (s[i] == '<' && i + 1 < s.size() && !in_tag) {
      size_t e = s.find('>', i);
      if (e != std::string::npos) {
        i = e;
        out += ' ';
        continue;
      }
    }
    out += s[i];
  }
  auto words = py_split(out, std::nullopt, -1, false);
  std::string r;
  for (size_t i = 0; i < words.size(); ++i)
    r += (i ? " " : "") + words[i].str();
  return value(r);
}

const std::unordered_map<std::string_view, filter_fn>& filters() {
  static const std::unordered_map<std::string_view, filter_fn> m = {
    {"tojson", f_tojson},     {"default", f_default},       {"d", f_default},
    {"length", f_length},     {"count", f_length},          {"lower", f_lower},
    {"upper", f_upper},       {"title", f_title},           {"capitalize", f_capitalize},
    {"trim", f_trim},         {"replace", f_replace},       {"join", f_join},
    {"int", f_int},           {"float", f_float},           {"string", f_string},
    {"list", f_list},         {"first", f_first},           {"last", f_last},
    {"sort", f_sort},         {"unique", f_unique},         {"min", f_min},
    {"max", f_max},           {"sum", f_sum},               {"round", f_round},
    {"abs", f_abs},           {"map", f_map},               {"select", f_select},
    {"reject", f_reject},     {"selectattr", f_selectattr}, {"rejectattr", f_rejectattr},
    {"dictsort", f_dictsort}, {"items", f_items},           {"batch", f_batch},
    {"slice", f_slice},       {"truncate", f_truncate},     {"format", f_format},
    {"indent", f_indent},     {"urlencode", f_urlencode},   {"escape", f_escape},
    {"e", f_escape},          {"forceescape", f_escape},    {"safe", f_safe},
    {"reverse", f_reverse},   {"center", f_center},         {"wordcount", f_wordcount},
    {"attr", f_attr},         {"groupby", f_groupby},       {"filesizeformat", f_filesizeformat},
    {"striptags", f_striptags},
  };
  return m;
}

// -- tests ------------------------------------------------------------------------------

const value& test_arg(const A& a, const char* name) {
  auto* v = arg(a, 0, name);
  if (!v)
    fail(std::string("test is missing its argument '") + name + "'");
  return *v;
}

bool t_defined(evaluator&, const value& v, A&) { return !v.is_undefined(); }
bool t_undefined(evaluator&, const value& v, A&) { return v.is_undefined(); }
bool t_none(evaluator&, const value& v, A&) { return v.is_none(); }
bool t_boolean(evaluator&, const value& v, A&) { return v.is_bool(); }
bool t_true(evaluator&, const value& v, A&) { return v.is_bool() && std::get<bool>(v.v); }
bool t_false(evaluator&, const value& v, A&) { return v.is_bool() && !std::get<bool>(v.v); }
bool t_integer(evaluator&, const value& v, A&) { return v.is_int(); }
bool t_float(evaluator&, const value& v, A&) { return v.is_float(); }
bool t_number(evaluator&, const value& v, A&) { return v.is_number(); }
bool t_string(evaluator&, const value& v, A&) { return v.is_str(); }
bool t_mapping(evaluator&, const value& v, A&) { return v.is_dict() && v.dict().kind == dict_t::kind_t::plain; }
bool t_iterable(evaluator&, const value& v, A&) {
  return v.is_str() || v.is_seq() || v.is_dict() || v.is_undefined();
}
bool t_sequence(evaluator&, const value& v, A&) {
  return v.is_str() || v.is_seq() || (v.is_dict() && v.dict().kind == dict_t::kind_t::plain) || v.is_undefined();
}
bool t_callable(evaluator&, const value& v, A&) {
  return v.is_callable() || (v.is_dict() && v.dict().kind == dict_t::kind_t::loop);
}
bool t_escaped(evaluator&, const value&, A&) { return false; }
bool t_lower(evaluator&, const value& v, A&) {
  bool cased = false;
  for (char32_t c : decode_utf8(to_str(v))) {
    if (is_cased_upper(c) && lower_cp(c) != c && upper_cp(c) == c)
      return false;
    if (is_cased_lower(c))
      cased = true;
  }
  return cased;
}
bool t_upper(evaluator&, const value& v, A&) {
  bool cased = false;
  for (char32_t c : decode_utf8(to_str(v))) {
    if (is_cased_lower(c) && upper_cp(c) != c && lower_cp(c) == c)
      return false;
    if (is_cased_upper(c))
      cased = true;
  }
  return cased;
}

int64_t mod_int(const value& v, int64_t m, bool& is_float, double& fm) {
  if (v.is_undefined())
    fail_undefined(v);
  if (v.is_float()) {
    is_float = true;
    double r = std::fmod(v.as_float(), static_cast<double>(m));
    if (r != 0 && ((r < 0) != (m < 0)))
      r += static_cast<double>(m);
    fm = r;
    return 0;
  }
  if (!v.is_integral())
    fail(v.is_str() ? "not all arguments converted during string formatting"
                    : "unsupported operand type(s) for %: '" + type_name(v) + "' and 'int'");
  int64_t r = v.as_int() % m;
  if (r != 0 && ((r < 0) != (m < 0)))
    r += m;
  return r;
}

bool t_odd(evaluator&, const value& v, A&) {
  bool f = false;
  double fm = 0;
  int64_t r = mod_int(v, 2, f, fm);
  return f ? fm == 1.0 : r == 1;
}
bool t_even(evaluator&, const value& v, A&) {
  bool f = false;
  double fm = 0;
  int64_t r = mod_int(v, 2, f, fm);
  return f ? fm == 0.0 : r == 0;
}
bool t_divisibleby(evaluator&, const value& v, A& a) {
  const value& n = test_arg(a, "num");
  if (n.is_undefined())
    fail_undefined(n);
  if (v.is_undefined())
    fail_undefined(v);
  if (!v.is_number() || !n.is_number())
    fail("unsupported operand type(s) for %: '" + type_name(v) + "' and '" + type_name(n) + "'");
  if (n.is_integral() && v.is_integral()) {
    if (n.as_int() == 0)
      fail("integer division or modulo by zero");
    return v.as_int() % n.as_int() == 0;
  }
  if (n.as_float() == 0.0)
    fail("float modulo");
  return std::fmod(v.as_float(), n.as_float()) == 0.0;
}
bool t_eq(evaluator&, const value& v, A& a) { return equals(v, test_arg(a, "other")); }
bool t_ne(evaluator&, const value& v, A& a) { return !equals(v, test_arg(a, "other")); }

int cmp_checked(const value& a, const value& b, const char* op) {
  if (!(a.is_number() && b.is_number()) && !(a.is_str() && b.is_str()) && !(a.is_list() && b.is_list()) &&
      !(a.is_tuple() && b.is_tuple()) && !a.is_undefined() && !b.is_undefined())
    fail(std::string("'") + op + "' not supported between instances of '" + type_name(a) + "' and '" +
         type_name(b) + "'");
  return compare(a, b);
}
bool t_lt(evaluator&, const value& v, A& a) { return cmp_checked(v, test_arg(a, "other"), "<") < 0; }
bool t_le(evaluator&, const value& v, A& a) { return cmp_checked(v, test_arg(a, "other"), "<=") <= 0; }
bool t_gt(evaluator&, const value& v, A& a) { return cmp_checked(v, test_arg(a, "other"), ">") > 0; }
bool t_ge(evaluator&, const value& v, A& a) { return cmp_checked(v, test_arg(a, "other"), ">=") >= 0; }
bool t_in(evaluator&, const value& v, A& a) { return contains(test_arg(a, "seq"), v); }
bool t_sameas(evaluator&, const value& v, A& a) {
  const value& o = test_arg(a, "other");
  if (v.v.index() != o.v.index())
    return false;
  if (v.is_none() || v.is_undefined())
    return v.is_none();
  if (v.is_bool())
    return std::get<bool>(v.v) == std::get<bool>(o.v);
  if (v.is_int())
    return v.as_int() == o.as_int() && v.as_int() >= -5 && v.as_int() <= 256;
  if (v.is_seq())
    return &v.items() == &o.items();
  if (v.is_dict())
    return &v.dict() == &o.dict();
  if (v.is_callable())
    return &v.fn() == &o.fn();
  return false;
}
bool t_filter(evaluator&, const value& v, A&) { return v.is_str() && find_filter(v.str()) != nullptr; }
bool t_test(evaluator&, const value& v, A&) { return v.is_str() && find_test(v.str()) != nullptr; }

const std::unordered_map<std::string_view, test_fn>& tests() {
  static const std::unordered_map<std::string_view, test_fn> m = {
    {"defined", t_defined},   {"undefined", t_undefined}, {"none", t_none},
    {"boolean", t_boolean},   {"true", t_true},           {"false", t_false},
    {"integer", t_integer},   {"float", t_float},         {"number", t_number},
    {"string", t_string},     {"mapping", t_mapping},     {"iterable", t_iterable},
    {"sequence", t_sequence}, {"callable", t_callable},   {"escaped", t_escaped},
    {"lower", t_lower},       {"upper", t_upper},         {"odd", t_odd},
    {"even", t_even},         {"divisibleby", t_divisibleby},
    {"eq", t_eq},             {"equalto", t_eq},          {"==", t_eq},
    {"ne", t_ne},             {"!=", t_ne},               {"lt", t_lt},
    {"lessthan", t_lt},       {"<", t_lt},                {"le", t_le},
    {"<=", t_le},             {"gt", t_gt},               {"greaterthan", t_gt},
    {">", t_gt},              {"ge", t_ge},               {">=", t_ge},
    {"in", t_in},             {"sameas", t_sameas},       {"filter", t_filter},
    {"test", t_test},
  };
  return m;
}

} // namespace

const filter_fn* find_filter(std::string_view name) {
  auto& m = filters();
  auto it = m.find(name);
  return it == m.end() ? nullptr : &it->second;
}

const test_fn* find_test(std::string_view name) {
  auto& m = tests();
  auto it = m.find(name);
  return it == m.end() ? nullptr : &it->second;
}

} // namespace stepflow::tmpl
