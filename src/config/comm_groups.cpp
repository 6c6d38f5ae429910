#include "config/comm_groups.h"

#include <map>
#include <string>

#include "chipmesh/errors.h"

namespace chipmesh {
namespace {

std::string where(const std::string& rootinfo) {
  return rootinfo.empty() ? "the communicator that meets in the Worker's memory (empty rootinfo_path)"
                          : "the communicator at rootinfo '" + rootinfo + "'";
}

struct Group {
  int first = -1;               // the first chip naming it
  int nranks = 0;               // as that chip says
  std::map<int, int> by_rank;   // rank -> chip
};

}  // namespace

void validate_comm_groups(const std::vector<ChipBootstrapConfig>& configs) {
  std::map<std::string, Group> groups;
  for (size_t i = 0; i < configs.size(); ++i) {
    if (!configs[i].comm) continue;
    const ChipCommBootstrapConfig& c = *configs[i].comm;
    if (c.nranks < 1 || c.rank < 0 || c.rank >= c.nranks) continue;  // its own check names it
    const int chip = static_cast<int>(i);
    Group& g = groups[c.rootinfo_path];
    if (g.first < 0) {
      g.first = chip;
      g.nranks = c.nranks;
    } else if (c.nranks != g.nranks) {
      throw ConfigError("Worker: chips " + std::to_string(g.first) + " and " + std::to_string(chip) + " join " +
                        where(c.rootinfo_path) + " with nranks=" + std::to_string(g.nranks) + " and nranks=" +
                        std::to_string(c.nranks));
    }
    const auto [it, fresh] = g.by_rank.emplace(c.rank, chip);
    if (!fresh)
      throw ConfigError("Worker: chips " + std::to_string(it->second) + " and " + std::to_string(chip) +
                        " both have rank " + std::to_string(c.rank) + " of " + where(c.rootinfo_path) +
                        " (nranks=" + std::to_string(c.nranks) + ")");
  }
  // In the Worker's memory only its own chips can meet: every rank is one.
  const auto it = groups.find("");
  if (it != groups.end() && static_cast<int>(it->second.by_rank.size()) != it->second.nranks) {
    const Group& g = it->second;
    int missing = 0;
    while (g.by_rank.count(missing)) ++missing;
    throw ConfigError("Worker: " + where("") + " has nranks=" + std::to_string(g.nranks) + " but " +
                      std::to_string(g.by_rank.size()) + " chips of this Worker join it (rank " +
                      std::to_string(missing) +
                      " is none of them); ranks elsewhere need a rootinfo_path they can reach");
  }
}

}  // namespace chipmesh
