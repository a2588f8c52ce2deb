#pragma once
// Internals of the template engine (template*.cpp only): the Python-like value
// type, the syntax tree, and the evaluator interface used by filters.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "stepflow/runtime/json.hpp"
#include "stepflow/runtime/template.hpp"

namespace stepflow::tmpl {

// -- values -------------------------------------------------------------------

struct value;
struct dict_t;
struct callable_t;

/// Jinja2's Undefined; `hint` is the UndefinedError message raised on misuse.
struct undefined_t {
  std::shared_ptr<const std::string> hint;
};
struct none_t {};
struct list_v {
  std::shared_ptr<std::vector<value>> p;
  /// 0 for a list; 1, 2, 3 for a dict_keys / dict_values / dict_items view.
  uint8_t view = 0;
};
struct tuple_v {
  std::shared_ptr<std::vector<value>> p;
};
struct dict_v {
  std::shared_ptr<dict_t> p;
};
struct call_v {
  std::shared_ptr<const callable_t> p;
};

/// int is int64_t, float is double (Python's distinction); lists, dicts and
/// tuples are shared references like Python objects.
struct value {
  std::variant<undefined_t, none_t, bool, int64_t, double, std::string, list_v, tuple_v, dict_v,
               call_v>
    v;

  value() = default;
  value(none_t) : v(none_t{}) {}
  value(bool b) : v(b) {}
  value(int64_t i) : v(i) {}
  value(int i) : v(int64_t{i}) {}
  value(double d) : v(d) {}
  value(std::string s) : v(std::move(s)) {}
  value(const char* s) : v(std::string(s)) {}
  value(list_v l) : v(std::move(l)) {}
  value(tuple_v t) : v(std::move(t)) {}
  value(dict_v d) : v(std::move(d)) {}
  value(call_v c) : v(std::move(c)) {}

  bool is_undefined() const noexcept { return v.index() == 0; }
  bool is_none() const noexcept { return v.index() == 1; }
  bool is_bool() const noexcept { return v.index() == 2; }
  bool is_int() const noexcept { return v.index() == 3; }
  bool is_float() const noexcept { return v.index() == 4; }
  bool is_str() const noexcept { return v.index() == 5; }
  bool is_list() const noexcept { return v.index() == 6; }
  bool is_tuple() const noexcept { return v.index() == 7; }
  bool is_dict() const noexcept { return v.index() == 8; }
  bool is_callable() const noexcept { return v.index() == 9; }
  /// int or bool (Python bool is an int).
  bool is_integral() const noexcept { return is_int() || is_bool(); }
  bool is_number() const noexcept { return is_int() || is_bool() || is_float(); }
  bool is_seq() const noexcept { return is_list() || is_tuple(); }
  /// 0, or the kind of dict view this list stands for.
  uint8_t view() const noexcept { return is_list() ? std::get<list_v>(v).view : 0; }

  const std::string& str() const { return std::get<std::string>(v); }
  int64_t as_int() const { return is_bool() ? int64_t{std::get<bool>(v)} : std::get<int64_t>(v); }
  double as_float() const { return is_float() ? std::get<double>(v) : double(as_int()); }
  std::vector<value>& items() const {
    return is_list() ? *std::get<list_v>(v).p : *std::get<tuple_v>(v).p;
  }
  dict_t& dict() const { return *std::get<dict_v>(v).p; }
  const callable_t& fn() const { return *std::get<call_v>(v).p; }
};

value make_undefined(std::string hint);
value make_list(std::vector<value> items = {});
value make_tuple(std::vector<value> items);
/// A dict_keys (1), dict_values (2) or dict_items (3) view (a snapshot).
value make_view(uint8_t kind, std::vector<value> items);
value make_dict();

/// An insertion-ordered dict keyed by Python hash equality (1 == 1.0 == True).
struct dict_t {
  enum class kind_t : uint8_t { plain, namespace_, loop };
  std::vector<std::pair<value, value>> entries;
  std::unordered_map<std::string, size_t> index;
  kind_t kind = kind_t::plain;

  value* find(const value& key);
  value* find_str(std::string_view key);
  void set(value key, value v);
  bool erase(const value& key);
};

/// Canonical key for dict lookups; throws TypeError for unhashable values.
std::string hash_key(const value& v);

struct call_args {
  std::vector<value> pos;
  std::vector<std::pair<std::string, value>> kw;

