// The built-in kernels a parent preloads before it forks, which its chips use
// as they inherit them: every CHIPMESH_KERNEL in kernels/*.cpp is in the
// preloaded table (read from the sources, so a new kernel cannot be left
// out unnoticed), each entry is the library's own symbol, and lookups of
// anything else behave as before the preload.
#include <dlfcn.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "chipmesh/errors.h"
#include "kernel_loader/kernel_library.h"

namespace chipmesh::testing {
namespace {

std::set<std::string> kernels_in_sources() {
  std::set<std::string> names;
  const std::regex decl(R"(CHIPMESH_KERNEL\((\w+)\))");
  for (const auto& f : std::filesystem::directory_iterator(CHIPMESH_KERNELS_SOURCE_DIR)) {
    if (f.path().extension() != ".cpp") continue;
    std::ifstream in(f.path());
    std::stringstream text;
    text << in.rdbuf();
    const std::string s = text.str();
    for (std::sregex_iterator it(s.begin(), s.end(), decl), end; it != end; ++it) names.insert((*it)[1].str());
  }
  return names;
}

TEST(KernelLibrary, EveryBuiltinKernelIsPreloadedAsTheLibraryExportsIt) {
  preload_builtin_kernels();
  const std::set<std::string> names = kernels_in_sources();
  ASSERT_GE(names.size(), 9u) << "kernels/*.cpp declare the built-in kernels";
  void* lib = dlopen(kBuiltinKernelLibrary, RTLD_NOW | RTLD_NOLOAD);
  ASSERT_NE(lib, nullptr) << "preload_builtin_kernels loaded " << kBuiltinKernelLibrary;
  KernelLibraries chip;
  for (const auto& name : names) {
    const chipmesh_kernel_entry entry = preloaded_builtin_kernel(name);
    EXPECT_NE(entry, nullptr) << name << " is declared in kernels/ but not preloaded (kBuiltinKernels)";
    EXPECT_EQ(reinterpret_cast<void*>(entry), dlsym(lib, name.c_str())) << name;
    EXPECT_EQ(chip.find("", name), entry) << name;
  }
  dlclose(lib);  // drops the RTLD_NOLOAD reference only
}

TEST(KernelLibrary, AnythingElseIsLookedUpAsBefore) {
  preload_builtin_kernels();
  EXPECT_EQ(preloaded_builtin_kernel("chipmesh_no_such_kernel"), nullptr);
  EXPECT_EQ(preloaded_builtin_kernel(""), nullptr);
  KernelLibraries chip;
  try {
    chip.find("", "chipmesh_no_such_kernel");
    FAIL() << "an unknown built-in kernel";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("chipmesh_no_such_kernel"), std::string::npos) << e.what();
  }
  EXPECT_THROW(chip.find("", ""), ConfigError);
  EXPECT_THROW(chip.find("/nonexistent/libkernels.so", "chipmesh_allreduce"), DeviceError);
}

}  // namespace
}  // namespace chipmesh::testing
