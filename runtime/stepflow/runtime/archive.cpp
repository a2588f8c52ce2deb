#include "stepflow/runtime/archive.hpp"

#include "stepflow/runtime/json.hpp"

#include <zip.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <vector>

#include <fmt/format.h>

namespace stepflow {

namespace fs = std::filesystem;

namespace {

struct zip_closer {
  void operator()(zip_t* z) const noexcept { zip_discard(z); }
};
struct file_closer {
  void operator()(zip_file_t* f) const noexcept { zip_fclose(f); }
};

/// The entry's path below dest, or empty when it would escape it.
fs::path safe_path(const fs::path& dest, std::string_view name) {
  fs::path rel{std::string(name)};
  if (rel.empty() || rel.is_absolute() || rel.has_root_name())
    return {};
  for (const auto& part : rel)
    if (part == "..")
      return {};
  return dest / rel.relative_path();
}

} // namespace

caf::error extract_zip(const std::string& archive, const std::string& dest,
                       extract_limits limits) {
  int code = 0;
  std::unique_ptr<zip_t, zip_closer> z{zip_open(archive.c_str(), ZIP_RDONLY, &code)};
  if (!z) {
    zip_error_t err;
    zip_error_init_with_code(&err, code);
    auto why = fmt::format("{}: not a readable zip archive: {}", archive, zip_error_strerror(&err));
    zip_error_fini(&err);
    return make_error(errc::invalid_definition, why);
  }
  auto n = zip_get_num_entries(z.get(), 0);
  if (n < 0 || static_cast<std::uint64_t>(n) > limits.max_entries)
    return make_error(errc::invalid_definition,
                      fmt::format("{}: more than {} entries", archive, limits.max_entries));
  std::error_code ec;
  fs::create_directories(dest, ec);
  if (ec)
    return make_error(errc::io_error, fmt::format("cannot create {}: {}", dest, ec.message()));
  std::uint64_t total = 0;
  std::vector<char> buf(1 << 16);
  for (zip_int64_t i = 0; i < n; ++i) {
    zip_stat_t st;
    if (zip_stat_index(z.get(), static_cast<zip_uint64_t>(i), 0, &st) != 0 || !(st.valid & ZIP_STAT_NAME))
      return make_error(errc::invalid_definition,
                        fmt::format("{}: entry {} cannot be read", archive, i));
    std::string_view name{st.name};
    auto target = safe_path(dest, name);
    if (target.empty())
      return make_error(errc::invalid_definition,
                        fmt::format("{}: entry {} points outside the archive's folder", archive,
                                    quote_json(name)));
    if (!name.empty() && name.back() == '/') {
      fs::create_directories(target, ec);
      continue;
    }
    fs::create_directories(target.parent_path(), ec);
    std::unique_ptr<zip_file_t, file_closer> f{zip_fopen_index(z.get(), static_cast<zip_uint64_t>(i), 0)};
    if (!f)
      return make_error(errc::invalid_definition,
                        fmt::format("{}: entry {} cannot be opened: {}", archive, quote_json(name),
                                    zip_strerror(z.get())));
    std::ofstream out(target, std::ios::binary | std::ios::trunc);
    if (!out)
      return make_error(errc::io_error, fmt::format("cannot write {}", target.string()));
    for (;;) {
      auto got = zip_fread(f.get(), buf.data(), buf.size());
      if (got < 0)
        return make_error(errc::invalid_definition,
                          fmt::format("{}: entry {} is damaged", archive, quote_json(name)));
      if (got == 0)
        break;
      total += static_cast<std::uint64_t>(got);
      if (total > limits.max_total_bytes)
        return make_error(errc::invalid_definition,
                          fmt::format("{}: expands to more than {} bytes", archive,
                                      limits.max_total_bytes));
      out.write(buf.data(), got);
    }
    if (!out)
      return make_error(errc::io_error, fmt::format("cannot write {}", target.string()));
  }
  return {};
}

} // namespace stepflow
