#pragma once
// Zip archives (SyncPack wheels): the one place that uses libzip.
#include <cstdint>
#include <string>

#include "stepflow/runtime/errc.hpp"

namespace stepflow {

struct extract_limits {
  /// Most bytes all entries may expand to (zip bombs). Default: 1 GiB.
  std::uint64_t max_total_bytes = std::uint64_t{1} << 30;
  /// Most entries. Default: 100,000.
  std::uint64_t max_entries = 100'000;
};

/// Extracts every entry of the zip file `archive` below `dest` (created when
/// missing). Entries with absolute paths or ".." components are refused, so
/// nothing is written outside `dest`. errc::invalid_definition names the
/// archive and the problem; errc::io_error the file that could not be written.
caf::error extract_zip(const std::string& archive, const std::string& dest,
                       extract_limits limits = {});

} // namespace stepflow
