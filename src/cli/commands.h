#pragma once

#include <string>
#include <utility>
#include <vector>

namespace ordo::cli {

struct ServeArgs {
  std::string config_file;  // empty: none
  // name=value settings from the command line, in the order given (they win over the file
  // and the environment).
  std::vector<std::pair<std::string, std::string>> overrides;
  bool print_config = false;
};

// Each returns the process exit code.
int serve(const ServeArgs& args);
int dump_log(const std::string& path, bool records);
// The settings table for `ordo serve --help`.
std::string serve_settings_help();

}  // namespace ordo::cli
