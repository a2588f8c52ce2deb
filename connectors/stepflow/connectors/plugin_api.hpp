#pragma once
// The dynamic plugin ABI, version 1. A plugin is a shared library that
// exports one C function, stepflow_plugin_entry, returning a description of
// the plugin. stepflow checks the ABI version first (the first field, the
// same in every version), then the toolchain string (C++ types cross the
// boundary, so compiler, standard library, Boost and CAF must match), then
// calls add_steps. Any mismatch is an error naming the file, never a crash.
// See docs/plugins.md.
#include <cstdint>

#include <boost/version.hpp>
#include <caf/config.hpp>

#include "stepflow/runtime/step.hpp"

#define STEPFLOW_PLUGIN_ABI_VERSION 1u

#define STEPFLOW_PLUGIN_STR2(x) #x
#define STEPFLOW_PLUGIN_STR(x) STEPFLOW_PLUGIN_STR2(x)
/// What a plugin's C++ types must agree on with the host binary.
#define STEPFLOW_PLUGIN_TOOLCHAIN                                                              \
  "gcc" STEPFLOW_PLUGIN_STR(__GNUC__) "/cxx11abi" STEPFLOW_PLUGIN_STR(_GLIBCXX_USE_CXX11_ABI)  \
    "/boost" STEPFLOW_PLUGIN_STR(BOOST_VERSION) "/caf" STEPFLOW_PLUGIN_STR(CAF_VERSION)

extern "C" {

struct stepflow_plugin_v1 {
  /// STEPFLOW_PLUGIN_ABI_VERSION of the headers the plugin was built with.
  std::uint32_t abi_version;
  /// STEPFLOW_PLUGIN_TOOLCHAIN of the build.
  const char* toolchain;
  /// The plugin's name and version, shown by `stepflow steps` and in errors.
  const char* name;
  const char* version;
  /// Adds the plugin's step types to `registry`. Returns nullptr on success,
  /// else one sentence (static storage) saying what went wrong. Must not throw.
  const char* (*add_steps)(stepflow::step_registry* registry);
};

/// The one symbol a plugin exports.
const stepflow_plugin_v1* stepflow_plugin_entry(void);

} // extern "C"

#define STEPFLOW_PLUGIN_ENTRY "stepflow_plugin_entry"
