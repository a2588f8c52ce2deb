// The evaluator of the template engine: statements, expressions, scopes.
#include <cmath>
#include <limits>
#include <optional>

#include "stepflow/runtime/template_internal.hpp"

namespace stepflow::tmpl {

struct evaluator::scope {
  std::unordered_map<std::string, value> vars;
  std::shared_ptr<scope> parent;
};

namespace {

struct depth_guard {
  size_t& d;
  depth_guard(size_t& dd, size_t max, const char* what) : d(dd) {
    if (++d > max) {
      --d;
      fail(std::string("template ") + what + " is nested too deeply (limit " +
           std::to_string(max) + ")");
    }
  }
  ~depth_guard() { --d; }
};

[[noreturn]] void overflow() {
  fail("integer overflow (stepflow integers are 64-bit)");
}
int64_t add_checked(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r))
    overflow();
  return r;
}
int64_t sub_checked(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_sub_overflow(a, b, &r))
    overflow();
  return r;
}
int64_t mul_checked(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r))
    overflow();
  return r;
}

double py_fmod(double a, double b) {
  double m = std::fmod(a, b);
  if (m != 0.0) {
    if ((b < 0) != (m < 0))
      m += b;
  } else {
    m = std::copysign(0.0, b);
  }
  return m;
}

double py_floordiv(double a, double b) {
  double m = std::fmod(a, b);
  double div = (a - m) / b;
  if (m != 0.0 && ((b < 0) != (m < 0)))
    div -= 1.0;
  if (div == 0.0)
    return std::copysign(0.0, a / b);
  double f = std::floor(div);
  if (div - f > 0.5)
    f += 1.0;
  return f;
}

value repeat_seq(evaluator& ev, const value& seq, int64_t n) {
  if (n < 0)
    n = 0;
  if (seq.is_str()) {
    ev.check_size(seq.str().size() * static_cast<size_t>(n));
    std::string out;
    for (int64_t i = 0; i < n; ++i)
      out += seq.str();
    return value(std::move(out));
  }
  auto& items = seq.items();
  ev.check_size(items.size() * static_cast<size_t>(n));
  std::vector<value> out;
  for (int64_t i = 0; i < n; ++i)
    out.insert(out.end(), items.begin(), items.end());
  return seq.is_list() ? make_list(std::move(out)) : make_tuple(std::move(out));
}

} // namespace

std::string py_percent_format(const std::string& fmt, const value& args);

void evaluator::tick(size_t n) {
  iterations_ += n;
  if (iterations_ > limits_.max_iterations)
    fail("template exceeded the iteration limit of " + std::to_string(limits_.max_iterations));
}

void evaluator::check_size(size_t n) const {
  if (n > limits_.max_output_bytes)
    fail("template output exceeds the limit of " + std::to_string(limits_.max_output_bytes) +
         " bytes");
}

void evaluator::append(std::string& out, std::string_view s) const {
  check_size(out.size() + s.size());
  out += s;
}

value evaluator::call(const value& callee, call_args& args) {
  if (callee.is_callable())
    return callee.fn().fn(*this, args);
  if (callee.is_undefined())
    fail_undefined(callee);
  if (callee.is_dict() && callee.dict().kind == dict_t::kind_t::loop) {
    if (auto* f = callee.dict().find_str("\x01" "call"); f && f->is_callable())
      return f->fn().fn(*this, args);
    fail("Tried to call non recursive loop. Maybe you forgot the 'recursive' modifier.");
  }
  fail("'" + type_name(callee) + "' object is not callable");
}

value evaluator::apply_filter(std::string_view name, value v, call_args& args) {
  auto* f = find_filter(name);
  if (!f)
    fail("No filter named '" + std::string(name) + "'.");
  return (*f)(*this, v, args);
}

bool evaluator::apply_test(std::string_view name, const value& v, call_args& args) {
  auto* t = find_test(name);
  if (!t)
    fail("No test named '" + std::string(name) + "'.");
  return (*t)(*this, v, args);
}

// -- rendering ---------------------------------------------------------------------

