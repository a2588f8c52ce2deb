// make_memory_store: the in-memory kv_store used by tests. It mirrors the
// LMDB store's semantics (key limits, scan order, atomic batches, write()
// refused inside scan callbacks) without durability. write_async applies the
// batch and runs the callback inline, so every commit holds one batch.
#include "stepflow/runtime/kv_store.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <utility>

namespace stepflow::detail {
// Defined in kv_store.cpp.
caf::error check_key(table t, std::string_view key);
caf::error check_op(const write_op& op);
} // namespace stepflow::detail

namespace stepflow {

namespace {

using table_map = std::map<std::string, std::string, std::less<>>;


/// Stores whose scan callbacks run on this thread (write() is refused there,
/// like in the LMDB store where it could deadlock).
thread_local std::vector<const void*> scanning;

class scan_guard {
public:
  explicit scan_guard(const void* store) { scanning.push_back(store); }
  ~scan_guard() { scanning.pop_back(); }
  scan_guard(const scan_guard&) = delete;
  scan_guard& operator=(const scan_guard&) = delete;
};

class memory_store final : public kv_store {
public:
  caf::expected<std::optional<std::string>> get(table t,
                                                std::string_view key) const override {
    if (auto err = detail::check_key(t, key))
      return err;
    std::shared_lock lock(mutex_);
    const auto& m = tables_[static_cast<size_t>(t)];
    auto i = m.find(key);
    if (i == m.end())
      return std::optional<std::string>{};
    return std::optional<std::string>{i->second};
  }

  caf::error scan(table t, std::string_view prefix, std::string_view from, bool reverse,
                  const scan_fn& f) const override {
    // Snapshot the range first (LMDB scans see one snapshot too), then visit
    // it without holding the lock.
    std::vector<std::pair<std::string, std::string>> hits;
    {
      std::shared_lock lock(mutex_);
      const auto& m = tables_[static_cast<size_t>(t)];
      if (!reverse) {
        auto it = m.lower_bound(std::max(prefix, from));
        for (; it != m.end() && starts_with(it->first, prefix); ++it)
          hits.emplace_back(it->first, it->second);
      } else {
        auto succ = prefix_successor(prefix);
        table_map::const_iterator it;
        if (succ && (from.empty() || from >= *succ))
          it = m.lower_bound(*succ); // last key < successor
        else if (from.empty())
          it = m.end();
        else
          it = m.upper_bound(from); // last key <= from
        while (it != m.begin()) {
          --it;
          if (!starts_with(it->first, prefix))
            break;
          hits.emplace_back(it->first, it->second);
        }
      }
    }
    scan_guard guard(this);
    for (const auto& [k, v] : hits)
      if (!f(k, v))
        break;
    return {};
  }

  caf::error write(write_batch batch) override {
    if (std::find(scanning.begin(), scanning.end(), this) != scanning.end())
      return make_error(errc::internal, "kv_store::write called inside a scan callback");
    return apply(batch);
  }

  void write_async(write_batch batch, std::function<void(caf::error)> done) override {
    auto err = apply(batch);
    if (done)
      done(std::move(err));
  }

  store_stats stats() const override {
    store_stats s;
    s.commits = commits_.load();
    s.batches = commits_.load();
    return s;
  }

private:
  caf::error apply(const write_batch& batch) {
    // Validation is the only way a batch can fail, so checking every op
    // before changing anything makes the batch atomic.
    for (const auto& op : batch)
      if (auto err = detail::check_op(op))
        return err;
    std::unique_lock lock(mutex_);
    for (const auto& op : batch) {
      auto& m = tables_[static_cast<size_t>(op.tbl)];
      switch (op.kind) {
        case write_op::put:
          m.insert_or_assign(op.key, op.value);
          break;
        case write_op::erase:
          if (auto i = m.find(op.key); i != m.end())
            m.erase(i);
          break;
        case write_op::erase_prefix: {
          auto first = m.lower_bound(op.key);
          auto last = first;
          while (last != m.end() && starts_with(last->first, op.key))
            ++last;
          m.erase(first, last);
          break;
        }
      }
    }
    ++commits_;
    return {};
  }

  mutable std::shared_mutex mutex_;
  std::array<table_map, table_count> tables_;
  std::atomic<uint64_t> commits_{0};
};

} // namespace

std::unique_ptr<kv_store> make_memory_store() {
  return std::make_unique<memory_store>();
}

} // namespace stepflow
