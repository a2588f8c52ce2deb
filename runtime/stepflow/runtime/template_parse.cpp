// Lexer and parser of the template engine: Jinja2 syntax to a tree.
#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

#include "stepflow/runtime/template_internal.hpp"

namespace stepflow::tmpl {

namespace {

enum class tk : uint8_t {
  data, var_begin, var_end, block_begin, block_end, name, string, integer, floating, op, eof
};

struct token {
  tk type;
  std::string text;  // data, name, op, unescaped string
  value lit;         // integer / floating
  size_t pos = 0;
};

bool is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool is_name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
         static_cast<unsigned char>(c) >= 0x80;
}
bool is_name_char(char c) {
  return is_name_start(c) || (c >= '0' && c <= '9');
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

class lexer {
public:
  explicit lexer(std::string_view src) : src_(src) {}

  std::vector<token> run() {
    size_t n = src_.size();
    size_t pos = 0;
    bool lstrip_next = false;
    while (pos < n) {
      size_t t = find_tag(pos);
      size_t data_end = t == npos ? n : t;
      std::string_view data = src_.substr(pos, data_end - pos);
      size_t data_pos = pos;
      if (lstrip_next) {
        size_t k = 0;
        while (k < data.size() && is_ws(data[k]))
          ++k;
        data.remove_prefix(k);
        data_pos += k;
        lstrip_next = false;
      }
      if (t == npos) {
        emit_data(data, data_pos);
        break;
      }
      char kind = src_[t + 1];
      size_t p = t + 2;
      bool strip_before = p < n && src_[p] == '-';
      if (p < n && (src_[p] == '-' || src_[p] == '+'))
        ++p;
      if (strip_before) {
        while (!data.empty() && is_ws(data.back()))
          data.remove_suffix(1);
      }
      if (kind == '#') {
        size_t e = src_.find("#}", p);
        if (e == npos)
          fail_at(t, "Missing end of comment tag");
        lstrip_next = e > p && src_[e - 1] == '-';
        emit_data(data, data_pos);
        pos = e + 2;
        continue;
      }
      if (kind == '%') {
        size_t after_raw = 0;
        bool raw_strip_after = false;
        if (match_raw_start(p, after_raw, raw_strip_after)) {
          emit_data(data, data_pos);
          pos = lex_raw(t, after_raw, raw_strip_after, lstrip_next);
          continue;
        }
      }
      emit_data(data, data_pos);
      pos = lex_tag(t, p, kind == '%', lstrip_next);
    }
    toks_.push_back(token{tk::eof, {}, {}, n});
    return std::move(toks_);
  }

  [[noreturn]] void fail_at(size_t pos, std::string msg) {
    throw template_error{std::move(msg), static_cast<long>(pos)};
  }

private:
  static constexpr size_t npos = std::string_view::npos;

  size_t find_tag(size_t from) const {
    for (size_t i = src_.find('{', from); i != npos; i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size()) {
        char c = src_[i + 1];
        if (c == '{' || c == '%' || c == '#')
          return i;
      }
    }
    return npos;
  }

  void emit_data(std::string_view d, size_t pos) {
    if (!d.empty())
      toks_.push_back(token{tk::data, std::string(d), {}, pos});
  }

  size_t skip_ws(size_t p) const {
    while (p < src_.size() && is_ws(src_[p]))
      ++p;
    return p;
  }

  // `{%[-+]? raw [-+]?%}`: p is after the optional sign.
  bool match_raw_start(size_t p, size_t& after, bool& strip_after) const {
    p = skip_ws(p);
    if (src_.compare(p, 3, "raw") != 0)
      return false;
    p += 3;
    if (p < src_.size() && is_name_char(src_[p]))
      return false;
    p = skip_ws(p);
    strip_after = false;
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) {
      strip_after = src_[p] == '-';
      ++p;
    }
    if (src_.compare(p, 2, "%}") != 0)
      return false;
    after = p + 2;
    return true;
  }