namespace {

value global_range(evaluator& ev, call_args& a) {
  if (!a.kw.empty())
    fail("range() takes no keyword arguments");
  for (auto& x : a.pos) {
    if (x.is_undefined())
      fail_undefined(x);
    if (!x.is_integral())
      fail("'" + type_name(x) + "' object cannot be interpreted as an integer");
  }
  int64_t start = 0, stop = 0, step = 1;
  if (a.pos.size() == 1) {
    stop = a.pos[0].as_int();
  } else if (a.pos.size() == 2 || a.pos.size() == 3) {
    start = a.pos[0].as_int();
    stop = a.pos[1].as_int();
    if (a.pos.size() == 3)
      step = a.pos[2].as_int();
  } else {
    fail("range expected at most 3 arguments, got " + std::to_string(a.pos.size()));
  }
  if (step == 0)
    fail("range() arg 3 must not be zero");
  std::vector<value> out;
  double count = std::ceil((double(stop) - double(start)) / double(step));
  if (count > 0) {
    ev.tick(static_cast<size_t>(count));
    ev.check_size(static_cast<size_t>(count));
  }
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step)
    out.emplace_back(i);
  return make_list(std::move(out));
}

void update_dict(dict_t& d, call_args& a, const char* fname) {
  if (a.pos.size() > 1)
    fail(std::string(fname) + " expected at most 1 argument, got " + std::to_string(a.pos.size()));
  if (!a.pos.empty()) {
    const value& src = a.pos[0];
    if (src.is_dict()) {
      std::vector<std::pair<value, value>> copy = src.dict().entries;
      for (auto& [k, v] : copy)
        d.set(k, v);
    } else if (src.is_undefined()) {
      // Undefined iterates as empty.
    } else {
      auto items = iterate(src);
      size_t i = 0;
      for (auto& item : items) {
        if (item.is_str() && utf8_length(item.str()) == 2) {
          auto p = iterate(item);
          d.set(p[0], p[1]);
        } else if (item.is_seq() && item.items().size() == 2) {
          d.set(item.items()[0], item.items()[1]);
        } else if (item.is_seq() || item.is_str() || item.is_dict()) {
          fail("dictionary update sequence element #" + std::to_string(i) + " has length " +
               std::to_string(length(item)) + "; 2 is required");
        } else {
          fail("cannot convert dictionary update sequence element #" + std::to_string(i) +
               " to a sequence");
        }
        ++i;
      }
    }
  }
  for (auto& [k, v] : a.kw)
    d.set(value(k), v);
}

value global_dict(evaluator&, call_args& a) {
  auto d = make_dict();
  update_dict(d.dict(), a, "dict");
  return d;
}

value global_namespace(evaluator&, call_args& a) {
  auto d = make_dict();
  update_dict(d.dict(), a, "namespace");
  d.dict().kind = dict_t::kind_t::namespace_;
  return d;
}

value global_joiner(evaluator&, call_args& a) {
  const value* sep = a.get(0, "sep");
  std::string s = sep ? to_str(*sep) : ", ";
  auto used = std::make_shared<bool>(false);
  return make_callable("joiner", [s, used](evaluator&, call_args&) -> value {
    if (!*used) {
      *used = true;
      return value(std::string());
    }
    return value(s);
  });
}

} // namespace

std::string evaluator::render(const stmt_list& body, const json::object& context) {
  root_ = std::make_shared<scope>();
  for (auto& [k, v] : context)
    root_->vars[std::string(k)] = from_json(v);
  scope_ = root_;
  std::string out;
  exec(body, out);
  return out;
}

value evaluator::lookup(const std::string& name) const {
  for (auto* s = scope_.get(); s; s = s->parent.get()) {
    auto it = s->vars.find(name);
    if (it != s->vars.end())
      return it->second;
  }
  if (name == "range")
    return make_callable("range", global_range);
  if (name == "dict")
    return make_callable("dict", global_dict);
  if (name == "namespace")
    return make_callable("namespace", global_namespace);
  if (name == "joiner")
    return make_callable("joiner", global_joiner);
  return make_undefined("'" + name + "' is undefined");
}

