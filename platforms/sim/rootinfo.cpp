#include "rootinfo.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>

namespace chipmesh::sim {

rendezvous::Bytes encode_rootinfo(const RootInfo& ri) {
  const char* p = reinterpret_cast<const char*>(&ri);
  return rendezvous::Bytes(p, p + sizeof(ri));
}

bool decode_rootinfo(const rendezvous::Bytes& bytes, RootInfo* out, std::string* why) {
  if (bytes.size() != sizeof(RootInfo)) {
    *why = "not a chipmesh rootinfo: " + std::to_string(bytes.size()) + " bytes, expected " +
           std::to_string(sizeof(RootInfo));
    return false;
  }
  RootInfo ri;
  std::memcpy(&ri, bytes.data(), sizeof(ri));
  ri.ctrl_name[kShmNameBytes - 1] = '\0';
  ri.job[kJobTokenBytes - 1] = '\0';
  if (ri.magic != kRootInfoMagic || ri.version != kLayoutVersion || ri.size != sizeof(RootInfo) ||
      ri.ctrl_size != sizeof(CtrlBlock)) {
    *why = "not a chipmesh rootinfo: foreign magic, version or size";
    return false;
  }
  *out = ri;
  return true;
}

bool rootinfo_has_token(const rendezvous::Bytes& bytes, uint64_t token) {
  RootInfo ri;
  std::string why;
  return decode_rootinfo(bytes, &ri, &why) && ri.token == token;
}

bool rootinfo_file_has_token(const char* path, uint64_t token) noexcept {
  int fd = ::open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return false;
  RootInfo ri;
  bool ours = ::pread(fd, &ri, sizeof(ri), 0) == static_cast<ssize_t>(sizeof(ri)) && ri.magic == kRootInfoMagic &&
              ri.token == token;
  ::close(fd);
  return ours;
}

}  // namespace chipmesh::sim
