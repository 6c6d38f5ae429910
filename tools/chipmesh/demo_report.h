// What `chipmesh demo` measured and found, printed as text or one JSON object.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <string>

namespace chipmesh::cli {

struct DemoReport {
  // The run.
  int chips = 0;  // in all, on every host
  // Across hosts (one demo per host under mpirun): hosts in the job and
  // this one's rank; only host 0 prints the report.
  bool cluster = false;
  int hosts = 1;
  int host_rank = 0;
  uint64_t bytes = 0;
  uint64_t elements = 0;
  std::string dtype;
  std::string mode;
  std::string chosen_mode;  // what "auto" resolved to ("" otherwise)
  std::string op;
  std::string platform;
  int iterations = 0;
  // Measurements (absent when the run failed before taking them).
  std::optional<double> bringup_ms;
  std::map<std::string, double> phases_ms;  // as Worker::bringup_phases_ms()
  // One allreduce per run(), submit to done, without the output flush
  // (the tasks do not flush; median, min and mean over the calls).
  std::optional<double> allreduce_us;
  std::optional<double> allreduce_us_min;
  std::optional<double> allreduce_us_mean;
  // One flush_outputs request on every chip per run() (median): the copy of
  // each chip's output buffer into its host staging, as a round trip.
  std::optional<double> flush_us;
  // All `iterations` allreduces submitted in one run(), per call.
  std::optional<double> allreduce_stream_us;
  // Across hosts: the inter-host step alone (MPI_Allreduce of the same bytes
  // between the hosts' Worker processes, median) and its share of the
  // allreduce's median time.
  std::optional<double> inter_host_us;
  std::optional<double> inter_host_share() const {
    if (!inter_host_us || !allreduce_us || *allreduce_us <= 0) return std::nullopt;
    return *inter_host_us / *allreduce_us;
  }
  std::optional<double> max_abs_error;
  uint64_t wrong_elements = 0;
  std::string first_wrong;  // "rank 1 element 5: got 3, expected 4"
  // Outcome.
  std::string error;  // "" unless a step failed
  bool ok = false;

  // bytes / allreduce time, in GB/s (1e9 bytes per second).
  std::optional<double> algbw_gbps() const;
  // algbw * 2(n-1)/n: the bytes each chip moves over its links, per second.
  std::optional<double> busbw_gbps() const;
};

void print_demo_text(const DemoReport& r, FILE* out);
void print_demo_json(const DemoReport& r, FILE* out);

}  // namespace chipmesh::cli