void evaluator::assign(const expr& target, const value& v) {
  if (target.kind == ek::name) {
    scope_->vars[target.name] = v;
    return;
  }
  if (target.kind == ek::tuple) {
    if (v.is_undefined())
      fail_undefined(v);
    auto items = iterate(v);
    if (items.size() > target.kids.size())
      fail("too many values to unpack (expected " + std::to_string(target.kids.size()) + ")");
    if (items.size() < target.kids.size())
      fail("not enough values to unpack (expected " + std::to_string(target.kids.size()) +
           ", got " + std::to_string(items.size()) + ")");
    for (size_t i = 0; i < items.size(); ++i)
      assign(*target.kids[i], items[i]);
    return;
  }
  if (target.kind == ek::getattr) {
    value ns = lookup(target.kids[0]->name);
    if (!ns.is_dict() || ns.dict().kind != dict_t::kind_t::namespace_)
      fail("Can only assign attributes to namespaces.");
    ns.dict().set(value(target.name), v);
    return;
  }
  fail("Can't assign to expression");
}

void evaluator::exec(const stmt_list& body, std::string& out) {
  for (auto& s : body)
    exec_one(*s, out);
}

void evaluator::exec_one(const stmt& s, std::string& out) {
  try {
    switch (s.kind) {
      case sk::text: append(out, s.text); return;
      case sk::output: {
        value v = eval(*s.e);
        if (v.is_str())
          append(out, v.str());
        else
          append(out, to_str(v));
        return;
      }
      case sk::if_:
        for (auto& [cond, body] : s.branches) {
          if (truthy(eval(*cond))) {
            exec(body, out);
            return;
          }
        }
        exec(s.else_body, out);
        return;
      case sk::for_: exec_for(s, out); return;
      case sk::set: assign(*s.target, eval(*s.e)); return;
      case sk::set_block: {
        std::string buf;
        auto saved = scope_;
        scope_ = std::make_shared<scope>(scope{{}, saved});
        try {
          exec(s.body, buf);
          value v(std::move(buf));
          if (s.e) {
            scope_->vars[std::string(block_body_var)] = v;
            v = eval(*s.e);
          }
          scope_ = saved;
          assign(*s.target, v);
        } catch (...) {
          scope_ = saved;
          throw;
        }
        return;
      }
      case sk::with: {
        auto saved = scope_;
        auto inner = std::make_shared<scope>(scope{{}, saved});
        try {
          std::vector<value> vals;
          for (auto& [t, e] : s.assigns)
            vals.push_back(eval(*e));
          scope_ = inner;
          for (size_t i = 0; i < vals.size(); ++i)
            assign(*s.assigns[i].first, vals[i]);
          exec(s.body, out);
        } catch (...) {
          scope_ = saved;
          throw;
        }
        scope_ = saved;
        return;
      }
      case sk::filter_block: {
        std::string buf;
        auto saved = scope_;
        scope_ = std::make_shared<scope>(scope{{}, saved});
        try {
          exec(s.body, buf);
          scope_->vars[std::string(block_body_var)] = value(std::move(buf));
          value v = eval(*s.e);
          scope_ = saved;
          append(out, to_str(v));
        } catch (...) {
          scope_ = saved;
          throw;
        }
        return;
      }
      case sk::macro: {
        const stmt* m = &s;
        auto closure = scope_;
        scope_->vars[s.text] = make_callable(s.text, [m, closure](evaluator& ev, call_args& a) {
          return ev.call_macro(*m, a, closure);
        });
        return;
      }
      case sk::call_block: fail("call blocks are not supported");
      case sk::block: {
        // A block of a template without inheritance renders in place; like
        // Jinja2 it sees template-level variables but not enclosing loop ones.
        auto saved = scope_;
        scope_ = std::make_shared<scope>(scope{{}, s.recursive ? saved : root_});
        try {
          exec(s.body, out);
        } catch (...) {
          scope_ = saved;
          throw;
        }
        scope_ = saved;
        return;
      }
    }
  } catch (template_error& e) {
    if (e.pos < 0)
      e.pos = s.pos;
    throw;
  }
}

