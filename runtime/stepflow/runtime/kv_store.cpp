#include "stepflow/runtime/kv_store.hpp"

#include <fmt/format.h>

namespace stepflow {

std::string_view table_name(table t) noexcept {
  // These are the LMDB database names: renaming one orphans existing data.
  switch (t) {
    case table::applications: return "applications";
    case table::configurations: return "configurations";
    case table::steps: return "steps";
    case table::runs: return "runs";
    case table::runs_by_time: return "runs_by_time";
    case table::step_state: return "step_state";
    case table::step_logs: return "step_logs";
    case table::cache: return "cache";
    case table::cache_expiry: return "cache_expiry";
    case table::meta: return "meta";
    case table::queue: return "queue";
    case table::children: return "children";
  }
  return "unknown";
}

namespace {

template <class T>
std::string encode_be(T x) {
  std::string out(sizeof(T), '\0');
  for (size_t i = sizeof(T); i-- > 0;) {
    out[i] = static_cast<char>(x & 0xFF);
    x >>= 8;
  }
  return out;
}

// Missing trailing bytes (input shorter than sizeof(T)) read as zero.
template <class T>
T decode_be(std::string_view s) noexcept {
  T x = 0;
  for (size_t i = 0; i < sizeof(T); ++i) {
    x <<= 8;
    if (i < s.size())
      x |= static_cast<unsigned char>(s[i]);
  }
  return x;
}

} // namespace

namespace detail {

/// LMDB's default MDB_MAXKEYSIZE; both stores reject longer keys.
inline constexpr size_t max_key_size = 511;

// Shared by both stores (declared where used): LMDB cannot hold empty keys
// or keys longer than its compile-time maximum (511 bytes by default), and
// the memory store mirrors that so tests catch such keys too.
caf::error check_key(table t, std::string_view key) {
  if (key.empty())
    return make_error(errc::invalid_argument,
                      fmt::format("empty key in table {}", table_name(t)));
  if (key.size() > max_key_size)
    return make_error(errc::invalid_argument,
                      fmt::format("key of {} bytes in table {} exceeds the {}-byte limit",
                                  key.size(), table_name(t), max_key_size));
  return {};
}

caf::error check_op(const write_op& op) {
  if (static_cast<int>(op.tbl) >= table_count)
    return make_error(errc::invalid_argument,
                      fmt::format("unknown table {}", static_cast<int>(op.tbl)));
  switch (op.kind) {
    case write_op::put:
    case write_op::erase:
      return check_key(op.tbl, op.key);
    case write_op::erase_prefix:
      return {}; // any prefix; one longer than max_key_size matches nothing
  }
  return make_error(errc::invalid_argument,
                    fmt::format("unknown write operation {}", static_cast<int>(op.kind)));
}

} // namespace detail

std::string be64(uint64_t x) {
  return encode_be(x);
}

std::string be32(uint32_t x) {
  return encode_be(x);
}

uint64_t read_be64(std::string_view s) noexcept {
  return decode_be<uint64_t>(s);
}

uint32_t read_be32(std::string_view s) noexcept {
  return decode_be<uint32_t>(s);
}

bool starts_with(std::string_view s, std::string_view prefix) noexcept {
  return s.substr(0, prefix.size()) == prefix;
}

/// The smallest key greater than every key starting with `prefix`;
/// std::nullopt when there is none (empty prefix or all 0xFF bytes).
std::optional<std::string> prefix_successor(std::string_view prefix) {
  std::string s(prefix);
  while (!s.empty() && static_cast<unsigned char>(s.back()) == 0xFF)
    s.pop_back();
  if (s.empty())
    return std::nullopt;
  s.back() = static_cast<char>(static_cast<unsigned char>(s.back()) + 1);
  return s;
}

} // namespace stepflow
