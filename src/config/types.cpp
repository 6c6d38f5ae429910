#include "chipmesh/types.h"

#include <array>
#include <string>

#include "chipmesh/errors.h"

namespace chipmesh {
namespace {

struct DTypeInfo {
  std::string_view name;
  size_t size;
};

// Indexed by DataType's value.
constexpr std::array<DTypeInfo, 12> kDTypes = {{
    {"float32", 4}, {"float16", 2}, {"bfloat16", 2}, {"int8", 1}, {"int16", 2}, {"int32", 4},
    {"int64", 8}, {"uint8", 1}, {"uint16", 2}, {"uint32", 4}, {"uint64", 8}, {"float64", 8},
}};

const DTypeInfo& info(DataType dtype) {
  auto index = static_cast<size_t>(dtype);
  if (index >= kDTypes.size())
    throw ConfigError("unknown DataType value " + std::to_string(index) + " (valid: 0.." +
                      std::to_string(kDTypes.size() - 1) + ")");
  return kDTypes[index];
}

const HostBufferStaging& find_staging(const std::vector<HostBufferStaging>& list, std::string_view name,
                                      const char* kind) {
  for (const auto& s : list)
    if (s.name == name) return s;
  throw ConfigError(std::string("no ") + kind + " staging for buffer '" + std::string(name) + "'");
}

}  // namespace

size_t dtype_size(DataType dtype) { return info(dtype).size; }

std::string_view dtype_name(DataType dtype) { return info(dtype).name; }

DataType dtype_from_name(std::string_view name) {
  for (size_t i = 0; i < kDTypes.size(); ++i)
    if (kDTypes[i].name == name) return static_cast<DataType>(i);
  std::string known;
  for (const auto& d : kDTypes) known += (known.empty() ? "" : ", ") + std::string(d.name);
  throw ConfigError("unknown dtype '" + std::string(name) + "'; expected one of " + known);
}

const HostBufferStaging& ChipBootstrapConfig::input_staging(std::string_view name) const {
  return find_staging(host_inputs, name, "host input");
}

const HostBufferStaging& ChipBootstrapConfig::output_staging(std::string_view name) const {
  return find_staging(host_outputs, name, "host output");
}

}  // namespace chipmesh