value evaluator::call_macro(const stmt& m, call_args& a, const std::shared_ptr<scope>& closure) {
  depth_guard g(depth_, limits_.max_depth, "macro recursion");
  auto frame = std::make_shared<scope>(scope{{}, closure});
  size_t n = m.params.size();
  std::vector<bool> given(n, false);
  std::vector<value> varargs;
  for (size_t i = 0; i < a.pos.size(); ++i) {
    if (i < n) {
      frame->vars[m.params[i]] = a.pos[i];
      given[i] = true;
    } else {
      varargs.push_back(a.pos[i]);
    }
  }
  auto kwargs = make_dict();
  for (auto& [k, v] : a.kw) {
    bool found = false;
    for (size_t i = 0; i < n; ++i)
      if (m.params[i] == k) {
        if (given[i])
          fail("macro '" + m.text + "' got multiple values for argument '" + k + "'");
        frame->vars[k] = v;
        given[i] = true;
        found = true;
      }
    if (!found)
      kwargs.dict().set(value(k), v);
  }
  auto saved = scope_;
  scope_ = frame;
  try {
    for (size_t i = 0; i < n; ++i) {
      if (given[i])
        continue;
      if (m.defaults[i])
        frame->vars[m.params[i]] = eval(*m.defaults[i]);
      else
        frame->vars[m.params[i]] =
          make_undefined("parameter '" + m.params[i] + "' was not provided");
    }
    frame->vars["varargs"] = make_tuple(std::move(varargs));
    frame->vars["kwargs"] = kwargs;
    std::string out;
    exec(m.body, out);
    scope_ = saved;
    return value(std::move(out));
  } catch (...) {
    scope_ = saved;
    throw;
  }
}

void evaluator::exec_for(const stmt& s, std::string& out) {
  value iterable = eval(*s.e);
  run_loop(s, iterable, out, 1);
}

void evaluator::run_loop(const stmt& s, const value& iterable, std::string& out, int depth) {
  depth_guard g(depth_, limits_.max_depth, "loop recursion");
  if (!iterable.is_undefined() && !iterable.is_str() && !iterable.is_seq() && !iterable.is_dict())
    fail("'" + type_name(iterable) + "' object is not iterable");
  std::vector<value> items = iterate(iterable);
  auto saved = scope_;
  try {
    if (s.cond) {
      std::vector<value> kept;
      for (auto& item : items) {
        tick();
        scope_ = std::make_shared<scope>(scope{{}, saved});
        assign(*s.target, item);
        if (truthy(eval(*s.cond)))
          kept.push_back(item);
      }
      scope_ = saved;
      items = std::move(kept);
    }
    if (items.empty()) {
      scope_ = std::make_shared<scope>(scope{{}, saved});
      exec(s.else_body, out);
      scope_ = saved;
      return;
    }
    const int64_t n = static_cast<int64_t>(items.size());
    auto changed_last = std::make_shared<std::vector<value>>();
    auto changed_init = std::make_shared<bool>(false);
    for (int64_t i = 0; i < n; ++i) {
      tick();
      auto frame = std::make_shared<scope>(scope{{}, saved});
      scope_ = frame;
      auto loop = make_dict();
      auto& ld = loop.dict();
      ld.kind = dict_t::kind_t::loop;
      ld.set(value("index"), value(i + 1));
      ld.set(value("index0"), value(i));
      ld.set(value("revindex"), value(n - i));
      ld.set(value("revindex0"), value(n - i - 1));
      ld.set(value("first"), value(i == 0));
      ld.set(value("last"), value(i == n - 1));
      ld.set(value("length"), value(n));
      ld.set(value("depth"), value(int64_t{depth}));
      ld.set(value("depth0"), value(int64_t{depth - 1}));
      ld.set(value("previtem"),
             i > 0 ? items[static_cast<size_t>(i - 1)] : make_undefined("there is no previous item"));
      ld.set(value("nextitem"),
             i + 1 < n ? items[static_cast<size_t>(i + 1)] : make_undefined("there is no next item"));
      ld.set(value("cycle"), make_callable("cycle", [i](evaluator&, call_args& a) -> value {
               if (a.pos.empty())
                 fail("no items for cycling given");
               return a.pos[static_cast<size_t>(i) % a.pos.size()];
             }));
      ld.set(value("changed"),
             make_callable("changed", [changed_last, changed_init](evaluator&, call_args& a) -> value {
               value now = make_tuple(a.pos);
               if (*changed_init && equals(now, make_tuple(*changed_last)))
                 return value(false);
               *changed_init = true;
               *changed_last = a.pos;
               return value(true);
             }));
      if (s.recursive) {
        const stmt* sp = &s;
        ld.set(value("\x01" "call"), make_callable("loop", [sp, depth](evaluator& ev, call_args& a) -> value {
                 if (a.pos.size() != 1)
                   fail("loop() takes exactly one argument");
                 std::string buf;
                 ev.run_loop(*sp, a.pos[0], buf, depth + 1);
                 return value(std::move(buf));
               }));
      }
      frame->vars["loop"] = loop;
      assign(*s.target, items[static_cast<size_t>(i)]);
      exec(s.body, out);
    }
  } catch (...) {
    scope_ = saved;
    throw;
  }
  scope_ = saved;
}

