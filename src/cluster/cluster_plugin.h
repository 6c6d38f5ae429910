// The entry point of the MPI cluster plugin, libchipmesh_cluster_mpi.so.
//
// MPI lives in a plugin, opened the first time a Worker joins a cluster
// (cluster_loader.cpp), so that a one-host process never maps libmpi and
// the half-dozen libraries it pulls in: every chip is a fork of the
// user's process, and each mapping it holds is copied by every fork
// (42 of the 82 mappings of a small program; docs/PERFORMANCE.md).
// Built from this tree only, by the same compiler: C++ types cross it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "cluster/cluster.h"

namespace chipmesh::cluster {

inline constexpr uint32_t kPluginVersion = 1;
inline constexpr char kPluginFile[] = "libchipmesh_cluster_mpi.so";
inline constexpr char kPluginSymbol[] = "chipmesh_cluster_mpi_plugin_v1";

struct Plugin {
  uint32_t version;  // kPluginVersion
  // What cluster.h's join("mpi"), check_reducible and reduce_local do.
  std::unique_ptr<Cluster> (*join)();
  void (*check_reducible)(const char* what, DataType dtype, ReduceOp op);
  void (*reduce_local)(const void* in, void* inout, size_t count, DataType dtype, ReduceOp op);
};

}  // namespace chipmesh::cluster

extern "C" const chipmesh::cluster::Plugin* chipmesh_cluster_mpi_plugin_v1();
