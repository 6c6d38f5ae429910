#include "plugin_loader/library_search.h"

#include <dlfcn.h>

#include <filesystem>
#include <sstream>

#include "common/env.h"

namespace chipmesh {
namespace {

std::string own_directory() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&own_directory), &info) == 0 || info.dli_fname == nullptr) return {};
  return std::filesystem::path(info.dli_fname).parent_path().string();
}

}  // namespace

std::vector<std::string> library_candidates(const std::string& file_name) {
  std::vector<std::string> out;
  std::stringstream search(env::platform_path());
  for (std::string dir; std::getline(search, dir, ':');)
    if (!dir.empty()) out.push_back((std::filesystem::path(dir) / file_name).string());
  if (std::string own = own_directory(); !own.empty()) out.push_back((std::filesystem::path(own) / file_name).string());
  out.push_back(file_name);
  return out;
}

void* open_first_library(const std::vector<std::string>& candidates, std::string* report, int scope) {
  for (const auto& path : candidates) {
    if (void* handle = dlopen(path.c_str(), RTLD_NOW | scope | RTLD_NODELETE)) return handle;
    const char* err = dlerror();
    *report += "\n  " + path + ": " + (err ? err : "dlopen failed");
  }
  return nullptr;
}

}  // namespace chipmesh