  size_t lex_raw(size_t start, size_t p, bool strip_after, bool& lstrip_next) {
    for (size_t i = src_.find("{%", p); i != npos; i = src_.find("{%", i + 1)) {
      size_t q = i + 2;
      bool strip_before = q < src_.size() && src_[q] == '-';
      if (q < src_.size() && (src_[q] == '-' || src_[q] == '+'))
        ++q;
      q = skip_ws(q);
      if (src_.compare(q, 6, "endraw") != 0)
        continue;
      q = skip_ws(q + 6);
      bool strip_end = false;
      if (q < src_.size() && (src_[q] == '-' || src_[q] == '+')) {
        strip_end = src_[q] == '-';
        ++q;
      }
      if (src_.compare(q, 2, "%}") != 0)
        continue;
      std::string_view body = src_.substr(p, i - p);
      size_t body_pos = p;
      if (strip_after) {
        size_t k = 0;
        while (k < body.size() && is_ws(body[k]))
          ++k;
        body.remove_prefix(k);
        body_pos += k;
      }
      if (strip_before)
        while (!body.empty() && is_ws(body.back()))
          body.remove_suffix(1);
      emit_data(body, body_pos);
      lstrip_next = strip_end;
      return q + 2;
    }
    fail_at(start, "Missing end of raw directive");
  }

  size_t lex_tag(size_t start, size_t p, bool block, bool& lstrip_next) {
    toks_.push_back(token{block ? tk::block_begin : tk::var_begin, {}, {}, start});
    std::vector<char> balance;
    const char end_c = block ? '%' : '}';
    for (;;) {
      p = skip_ws(p);
      if (p >= src_.size())
        fail_at(start, block ? "Unexpected end of template inside a block tag ({% without %})"
                             : "Unexpected end of template inside a variable tag ({{ without }})");
      if (balance.empty()) {
        size_t q = p;
        bool strip = false;
        if (src_[q] == '-' || src_[q] == '+') {
          strip = src_[q] == '-';
          ++q;
        }
        if (q + 1 < src_.size() && src_[q] == end_c && src_[q + 1] == '}') {
          toks_.push_back(token{block ? tk::block_end : tk::var_end, {}, {}, p});
          lstrip_next = strip;
          return q + 2;
        }
      }
      p = lex_token(p, balance);
    }
  }

  size_t lex_token(size_t p, std::vector<char>& balance) {
    char c = src_[p];
    if (is_name_start(c)) {
      size_t q = p;
      while (q < src_.size() && is_name_char(src_[q]))
        ++q;
      toks_.push_back(token{tk::name, std::string(src_.substr(p, q - p)), {}, p});
      return q;
    }
    if (is_digit(c))
      return lex_number(p);
    if (c == '\'' || c == '"')
      return lex_string(p);
    static constexpr std::string_view two[] = {"//", "**", "==", "!=", ">=", "<="};
    for (auto op : two)
      if (src_.compare(p, 2, op) == 0) {
        toks_.push_back(token{tk::op, std::string(op), {}, p});
        return p + 2;
      }
    if (std::strchr("+-/*%~[](){}><=.:|,;", c) == nullptr || c == '\0')
      fail_at(p, std::string("unexpected char '") + c + "'");
    if (c == '(' || c == '[' || c == '{')
      balance.push_back(c);
    else if (c == ')' || c == ']' || c == '}') {
      char open = c == ')' ? '(' : c == ']' ? '[' : '{';
      if (balance.empty())
        fail_at(p, std::string("unexpected '") + c + "'");
      if (balance.back() != open)
        fail_at(p, std::string("unexpected '") + c + "', expected '" +
                     (balance.back() == '(' ? ")" : balance.back() == '[' ? "]" : "}") + "'");
      balance.pop_back();
    }
    toks_.push_back(token{tk::op, std::string(1, c), {}, p});
    return p + 1;
  }

  size_t digits(size_t q) const {
    // \d+(_\d+)*
    while (q < src_.size()) {
      if (is_digit(src_[q]))
        ++q;
      else if (src_[q] == '_' && q + 1 < src_.size() && is_digit(src_[q + 1]) &&
               q > 0 && is_digit(src_[q - 1]))
        ++q;
      else
        break;
    }
    return q;
  }