// -- expressions -------------------------------------------------------------------

value evaluator::eval(const expr& e) {
  depth_guard g(depth_, limits_.max_depth * 4, "expression evaluation");
  try {
    return eval_impl(e);
  } catch (template_error& err) {
    if (err.pos < 0)
      err.pos = e.pos;
    throw;
  }
}

void evaluator::collect_args(const expr& e, size_t first, call_args& args) {
  for (size_t i = first; i < e.kids.size(); ++i)
    args.pos.push_back(eval(*e.kids[i]));
  if (e.star_args) {
    value v = eval(*e.star_args);
    for (auto& x : iterate(v))
      args.pos.push_back(x);
  }
  for (auto& [k, x] : e.kwargs)
    args.kw.emplace_back(k, eval(*x));
  if (e.star_kwargs) {
    value v = eval(*e.star_kwargs);
    if (!v.is_dict())
      fail("argument after ** must be a mapping, not " + type_name(v));
    for (auto& [k, x] : v.dict().entries)
      args.kw.emplace_back(to_str(k), x);
  }
}

namespace {

value slice_of(const value& obj, const value& vstart, const value& vstop, const value& vstep) {
  auto as_opt = [](const value& v, bool& ok) -> std::optional<int64_t> {
    if (v.is_none() || v.is_undefined())
      return std::nullopt;
    if (!v.is_integral()) {
      ok = false;
      return std::nullopt;
    }
    return v.as_int();
  };
  bool ok = true;
  auto start = as_opt(vstart, ok);
  auto stop = as_opt(vstop, ok);
  auto step_o = as_opt(vstep, ok);
  if (!ok || !(obj.is_str() || obj.is_seq()))
    return make_undefined("'" + type_name(obj) + " object' has no element slice");
  int64_t step = step_o.value_or(1);
  if (step == 0)
    fail("slice step cannot be zero");
  std::vector<value> seq;
  std::u32string chars;
  int64_t len;
  if (obj.is_str()) {
    chars = decode_utf8(obj.str());
    len = static_cast<int64_t>(chars.size());
  } else {
    len = static_cast<int64_t>(obj.items().size());
  }
  auto adjust = [&](std::optional<int64_t> v, int64_t def_pos, int64_t def_neg) -> int64_t {
    if (!v)
      return step > 0 ? def_pos : def_neg;
    int64_t x = *v;
    if (x < 0) {
      x += len;
      if (x < 0)
        x = step < 0 ? -1 : 0;
    } else if (x >= len) {
      x = step < 0 ? len - 1 : len;
    }
    return x;
  };
  int64_t b = adjust(start, 0, len - 1);
  int64_t en = adjust(stop, len, -1);
  std::vector<size_t> idx;
  if (step > 0)
    for (int64_t i = b; i < en; i += step)
      idx.push_back(static_cast<size_t>(i));
  else
    for (int64_t i = b; i > en; i += step)
      idx.push_back(static_cast<size_t>(i));
  if (obj.is_str()) {
    std::u32string r;
    for (auto i : idx)
      r += chars[i];
    return value(encode_utf8(r));
  }
  std::vector<value> r;
  for (auto i : idx)
    r.push_back(obj.items()[i]);
  return obj.is_list() ? make_list(std::move(r)) : make_tuple(std::move(r));
}

} // namespace

