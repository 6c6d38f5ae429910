#include "rendezvous/store.h"

#include <filesystem>

#include "chipmesh/errors.h"
#include "rendezvous/file_store.h"
#include "rendezvous/memory_store.h"

namespace chipmesh::rendezvous {

Opened make_store(const std::string& address) {
  if (address.empty()) throw ConfigError("rendezvous: the address (rootinfo_path) is empty");
  // A slot of a Worker's shared table (memory_store.h): one value, one key.
  if (address.rfind(kMemoryAddressPrefix, 0) == 0) return Opened{std::make_unique<MemoryStore>(address), "value"};
  std::filesystem::path p(address);
  Opened out;
  out.key = p.filename().string();
  if (out.key.empty() || out.key == "." || out.key == "..")
    throw ConfigError("rendezvous: address '" + address + "' names a directory, not a file");
  out.store = std::make_unique<FileStore>(p.has_parent_path() ? p.parent_path().string() : std::string("."));
  return out;
}

}  // namespace chipmesh::rendezvous