  size_t lex_number(size_t p) {
    bool after_dot = !toks_.empty() && toks_.back().type == tk::op && toks_.back().text == "." &&
                     toks_.back().pos + 1 == p;
    auto clean = [](std::string_view s) {
      std::string r;
      for (char ch : s)
        if (ch != '_')
          r += ch;
      return r;
    };
    if (!after_dot && src_[p] == '0' && p + 1 < src_.size() &&
        std::strchr("xXoObB", src_[p + 1]) != nullptr && src_[p + 1] != '\0') {
      int base = (src_[p + 1] == 'x' || src_[p + 1] == 'X') ? 16
                 : (src_[p + 1] == 'o' || src_[p + 1] == 'O') ? 8 : 2;
      size_t q = p + 2;
      while (q < src_.size() && (std::isxdigit(static_cast<unsigned char>(src_[q])) || src_[q] == '_'))
        ++q;
      std::string s = clean(src_.substr(p + 2, q - p - 2));
      int64_t v = 0;
      auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
      if (ec != std::errc{} || ptr != s.data() + s.size() || s.empty())
        fail_at(p, "invalid integer literal");
      toks_.push_back(token{tk::integer, {}, value(v), p});
      return q;
    }
    size_t q = digits(p);
    bool is_float = false;
    if (!after_dot) {
      size_t r = q;
      if (r + 1 < src_.size() && src_[r] == '.' && is_digit(src_[r + 1])) {
        r = digits(r + 1);
        is_float = true;
      }
      if (r < src_.size() && (src_[r] == 'e' || src_[r] == 'E')) {
        size_t e = r + 1;
        if (e < src_.size() && (src_[e] == '+' || src_[e] == '-'))
          ++e;
        if (e < src_.size() && is_digit(src_[e])) {
          r = digits(e);
          is_float = true;
        }
      }
      if (is_float)
        q = r;
    }
    std::string s = clean(src_.substr(p, q - p));
    if (is_float) {
      toks_.push_back(token{tk::floating, {}, value(std::strtod(s.c_str(), nullptr)), p});
    } else {
      int64_t v = 0;
      auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      if (ec != std::errc{})
        fail_at(p, "integer literal out of the supported 64-bit range");
      toks_.push_back(token{tk::integer, {}, value(v), p});
    }
    return q;
  }

  static int hexval(char c) {
    if (c >= '0' && c <= '9')
      return c - '0';
    if (c >= 'a' && c <= 'f')
      return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
      return c - 'A' + 10;
    return -1;
  }

  size_t lex_string(size_t p) {
    char quote = src_[p];
    std::string out;
    size_t q = p + 1;
    for (;;) {
      if (q >= src_.size())
        fail_at(p, "unexpected end of string");
      char c = src_[q];
      if (c == quote)
        break;
      if (c != '\\') {
        out += c;
        ++q;
        continue;
      }
      if (q + 1 >= src_.size())
        fail_at(p, "unexpected end of string");
      char e = src_[q + 1];
      q += 2;
      switch (e) {
        case '\n': break;
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case 'a': out += '\a'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'v': out += '\v'; break;
        case 'x':
        case 'u':
        case 'U': {
          int len = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          char32_t cp = 0;
          for (int k = 0; k < len; ++k) {
            int h = q < src_.size() ? hexval(src_[q]) : -1;
            if (h < 0)
              fail_at(p, "invalid \\" + std::string(1, e) + " escape in a string literal");
            cp = cp * 16 + static_cast<char32_t>(h);
            ++q;
          }
          out += encode_utf8(std::u32string(1, cp));
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            char32_t cp = static_cast<char32_t>(e - '0');
            for (int k = 0; k < 2 && q < src_.size() && src_[q] >= '0' && src_[q] <= '7'; ++k, ++q)
              cp = cp * 8 + static_cast<char32_t>(src_[q] - '0');
            out += encode_utf8(std::u32string(1, cp));
          } else {
            out += '\\';
            out += e;
          }
      }
    }
    toks_.push_back(token{tk::string, std::move(out), {}, p});
    return q + 1;
  }

  std::string_view src_;
  std::vector<token> toks_;
};

// -- parser ------------------------------------------------------------------------

class parser {
public:
  parser(std::vector<token> toks, int max_depth) : toks_(std::move(toks)), max_depth_(max_depth) {}

  stmt_list parse_all() {
    auto body = subparse({});
    return body;
  }

private:
  const token& cur() const { return toks_[i_]; }
  const token& peek(size_t k = 1) const { return toks_[std::min(i_ + k, toks_.size() - 1)]; }
  void next() {
    if (i_ + 1 < toks_.size())
      ++i_;
  }
  bool is_op(std::string_view op) const { return cur().type == tk::op && cur().text == op; }
  bool is_name(std::string_view n) const { return cur().type == tk::name && cur().text == n; }
  bool skip_op(std::string_view op) {
    if (!is_op(op))
      return false;
    next();
    return true;
  }
  bool skip_name(std::string_view n) {
    if (!is_name(n))
      return false;
    next();
    return true;
  }

