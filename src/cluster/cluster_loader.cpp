// cluster.h's entry points in libchipmesh: the MPI implementation is a
// plugin (cluster_plugin.h), opened on the first call that needs it and
// never closed (MPI_Finalize runs from its atexit handler).
#include <dlfcn.h>

#include <mutex>
#include <string>

#include "chipmesh/errors.h"
#include "cluster/cluster.h"
#include "cluster/cluster_plugin.h"
#include "plugin_loader/library_search.h"

namespace chipmesh::cluster {
namespace {

const Plugin& plugin(const std::string& what) {
  static std::mutex mu;
  static const Plugin* loaded = nullptr;
  std::lock_guard<std::mutex> g(mu);
  if (loaded) return *loaded;
  if (!available()) throw ConfigError(what + ": chipmesh was built without MPI (install libopenmpi-dev and rebuild)");
  std::string report;
  // RTLD_GLOBAL: Open MPI opens components of its own that may resolve
  // libmpi's symbols through the global scope.
  void* handle = open_first_library(library_candidates(kPluginFile), &report, RTLD_GLOBAL);
  if (!handle) throw ConfigError(what + ": cannot load the MPI cluster plugin " + kPluginFile + ":" + report);
  using Entry = const Plugin* (*)();
  auto entry = reinterpret_cast<Entry>(dlsym(handle, kPluginSymbol));
  if (!entry) throw ConfigError(what + ": " + kPluginFile + " has no entry point " + kPluginSymbol);
  const Plugin* p = entry();
  if (!p || p->version != kPluginVersion)
    throw ConfigError(what + ": " + kPluginFile + " is version " + std::to_string(p ? p->version : 0) +
                      ", this libchipmesh needs " + std::to_string(kPluginVersion));
  loaded = p;
  return *loaded;
}

}  // namespace

bool available() {
#ifdef CHIPMESH_HAVE_MPI_CLUSTER
  return true;
#else
  return false;
#endif
}

std::unique_ptr<Cluster> join(const std::string& kind) {
  if (kind != "mpi") throw ConfigError("WorkerConfig::cluster: unknown cluster '" + kind + "' (\"\" or \"mpi\")");
  return plugin("WorkerConfig::cluster \"mpi\"").join();
}

void check_reducible(const char* what, DataType dtype, ReduceOp op) {
  plugin(std::string(what) + " across hosts").check_reducible(what, dtype, op);
}

void reduce_local(const void* in, void* inout, size_t count, DataType dtype, ReduceOp op) {
  plugin("a reduction across hosts").reduce_local(in, inout, count, dtype, op);
}

}  // namespace chipmesh::cluster
