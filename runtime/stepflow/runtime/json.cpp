#include "stepflow/runtime/json.hpp"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include <boost/json/stream_parser.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>

namespace stepflow {

namespace {

void line_col(std::string_view text, size_t offset, size_t& line, size_t& col) {
  line = 1;
  col = 1;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
}

/// indent < 0: compact.
void pretty(std::string& out, const json::value& v, int indent) {
  bool compact = indent < 0;
  auto pad = [&](int n) {
    if (!compact)
      out.append(static_cast<size_t>(n) * 2, ' ');
  };
  const char* nl = compact ? "" : "\n";
  const char* sep = compact ? ":" : ": ";
  int inner = compact ? -1 : indent + 1;
  switch (v.kind()) {
    case json::kind::object: {
      const auto& o = v.get_object();
      if (o.empty()) {
        out += "{}";
        return;
      }
      out += "{";
      out += nl;
      bool first = true;
      for (const auto& kv : o) {
        if (!first) {
          out += ",";
          out += nl;
        }
        first = false;
        pad(indent + 1);
        out += json::serialize(json::string_view{kv.key()});
        out += sep;
        pretty(out, kv.value(), inner);
      }
      out += nl;
      pad(indent);
      out += "}";
      return;
    }
    case json::kind::array: {
      const auto& a = v.get_array();
      if (a.empty()) {
        out += "[]";
        return;
      }
      out += "[";
      out += nl;
      bool first = true;
      for (const auto& e : a) {
        if (!first) {
          out += ",";
          out += nl;
        }
        first = false;
        pad(indent + 1);
        pretty(out, e, inner);
      }
      out += nl;
      pad(indent);
      out += "]";
      return;
    }
    case json::kind::double_:
      // Shortest round-trip form ("0.000266", not "2.66E-4").
      if (std::isfinite(v.get_double()))
        out += fmt::format("{}", v.get_double());
      else
        out += "null";
      return;
    default:
      out += json::serialize(v);
  }
}

} // namespace

caf::expected<json::value> parse_json(std::string_view text, std::string_view source) {
  json::parse_options opts;
  opts.allow_invalid_utf8 = false;
  json::stream_parser p({}, opts);
  json::error_code ec;
  size_t n = p.write_some(text.data(), text.size(), ec);
  if (!ec && n < text.size())
    ec = json::make_error_code(json::error::extra_data);
  if (!ec) {
    p.finish(ec);
    if (ec)
      n = text.size();
  }
  if (ec) {
    size_t line, col;
    line_col(text, n, line, col);
    std::string what = ec.message();
    if (text.find_first_not_of(" \t\r\n") == std::string_view::npos)
      what = "the document is empty";
    return make_error(errc::bad_json, fmt::format("{}: line {}, column {}: invalid JSON ({})",
                                                  source, line, col, what));
  }
  return p.release();
}

caf::expected<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return make_error(errc::io_error,
                      fmt::format("{}: cannot read file ({})", path, std::strerror(errno)));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad())
    return make_error(errc::io_error, fmt::format("{}: read error", path));
  return ss.str();
}

caf::error write_file(const std::string& path, std::string_view content) {
  std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f)
    return make_error(errc::io_error,
                      fmt::format("{}: cannot write file ({})", path, std::strerror(errno)));
  bool ok = std::fwrite(content.data(), 1, content.size(), f) == content.size();
  ok = (std::fflush(f) == 0) && ok;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return make_error(errc::io_error, fmt::format("{}: write failed", path));
  }
  return {};
}

caf::expected<json::value> load_json_file(const std::string& path) {
  auto text = read_file(path);
  if (!text)
    return text.error();
  return parse_json(*text, path);
}

std::string to_json(const json::value& v) {
  return json::serialize(v);
}

std::string to_display_json(const json::value& v) {
  std::string out;
  pretty(out, v, -1);
  return out;
}

std::string to_pretty_json(const json::value& v) {
  std::string out;
  pretty(out, v, 0);
  return out;
}

std::string to_text(const json::value& v) {
  switch (v.kind()) {
    case json::kind::string:
      return std::string(v.get_string());
    case json::kind::null:
      return {};
    case json::kind::double_: {
      double d = v.get_double();
      if (d == static_cast<double>(static_cast<int64_t>(d)) && d < 1e15 && d > -1e15)
        return std::to_string(static_cast<int64_t>(d));
      return fmt::format("{}", d);
    }
    default:
      return json::serialize(v);
  }
}

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out.reserve(out.size() + s.size() + 2);
  out.push_back('"');
  size_t run = 0; // start of the bytes not yet copied
  for (size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\')
      continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    out.push_back('\\');
    switch (c) {
      case '"': out.push_back('"'); break;
      case '\\': out.push_back('\\'); break;
      case '\b': out.push_back('b'); break;
      case '\f': out.push_back('f'); break;
      case '\n': out.push_back('n'); break;
      case '\r': out.push_back('r'); break;
      case '\t': out.push_back('t'); break;
      default:
        out.append("u00");
        out.push_back(hex[c >> 4]);
        out.push_back(hex[c & 0xf]);
    }
  }
  out.append(s.data() + run, s.size() - run);
  out.push_back('"');
}

std::string quote_json(std::string_view s) {
  std::string out;
  append_json_string(out, s);
  return out;
}

} // namespace stepflow