  static std::string describe(const token& t) {
    switch (t.type) {
      case tk::data: return "template data";
      case tk::var_begin: return "begin of print statement";
      case tk::var_end: return "end of print statement";
      case tk::block_begin: return "begin of statement block";
      case tk::block_end: return "end of statement block";
      case tk::name: return "'" + t.text + "'";
      case tk::string: return "string";
      case tk::integer: return "integer";
      case tk::floating: return "float";
      case tk::op: return "'" + t.text + "'";
      case tk::eof: return "end of template";
    }
    return "token";
  }

  [[noreturn]] void error(std::string msg) const {
    throw template_error{std::move(msg), static_cast<long>(cur().pos)};
  }
  [[noreturn]] void unexpected(std::string_view expected) const {
    error("expected " + std::string(expected) + ", got " + describe(cur()));
  }
  void expect_op(std::string_view op) {
    if (!skip_op(op))
      unexpected("'" + std::string(op) + "'");
  }
  void expect_block_end() {
    if (cur().type != tk::block_end)
      unexpected("end of statement block");
    next();
  }
  std::string expect_name() {
    if (cur().type != tk::name)
      unexpected("name");
    std::string n = cur().text;
    next();
    return n;
  }

  struct depth_guard {
    parser& p;
    explicit depth_guard(parser& pp) : p(pp) {
      if (++p.depth_ > p.max_depth_)
        p.error("template nesting is too deep");
    }
    ~depth_guard() { --p.depth_; }
  };

  expr_ptr node(ek kind, const token& at) {
    auto e = std::make_unique<expr>();
    e->kind = kind;
    e->pos = static_cast<long>(at.pos);
    return e;
  }
  stmt_ptr snode(sk kind, const token& at) {
    auto s = std::make_unique<stmt>();
    s->kind = kind;
    s->pos = static_cast<long>(at.pos);
    return s;
  }

  // Template body until a block whose tag name is in `ends` (left unconsumed,
  // positioned on the name).
  stmt_list subparse(std::initializer_list<std::string_view> ends) {
    depth_guard g(*this);
    stmt_list body;
    for (;;) {
      const token& t = cur();
      switch (t.type) {
        case tk::data: {
          auto s = snode(sk::text, t);
          s->text = t.text;
          body.push_back(std::move(s));
          next();
          break;
        }
        case tk::var_begin: {
          auto s = snode(sk::output, t);
          next();
          s->e = parse_tuple(false, true, {}, false);
          if (cur().type != tk::var_end)
            unexpected("end of print statement");
          next();
          body.push_back(std::move(s));
          break;
        }
        case tk::block_begin: {
          next();
          if (cur().type == tk::name &&
              std::find(ends.begin(), ends.end(), cur().text) != ends.end())
            return body;
          body.push_back(parse_statement(ends));
          break;
        }
        case tk::eof:
          if (ends.size() != 0) {
            std::string names;
            for (auto n : ends)
              names += (names.empty() ? "'" : " or '") + std::string(n) + "'";
            error("Unexpected end of template. Jinja was looking for the following tags: " + names +
                  ".");
          }
          return body;
        default: unexpected("template data or tag");
      }
    }
  }

  stmt_ptr parse_statement(std::initializer_list<std::string_view> ends) {
    if (cur().type != tk::name)
      error("tag name expected");
    const token& t = cur();
    const std::string n = t.text;
    if (n == "if")
      return parse_if();
    if (n == "for")
      return parse_for();
    if (n == "set")
      return parse_set();
    if (n == "with")
      return parse_with();
    if (n == "filter")
      return parse_filter_block();
    if (n == "macro")
      return parse_macro();
    if (n == "block")
      return parse_block();
    std::string msg = "Encountered unknown tag '" + n + "'.";
    if (ends.size() != 0) {
      std::string names;
      for (auto e : ends)
        names += (names.empty() ? "'" : " or '") + std::string(e) + "'";
      msg += " Jinja was looking for the following tags: " + names + ".";
    }
    error(msg);
  }