  /// Positional `i` or keyword `name`, consuming neither; nullptr if absent.
  const value* get(size_t i, std::string_view name) const;
};

class evaluator;

struct callable_t {
  std::string name;
  std::function<value(evaluator&, call_args&)> fn;
};

value make_callable(std::string name, std::function<value(evaluator&, call_args&)> fn);

// -- errors -------------------------------------------------------------------

/// Thrown inside the engine; converted to caf::error at the API boundary.
struct template_error {
  std::string msg;
  long pos = -1;  // byte offset in the source, -1 when not yet known
};

[[noreturn]] void fail(std::string msg);
/// UndefinedError for a misused undefined value.
[[noreturn]] void fail_undefined(const value& u);

// -- value helpers (template.cpp) ----------------------------------------------

std::string type_name(const value& v);
bool truthy(const value& v);
/// Python str().
std::string to_str(const value& v);
/// Python repr().
std::string repr(const value& v);
std::string float_repr(double d);
bool equals(const value& a, const value& b);
/// -1, 0, 1; throws TypeError for unorderable operands.
int compare(const value& a, const value& b);
/// Items of an iterable (dict keys, string characters); TypeError otherwise.
std::vector<value> iterate(const value& v);
/// Python len(); TypeError for values without one.
int64_t length(const value& v);
bool contains(const value& container, const value& item);
value from_json(const json::value& j);
/// json.dumps(sort_keys=True) with Jinja2's HTML-safe escapes; indent < 0 = compact.
std::string dumps(const value& v, int indent, bool html_safe);

// UTF-8 helpers.
std::u32string decode_utf8(std::string_view s);
std::string encode_utf8(std::u32string_view s);
size_t utf8_length(std::string_view s);
char32_t upper_cp(char32_t c);
char32_t lower_cp(char32_t c);
bool is_space_cp(char32_t c);
std::string str_upper(std::string_view s);
std::string str_lower(std::string_view s);

// -- syntax tree -----------------------------------------------------------------

enum class ek : uint8_t {
  literal, name, list, tuple, dict, getattr, getitem, slice, call, filter, test, not_, neg, pos,
  binop, compare, and_, or_, cond
};

struct expr;
using expr_ptr = std::unique_ptr<expr>;

struct expr {
  ek kind;
  long pos = 0;  // byte offset in the source
  value lit;                   // literal (scalars only)
  std::string name;            // name, attribute, filter, test, binop operator
  std::vector<expr_ptr> kids;  // operands; call/filter/test: subject first, then args
  std::vector<std::pair<std::string, expr_ptr>> kwargs;
  expr_ptr star_args, star_kwargs;
  std::vector<std::string> ops;  // compare operators, one per kids[1..]
  bool negated = false;          // `is not`
};

enum class sk : uint8_t {
  text, output, if_, for_, set, set_block, with, filter_block, macro, call_block, block
};

struct stmt;
using stmt_ptr = std::unique_ptr<stmt>;
using stmt_list = std::vector<stmt_ptr>;

struct stmt {
  sk kind;
  long pos = 0;
  std::string text;                                   // text; macro name
  expr_ptr e;                                         // output, set value, for iterable, filter
  expr_ptr target;                                    // set / for target
  expr_ptr cond;                                      // for ... if cond
  bool recursive = false;                             // for ... recursive; block ... scoped
  std::vector<std::pair<expr_ptr, stmt_list>> branches;  // if / elif
  stmt_list body;
  stmt_list else_body;
  std::vector<std::pair<expr_ptr, expr_ptr>> assigns;  // with
  std::vector<std::string> params;                      // macro parameters
  std::vector<expr_ptr> defaults;                       // aligned with params (may be null)
};

/// Name of the placeholder variable that filter blocks filter.
inline constexpr std::string_view block_body_var = "\x01" "body";

stmt_list parse_template(std::string_view source, int max_depth);

// -- evaluator --------------------------------------------------------------------

using filter_fn = value (*)(evaluator&, value&, call_args&);
using test_fn = bool (*)(evaluator&, const value&, call_args&);

const filter_fn* find_filter(std::string_view name);
const test_fn* find_test(std::string_view name);
/// Attribute lookup the way Jinja2 does it (Python attribute, then item).
value get_attr(const value& obj, const std::string& name);
/// Subscription the way Jinja2 does it (item, then Python attribute).
value get_item(const value& obj, const value& key);
/// A bound Python method such as dict.update, or undefined.
value get_method(const value& obj, const std::string& name);

class evaluator {
public:
  explicit evaluator(const template_limits& limits) : limits_(limits) {}
  const template_limits& limits() const noexcept { return limits_; }
  /// Counts `n` iterations against max_iterations.
  void tick(size_t n = 1);
  /// Fails when a produced string or list of `n` bytes/items is over the limit.
  void check_size(size_t n) const;
  value call(const value& callee, call_args& args);
  value apply_filter(std::string_view name, value v, call_args& args);
  bool apply_test(std::string_view name, const value& v, call_args& args);

  std::string render(const stmt_list& body, const json::object& context);

private:
  struct scope;
  struct loop_state;
  value eval(const expr& e);
  value eval_impl(const expr& e);
  void exec(const stmt_list& body, std::string& out);
  void exec_one(const stmt& s, std::string& out);
  void exec_for(const stmt& s, std::string& out);
  void run_loop(const stmt& s, const value& iterable, std::string& out, int depth);
  value lookup(const std::string& name) const;
  void assign(const expr& target, const value& v);
  void collect_args(const expr& e, size_t first, call_args& args);
  void append(std::string& out, std::string_view s) const;
  value call_macro(const stmt& m, call_args& args, const std::shared_ptr<scope>& closure);
  value binop(const expr& e, const value& a, const value& b);

  const template_limits& limits_;
  size_t iterations_ = 0;
  size_t depth_ = 0;
  std::shared_ptr<scope> scope_;
  std::shared_ptr<scope> root_;
};

} // namespace stepflow::tmpl

namespace stepflow {

struct compiled_template::impl {
  std::string name;
  std::vector<size_t> line_starts;  // byte offset of each line, for positions
  tmpl::stmt_list body;
};

} // namespace stepflow