value evaluator::binop(const expr& e, const value& a, const value& b) {
  const std::string& op = e.name;
  if (op == "~")
    return value(to_str(a) + to_str(b));
  if (a.is_undefined())
    fail_undefined(a);
  if (b.is_undefined())
    fail_undefined(b);
  auto unsupported = [&]() -> value {
    fail("unsupported operand type(s) for " + op + ": '" + type_name(a) + "' and '" +
         type_name(b) + "'");
  };
  bool nums = a.is_number() && b.is_number();
  bool ints = a.is_integral() && b.is_integral();
  if (op == "+") {
    if (ints)
      return value(add_checked(a.as_int(), b.as_int()));
    if (nums)
      return value(a.as_float() + b.as_float());
    if (a.is_str() && b.is_str()) {
      check_size(a.str().size() + b.str().size());
      return value(a.str() + b.str());
    }
    if (((a.is_list() && b.is_list()) || (a.is_tuple() && b.is_tuple())) && !a.view() &&
        !b.view()) {
      std::vector<value> r = a.items();
      r.insert(r.end(), b.items().begin(), b.items().end());
      check_size(r.size());
      return a.is_list() ? make_list(std::move(r)) : make_tuple(std::move(r));
    }
    if (a.is_str() || b.is_str())
      fail(a.is_str() ? "can only concatenate str (not \"" + type_name(b) + "\") to str"
                      : "unsupported operand type(s) for +: '" + type_name(a) + "' and 'str'");
    return unsupported();
  }
  if (op == "-") {
    if (ints)
      return value(sub_checked(a.as_int(), b.as_int()));
    if (nums)
      return value(a.as_float() - b.as_float());
    return unsupported();
  }
  if (op == "*") {
    if (ints)
      return value(mul_checked(a.as_int(), b.as_int()));
    if (nums)
      return value(a.as_float() * b.as_float());
    if ((a.is_str() || a.is_seq()) && b.is_integral())
      return repeat_seq(*this, a, b.as_int());
    if ((b.is_str() || b.is_seq()) && a.is_integral())
      return repeat_seq(*this, b, a.as_int());
    if (a.is_str() || b.is_str() || a.is_seq() || b.is_seq())
      fail("can't multiply sequence by non-int of type '" +
           type_name(a.is_str() || a.is_seq() ? b : a) + "'");
    return unsupported();
  }
  if (op == "/") {
    if (!nums)
      return unsupported();
    if (b.as_float() == 0.0)
      fail(ints ? "division by zero" : "float division by zero");
    return value(a.as_float() / b.as_float());
  }
  if (op == "//") {
    if (!nums)
      return unsupported();
    if (ints) {
      int64_t x = a.as_int(), y = b.as_int();
      if (y == 0)
        fail("integer division or modulo by zero");
      if (x == std::numeric_limits<int64_t>::min() && y == -1)
        fail("integer overflow (stepflow integers are 64-bit)");
      int64_t q = x / y;
      if ((x % y != 0) && ((x < 0) != (y < 0)))
        --q;
      return value(q);
    }
    if (b.as_float() == 0.0)
      fail("float floor division by zero");
    return value(py_floordiv(a.as_float(), b.as_float()));
  }
  if (op == "%") {
    if (a.is_str())
      return value(py_percent_format(a.str(), b));
    if (!nums)
      return unsupported();
    if (ints) {
      int64_t x = a.as_int(), y = b.as_int();
      if (y == 0)
        fail("integer division or modulo by zero");
      if (y == -1)
        return value(int64_t{0});
      int64_t m = x % y;
      if (m != 0 && ((m < 0) != (y < 0)))
        m += y;
      return value(m);
    }
    if (b.as_float() == 0.0)
      fail("float modulo");
    return value(py_fmod(a.as_float(), b.as_float()));
  }
  if (op == "**") {
    if (!nums)
      return unsupported();
    if (ints && b.as_int() >= 0) {
      int64_t base = a.as_int(), ex = b.as_int(), r = 1;
      while (ex > 0) {
        if (ex & 1)
          r = mul_checked(r, base);
        ex >>= 1;
        if (ex > 0)
          base = mul_checked(base, base);
      }
      return value(r);
    }
    double x = a.as_float(), y = b.as_float();
    if (x == 0.0 && y < 0)
      fail("0.0 cannot be raised to a negative power");
    double r = std::pow(x, y);
    if (std::isnan(r) && !std::isnan(x) && !std::isnan(y))
      fail("complex results are not supported");
    if (std::isinf(r) && std::isfinite(x) && std::isfinite(y))
      fail("(34, 'Numerical result out of range')");
    return value(r);
  }
  fail("unknown operator " + op);
}