  void expect_end_tag(std::string_view name) {
    // positioned on the end tag's name
    if (!is_name(name))
      unexpected("'" + std::string(name) + "'");
    next();
    expect_block_end();
  }

  stmt_ptr parse_if() {
    auto s = snode(sk::if_, cur());
    next();
    for (;;) {
      auto cond = parse_tuple(false, false, {}, false);
      expect_block_end();
      auto body = subparse({"elif", "else", "endif"});
      s->branches.emplace_back(std::move(cond), std::move(body));
      if (skip_name("elif"))
        continue;
      if (skip_name("else")) {
        expect_block_end();
        s->else_body = subparse({"endif"});
      }
      expect_end_tag("endif");
      return s;
    }
  }

  expr_ptr parse_assign_target(std::initializer_list<std::string_view> extra_end, bool with_ns) {
    if (with_ns && cur().type == tk::name && peek().type == tk::op && peek().text == "." &&
        peek(2).type == tk::name) {
      auto e = node(ek::getattr, cur());
      auto base = node(ek::name, cur());
      base->name = cur().text;
      next();
      next();
      e->name = cur().text;
      next();
      e->kids.push_back(std::move(base));
      return e;
    }
    auto target = parse_tuple(true, false, extra_end, false);
    check_target(*target);
    return target;
  }

  void check_target(const expr& t) {
    if (t.kind == ek::name) {
      if (t.name == "true" || t.name == "false" || t.name == "none" || t.name == "True" ||
          t.name == "False" || t.name == "None")
        error("Can't assign to '" + t.name + "'");
      return;
    }
    if (t.kind == ek::tuple) {
      for (auto& k : t.kids)
        check_target(*k);
      return;
    }
    if (t.kind == ek::literal)
      error("Can't assign to literal");
    error("Can't assign to expression");
  }

  stmt_ptr parse_for() {
    auto s = snode(sk::for_, cur());
    next();
    s->target = parse_assign_target({"in"}, false);
    if (!skip_name("in"))
      unexpected("'in'");
    s->e = parse_tuple(false, false, {"recursive"}, false);
    if (skip_name("if"))
      s->cond = parse_expression(true);
    if (skip_name("recursive"))
      s->recursive = true;
    expect_block_end();
    s->body = subparse({"endfor", "else"});
    if (skip_name("else")) {
      expect_block_end();
      s->else_body = subparse({"endfor"});
    }
    expect_end_tag("endfor");
    return s;
  }

  stmt_ptr parse_set() {
    const token& at = cur();
    next();
    auto target = parse_assign_target({}, true);
    if (skip_op("=")) {
      auto s = snode(sk::set, at);
      s->target = std::move(target);
      s->e = parse_tuple(false, true, {}, false);
      expect_block_end();
      return s;
    }
    auto s = snode(sk::set_block, at);
    s->target = std::move(target);
    if (is_op("|")) {
      auto placeholder = node(ek::name, cur());
      placeholder->name = block_body_var;
      s->e = parse_filters(std::move(placeholder), true);
    }
    expect_block_end();
    s->body = subparse({"endset"});
    expect_end_tag("endset");
    return s;
  }

  stmt_ptr parse_with() {
    auto s = snode(sk::with, cur());
    next();
    while (cur().type != tk::block_end) {
      if (!s->assigns.empty())
        expect_op(",");
      auto target = parse_assign_target({}, false);
      expect_op("=");
      s->assigns.emplace_back(std::move(target), parse_expression(true));
    }
    next();
    s->body = subparse({"endwith"});
    expect_end_tag("endwith");
    return s;
  }

  stmt_ptr parse_filter_block() {
    auto s = snode(sk::filter_block, cur());
    next();
    auto placeholder = node(ek::name, cur());
    placeholder->name = block_body_var;
    s->e = parse_filters(std::move(placeholder), true);
    expect_block_end();
    s->body = subparse({"endfilter"});
    expect_end_tag("endfilter");
    return s;
  }

  stmt_ptr parse_block() {
    auto s = snode(sk::block, cur());
    next();
    s->text = expect_name();
    for (;;) {
      if (skip_name("scoped"))
        s->recursive = true;
      else if (!skip_name("required"))
        break;
    }
    expect_block_end();
    s->body = subparse({"endblock"});
    next();  // endblock
    if (cur().type == tk::name) {
      if (cur().text != s->text)
        error("'" + s->text + "' block ends with 'endblock " + cur().text + "'");
      next();
    }
    expect_block_end();
    return s;
  }

