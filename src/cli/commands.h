#pragma once

#include <string>

namespace ordo::cli {

struct ServeArgs {
  std::string data_dir = "./data";
  std::string flush_mode = "durable";
  int shards = 1;
  bool truncate_corrupt = false;
};

// Each returns the process exit code.
int serve(const ServeArgs& args);
int dump_log(const std::string& path, bool records);

}  // namespace ordo::cli
