// Which host of a cluster this process is, for error messages: a process is
// one host's Worker for its whole life once it joined (set by the cluster
// layer; empty on one host).
#include <mutex>
#include <string>

#include "cluster/cluster.h"

namespace chipmesh::cluster {
namespace {
std::mutex mu;
std::string label;
}  // namespace

void set_this_host(const std::string& l) {
  std::lock_guard<std::mutex> g(mu);
  label = l;
}

std::string this_host() {
  std::lock_guard<std::mutex> g(mu);
  return label;
}

}  // namespace chipmesh::cluster