value evaluator::eval_impl(const expr& e) {
  switch (e.kind) {
    case ek::literal: return e.lit;
    case ek::name: return lookup(e.name);
    case ek::list: {
      std::vector<value> items;
      for (auto& k : e.kids)
        items.push_back(eval(*k));
      return make_list(std::move(items));
    }
    case ek::tuple: {
      std::vector<value> items;
      for (auto& k : e.kids)
        items.push_back(eval(*k));
      return make_tuple(std::move(items));
    }
    case ek::dict: {
      auto d = make_dict();
      for (size_t i = 0; i + 1 < e.kids.size(); i += 2) {
        value k = eval(*e.kids[i]);
        value v = eval(*e.kids[i + 1]);
        d.dict().set(std::move(k), std::move(v));
      }
      return d;
    }
    case ek::getattr: {
      value obj = eval(*e.kids[0]);
      return get_attr(obj, e.name);
    }
    case ek::getitem: {
      value obj = eval(*e.kids[0]);
      value key = eval(*e.kids[1]);
      return get_item(obj, key);
    }
    case ek::slice: {
      value obj = eval(*e.kids[0]);
      if (obj.is_undefined())
        fail_undefined(obj);
      value parts[3];
      for (int i = 0; i < 3; ++i)
        parts[i] = e.kids[static_cast<size_t>(i) + 1] ? eval(*e.kids[static_cast<size_t>(i) + 1])
                                                       : value(none_t{});
      return slice_of(obj, parts[0], parts[1], parts[2]);
    }
    case ek::call: {
      value callee = eval(*e.kids[0]);
      call_args args;
      collect_args(e, 1, args);
      return call(callee, args);
    }
    case ek::filter: {
      value subject = eval(*e.kids[0]);
      call_args args;
      collect_args(e, 1, args);
      return apply_filter(e.name, std::move(subject), args);
    }
    case ek::test: {
      value subject = eval(*e.kids[0]);
      call_args args;
      collect_args(e, 1, args);
      bool r = apply_test(e.name, subject, args);
      return value(e.negated ? !r : r);
    }
    case ek::not_: return value(!truthy(eval(*e.kids[0])));
    case ek::neg:
    case ek::pos: {
      value v = eval(*e.kids[0]);
      if (v.is_undefined())
        fail_undefined(v);
      if (v.is_integral()) {
        if (e.kind == ek::pos)
          return value(v.as_int());
        if (v.as_int() == std::numeric_limits<int64_t>::min())
          fail("integer overflow (stepflow integers are 64-bit)");
        return value(-v.as_int());
      }
      if (v.is_float())
        return value(e.kind == ek::neg ? -v.as_float() : v.as_float());
      fail(std::string("bad operand type for unary ") + (e.kind == ek::neg ? "-" : "+") + ": '" +
           type_name(v) + "'");
    }
    case ek::binop: {
      value a = eval(*e.kids[0]);
      value b = eval(*e.kids[1]);
      return binop(e, a, b);
    }
    case ek::compare: {
      value left = eval(*e.kids[0]);
      for (size_t i = 0; i < e.ops.size(); ++i) {
        value right = eval(*e.kids[i + 1]);
        const std::string& op = e.ops[i];
        bool r;
        if (op == "==")
          r = equals(left, right);
        else if (op == "!=")
          r = !equals(left, right);
        else if (op == "in")
          r = contains(right, left);
        else if (op == "not in")
          r = !contains(right, left);
        else {
          if (!(left.is_number() && right.is_number()) && !(left.is_str() && right.is_str()) &&
              !(left.is_list() && right.is_list()) && !(left.is_tuple() && right.is_tuple()) &&
              !left.is_undefined() && !right.is_undefined())
            fail("'" + op + "' not supported between instances of '" + type_name(left) + "' and '" +
                 type_name(right) + "'");
          int c = compare(left, right);
          r = op == "<" ? c < 0 : op == ">" ? c > 0 : op == "<=" ? c <= 0 : c >= 0;
        }
        if (!r)
          return value(false);
        left = std::move(right);
      }
      return value(true);
    }
    case ek::and_: {
      value a = eval(*e.kids[0]);
      if (!truthy(a))
        return a;
      return eval(*e.kids[1]);
    }
    case ek::or_: {
      value a = eval(*e.kids[0]);
      if (truthy(a))
        return a;
      return eval(*e.kids[1]);
    }
    case ek::cond: {
      if (truthy(eval(*e.kids[0])))
        return eval(*e.kids[1]);
      if (e.kids[2])
        return eval(*e.kids[2]);
      return make_undefined("the inline if-expression evaluated to false and no else section was "
                            "defined.");
    }
  }
  fail("unknown expression");
}

} // namespace stepflow::tmpl
