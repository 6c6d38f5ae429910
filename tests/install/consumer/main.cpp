// Uses an installed chipmesh: init("sim"), one device, a host->device->host
// round trip. Prints the files libchipmesh and the sim plugin were loaded
// from (as /proc/self/maps shows them) so the test can check the prefix.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include <chipmesh/chipmesh.h>

namespace {

// Path of the first mapping whose file name starts with `stem`.
std::string mapped_file(const std::string& stem) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    size_t slash = line.find('/');
    if (slash == std::string::npos) continue;
    std::string path = line.substr(slash);
    std::string base = path.substr(path.rfind('/') + 1);
    if (base.rfind(stem, 0) == 0) return path;
  }
  return "";
}

}  // namespace

int main() {
  try {
    chipmesh::ChipWorker worker;
    worker.init("sim");
    worker.set_device(0);

    const char message[] = "chipmesh install ok";
    uint64_t dev = worker.malloc(sizeof message);
    worker.copy_to(dev, message, sizeof message);
    char back[sizeof message] = {};
    worker.copy_from(back, dev, sizeof message);
    worker.free(dev);
    worker.finalize();

    std::printf("libchipmesh: %s\n", mapped_file("libchipmesh.so").c_str());
    std::printf("platform: %s\n", mapped_file("libchipmesh_platform_sim.so").c_str());
    if (std::memcmp(back, message, sizeof message) != 0) {
      std::printf("round trip mismatch: '%.*s'\n", static_cast<int>(sizeof message), back);
      return 1;
    }
    std::printf("OK\n");
    return 0;
  } catch (const chipmesh::Error& e) {
    std::printf("%s\n", chipmesh::describe(e).c_str());
    return 1;
  }
}
