#include "stepflow/actors/client.hpp"

#include <cstring>
#include <iostream>

namespace stepflow::actors {

bool wants_client(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--server") == 0 || std::strncmp(argv[i], "--server=", 9) == 0)
      return true;
  return false;
}

int run_client(int, char**, const cli_environment&) {
  std::cerr << "stepflow: the remote CLI is not built yet\n";
  return 2;
}

} // namespace stepflow::actors