  stmt_ptr parse_macro() {
    auto s = snode(sk::macro, cur());
    next();
    s->text = expect_name();
    expect_op("(");
    while (!is_op(")")) {
      if (!s->params.empty())
        expect_op(",");
      if (is_op(")"))
        break;
      s->params.push_back(expect_name());
      if (skip_op("="))
        s->defaults.push_back(parse_expression(true));
      else {
        if (!s->defaults.empty() && s->defaults.back())
          error("non-default argument follows default argument");
        s->defaults.push_back(nullptr);
      }
    }
    next();
    expect_block_end();
    s->body = subparse({"endmacro"});
    expect_end_tag("endmacro");
    return s;
  }

  // -- expressions ---------------------------------------------------------------

  bool at_tuple_end(std::initializer_list<std::string_view> extra) const {
    const token& t = cur();
    if (t.type == tk::var_end || t.type == tk::block_end || t.type == tk::eof)
      return true;
    if (t.type == tk::op && t.text == ")")
      return true;
    if (t.type == tk::name)
      for (auto e : extra)
        if (t.text == e)
          return true;
    return false;
  }

  expr_ptr parse_tuple(bool simplified, bool with_condexpr,
                       std::initializer_list<std::string_view> extra_end, bool explicit_parens) {
    const token& at = cur();
    std::vector<expr_ptr> items;
    bool is_tuple = false;
    for (;;) {
      if (!items.empty())
        expect_op(",");
      if (at_tuple_end(extra_end))
        break;
      if (simplified)
        items.push_back(parse_primary());
      else
        items.push_back(parse_expression(with_condexpr));
      if (is_op(","))
        is_tuple = true;
      else
        break;
    }
    if (!is_tuple) {
      if (!items.empty())
        return std::move(items[0]);
      if (!explicit_parens)
        error("Expected an expression, got " + describe(cur()));
    }
    auto e = node(ek::tuple, at);
    e->kids = std::move(items);
    return e;
  }

  expr_ptr parse_expression(bool with_condexpr) {
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  expr_ptr parse_condexpr() {
    depth_guard g(*this);
    const token& at = cur();
    auto e = parse_or();
    while (is_name("if")) {
      next();
      auto c = node(ek::cond, at);
      auto test = parse_or();
      expr_ptr other;
      if (skip_name("else"))
        other = parse_condexpr();
      c->kids.push_back(std::move(test));
      c->kids.push_back(std::move(e));
      c->kids.push_back(std::move(other));
      e = std::move(c);
    }
    return e;
  }

  expr_ptr parse_or() {
    auto e = parse_and();
    while (is_name("or")) {
      auto n = node(ek::or_, cur());
      next();
      n->kids.push_back(std::move(e));
      n->kids.push_back(parse_and());
      e = std::move(n);
    }
    return e;
  }

  expr_ptr parse_and() {
    auto e = parse_not();
    while (is_name("and")) {
      auto n = node(ek::and_, cur());
      next();
      n->kids.push_back(std::move(e));
      n->kids.push_back(parse_not());
      e = std::move(n);
    }
    return e;
  }

  expr_ptr parse_not() {
    if (is_name("not")) {
      depth_guard g(*this);
      auto n = node(ek::not_, cur());
      next();
      n->kids.push_back(parse_not());
      return n;
    }
    return parse_compare();
  }

  expr_ptr parse_compare() {
    const token& at = cur();
    auto first = parse_math1();
    expr_ptr cmp;
    for (;;) {
      std::string op;
      const token& t = cur();
      if (t.type == tk::op &&
          (t.text == "==" || t.text == "!=" || t.text == "<" || t.text == ">" || t.text == "<=" ||
           t.text == ">=")) {
        op = t.text;
        next();
      } else if (is_name("in")) {
        op = "in";
        next();
      } else if (is_name("not") && peek().type == tk::name && peek().text == "in") {
        op = "not in";
        next();
        next();
      } else {
        break;
      }
      if (!cmp) {
        cmp = node(ek::compare, at);
        cmp->kids.push_back(std::move(first));
      }
      cmp->ops.push_back(op);
      cmp->kids.push_back(parse_math1());
    }
    return cmp ? std::move(cmp) : std::move(first);
  }

  expr_ptr binary(std::string op, expr_ptr a, expr_ptr b, const token& at) {
    auto n = node(ek::binop, at);
    n->name = std::move(op);
    n->kids.push_back(std::move(a));
    n->kids.push_back(std::move(b));
    return n;
  }

  expr_ptr parse_math1() {
    auto e = parse_concat();
    while (is_op("+") || is_op("-")) {
      const token& at = cur();
      std::string op = at.text;
      next();
      e = binary(op, std::move(e), parse_concat(), at);
    }
    return e;
  }

  expr_ptr parse_concat() {
    auto e = parse_math2();
    while (is_op("~")) {
      const token& at = cur();
      next();
      e = binary("~", std::move(e), parse_math2(), at);
    }
    return e;
  }

  expr_ptr parse_math2() {
    auto e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const token& at = cur();
      std::string op = at.text;
      next();
      e = binary(op, std::move(e), parse_pow(), at);
    }
    return e;
  }

