#pragma once
// Names the calling thread (shown by top -H, ps -L, perf and gdb). Names are
// cut to 15 characters, the kernel's limit.
#include <pthread.h>

#include <string>

namespace stepflow {

inline void name_this_thread(const std::string& name) noexcept {
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}

} // namespace stepflow
