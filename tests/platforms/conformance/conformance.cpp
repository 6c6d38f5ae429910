#include "conformance.h"

#include <map>

namespace chipmesh::testing {

std::string platform_unavailable(const std::string& platform) {
  // Asked once per platform per test process.
  static std::map<std::string, std::string> verdicts;
  if (auto it = verdicts.find(platform); it != verdicts.end()) return it->second;
  std::string why;
  try {
    ChipWorker w;
    w.init(platform);
    w.set_device(0);
    w.finalize();
  } catch (const std::exception& e) {
    why = e.what();
    if (size_t nl = why.find('\n'); nl != std::string::npos) why = why.substr(0, nl) + " ...";
  }
  return verdicts[platform] = why;
}

}  // namespace chipmesh::testing