  expr_ptr parse_pow() {
    auto e = parse_unary(true);
    while (is_op("**")) {
      const token& at = cur();
      next();
      e = binary("**", std::move(e), parse_unary(true), at);
    }
    return e;
  }

  expr_ptr parse_unary(bool with_filter) {
    depth_guard g(*this);
    expr_ptr e;
    if (is_op("-") || is_op("+")) {
      e = node(is_op("-") ? ek::neg : ek::pos, cur());
      next();
      e->kids.push_back(parse_unary(false));
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter)
      e = parse_filters(std::move(e), false);
    return e;
  }

  expr_ptr parse_primary() {
    depth_guard g(*this);
    const token& t = cur();
    switch (t.type) {
      case tk::name: {
        const std::string& n = t.text;
        expr_ptr e;
        if (n == "true" || n == "True" || n == "false" || n == "False") {
          e = node(ek::literal, t);
          e->lit = value(n == "true" || n == "True");
        } else if (n == "none" || n == "None") {
          e = node(ek::literal, t);
          e->lit = value(none_t{});
        } else {
          e = node(ek::name, t);
          e->name = n;
        }
        next();
        return e;
      }
      case tk::string: {
        auto e = node(ek::literal, t);
        std::string s;
        while (cur().type == tk::string) {
          s += cur().text;
          next();
        }
        e->lit = value(std::move(s));
        return e;
      }
      case tk::integer:
      case tk::floating: {
        auto e = node(ek::literal, t);
        e->lit = t.lit;
        next();
        return e;
      }
      case tk::op:
        if (t.text == "(") {
          next();
          auto e = parse_tuple(false, true, {}, true);
          expect_op(")");
          return e;
        }
        if (t.text == "[") {
          auto e = node(ek::list, t);
          next();
          while (!is_op("]")) {
            if (!e->kids.empty())
              expect_op(",");
            if (is_op("]"))
              break;
            e->kids.push_back(parse_expression(true));
          }
          next();
          return e;
        }
        if (t.text == "{") {
          auto e = node(ek::dict, t);
          next();
          while (!is_op("}")) {
            if (!e->kids.empty())
              expect_op(",");
            if (is_op("}"))
              break;
            e->kids.push_back(parse_expression(true));
            expect_op(":");
            e->kids.push_back(parse_expression(true));
          }
          next();
          return e;
        }
        break;
      default: break;
    }
    error("unexpected " + describe(t));
  }

  expr_ptr parse_postfix(expr_ptr e) {
    for (;;) {
      if (is_op(".")) {
        const token& at = cur();
        next();
        if (cur().type == tk::name) {
          auto n = node(ek::getattr, at);
          n->name = cur().text;
          n->kids.push_back(std::move(e));
          next();
          e = std::move(n);
        } else if (cur().type == tk::integer) {
          auto n = node(ek::getitem, at);
          auto k = node(ek::literal, cur());
          k->lit = cur().lit;
          next();
          n->kids.push_back(std::move(e));
          n->kids.push_back(std::move(k));
          e = std::move(n);
        } else {
          unexpected("name or number");
        }
      } else if (is_op("[")) {
        const token& at = cur();
        next();
        std::vector<expr_ptr> subs;
        bool tuple = false;
        while (!is_op("]")) {
          if (!subs.empty()) {
            expect_op(",");
            tuple = true;
            if (is_op("]"))
              break;
          }
          subs.push_back(parse_subscribed());
        }
        next();
        if (subs.empty())
          error("expected subscript expression");
        expr_ptr key;
        if (subs.size() == 1 && !tuple) {
          key = std::move(subs[0]);
        } else {
          key = node(ek::tuple, at);
          key->kids = std::move(subs);
        }
        if (key->kind == ek::slice) {
          key->kids.insert(key->kids.begin(), std::move(e));
          e = std::move(key);
        } else {
          auto n = node(ek::getitem, at);
          n->kids.push_back(std::move(e));
          n->kids.push_back(std::move(key));
          e = std::move(n);
        }
      } else if (is_op("(")) {
        auto n = node(ek::call, cur());
        n->kids.push_back(std::move(e));
        parse_call_args(*n);
        e = std::move(n);
      } else {
        return e;
      }
    }
  }

  expr_ptr parse_subscribed() {
    const token& at = cur();
    expr_ptr start;
    if (!is_op(":")) {
      start = parse_expression(true);
      if (!is_op(":"))
        return start;
    }
    next();  // ':'
    auto sl = node(ek::slice, at);
    expr_ptr stop, step;
    if (!is_op("]") && !is_op(",") && !is_op(":"))
      stop = parse_expression(true);
    if (skip_op(":")) {
      if (!is_op("]") && !is_op(","))
        step = parse_expression(true);
    }
    sl->kids.push_back(std::move(start));
    sl->kids.push_back(std::move(stop));
    sl->kids.push_back(std::move(step));
    return sl;
  }

  void parse_call_args(expr& n) {
    expect_op("(");
    bool first = true;
    while (!is_op(")")) {
      if (!first) {
        expect_op(",");
        if (is_op(")"))
          break;
      }
      first = false;
      if (skip_op("*")) {
        n.star_args = parse_expression(true);
      } else if (skip_op("**")) {
        n.star_kwargs = parse_expression(true);
      } else if (cur().type == tk::name && peek().type == tk::op && peek().text == "=") {
        std::string key = cur().text;
        next();
        next();
        n.kwargs.emplace_back(std::move(key), parse_expression(true));
      } else {
        if (!n.kwargs.empty() || n.star_args || n.star_kwargs)
          error("Invalid argument syntax");
        n.kids.push_back(parse_expression(true));
      }
    }
    next();
  }

  std::string dotted_name() {
    std::string n = expect_name();
    while (is_op(".") && peek().type == tk::name) {
      next();
      n += "." + cur().text;
      next();
    }
    return n;
  }

  expr_ptr parse_filters(expr_ptr e, bool start_inline) {
    for (;;) {
      if (is_op("|") || start_inline) {
        if (!start_inline || is_op("|"))
          next();
        start_inline = false;
        auto f = node(ek::filter, cur());
        f->name = dotted_name();
        f->kids.push_back(std::move(e));
        if (is_op("("))
          parse_call_args(*f);
        e = std::move(f);
      } else if (is_name("is")) {
        next();
        auto t = node(ek::test, cur());
        if (skip_name("not"))
          t->negated = true;
        t->name = dotted_name();
        t->kids.push_back(std::move(e));
        if (is_op("(")) {
          parse_call_args(*t);
        } else {
          const token& c = cur();
          bool arg = (c.type == tk::name || c.type == tk::string || c.type == tk::integer ||
                      c.type == tk::floating ||
                      (c.type == tk::op && (c.text == "(" || c.text == "[" || c.text == "{"))) &&
                     !(c.type == tk::name && (c.text == "else" || c.text == "or" || c.text == "and"));
          if (arg) {
            if (is_name("is"))
              error("You cannot chain multiple tests with is");
            t->kids.push_back(parse_postfix(parse_primary()));
          }
        }
        e = std::move(t);
      } else if (is_op("(")) {
        auto n = node(ek::call, cur());
        n->kids.push_back(std::move(e));
        parse_call_args(*n);
        e = std::move(n);
      } else {
        return e;
      }
    }
  }

  std::vector<token> toks_;
  size_t i_ = 0;
  int depth_ = 0;
  int max_depth_;
};

} // namespace

stmt_list parse_template(std::string_view source, int max_depth) {
  lexer lx(source);
  auto toks = lx.run();
  parser p(std::move(toks), max_depth);
  return p.parse_all();
}

} // namespace stepflow::tmpl
