#include "demo_report.h"

#include <nlohmann/json.hpp>

#include <vector>

namespace chipmesh::cli {

namespace {

// The phases in bring-up order; any other key the Worker reports follows.
const std::vector<std::string>& phase_order() {
  static const std::vector<std::string> order = {"setup", "fork", "comm_init", "windows", "staging", "handshake"};
  return order;
}

std::vector<std::pair<std::string, double>> ordered_phases(const DemoReport& r) {
  std::vector<std::pair<std::string, double>> out;
  for (const auto& k : phase_order())
    if (auto it = r.phases_ms.find(k); it != r.phases_ms.end()) out.emplace_back(k, it->second);
  for (const auto& [k, v] : r.phases_ms) {
    bool known = k == "total";
    for (const auto& o : phase_order()) known = known || k == o;
    if (!known) out.emplace_back(k, v);
  }
  return out;
}

nlohmann::ordered_json opt(const std::optional<double>& v) {
  return v ? nlohmann::ordered_json(*v) : nlohmann::ordered_json(nullptr);
}

}  // namespace

std::optional<double> DemoReport::algbw_gbps() const {
  if (!allreduce_us || *allreduce_us <= 0) return std::nullopt;
  return static_cast<double>(bytes) / (*allreduce_us * 1e-6) / 1e9;
}

std::optional<double> DemoReport::busbw_gbps() const {
  auto alg = algbw_gbps();
  if (!alg || chips < 1) return std::nullopt;
  return *alg * 2.0 * (chips - 1) / chips;
}

void print_demo_text(const DemoReport& r, FILE* out) {
  const std::string hosts = r.cluster ? " on " + std::to_string(r.hosts) + " host" + (r.hosts == 1 ? "" : "s") : "";
  const std::string mode = r.chosen_mode.empty() ? r.mode : r.mode + " -> " + r.chosen_mode;
  std::fprintf(out, "chipmesh demo: allreduce (%s, %s) over %d %s chip%s%s, %llu bytes of %s (%llu element%s) per chip\n",
               r.op.c_str(), mode.c_str(), r.chips, r.platform.c_str(), r.chips == 1 ? "" : "s", hosts.c_str(),
               static_cast<unsigned long long>(r.bytes), r.dtype.c_str(),
               static_cast<unsigned long long>(r.elements), r.elements == 1 ? "" : "s");
  if (r.bringup_ms) {
    std::fprintf(out, "  bring-up     %10.1f ms", *r.bringup_ms);
    auto phases = ordered_phases(r);
    if (!phases.empty()) {
      std::fprintf(out, "   (");
      for (size_t i = 0; i < phases.size(); ++i)
        std::fprintf(out, "%s%s %.1f ms", i ? ", " : "", phases[i].first.c_str(), phases[i].second);
      std::fprintf(out, ")");
    }
    std::fprintf(out, "\n");
  }
  if (r.allreduce_us) {
    std::fprintf(out,
                 "  allreduce    %10.1f us   per call, %s (median of %d; min %.1f us, mean "
                 "%.1f us)\n",
                 *r.allreduce_us,
                 r.cluster ? "hierarchical across hosts, with the output flush" : "without the output flush", r.iterations, r.allreduce_us_min.value_or(0.0),
                 r.allreduce_us_mean.value_or(0.0));
    if (r.inter_host_us)
      std::fprintf(out, "  inter-host   %10.1f us   per call: MPI_Allreduce of the same bytes between the hosts alone "
                        "(%.0f%% of the allreduce)\n",
                   *r.inter_host_us, 100 * r.inter_host_share().value_or(0.0));
    if (r.flush_us)
      std::fprintf(out, "  flush        %10.1f us   per call: outputs to host staging (median of %d)\n", *r.flush_us,
                   r.iterations);
    if (r.allreduce_stream_us)
      std::fprintf(out, "  stream       %10.1f us   per call, %d call%s back to back in one run()\n",
                   *r.allreduce_stream_us, r.iterations, r.iterations == 1 ? "" : "s");
    std::fprintf(out, "  algbw        %10.3f GB/s\n", r.algbw_gbps().value_or(0.0));
    std::fprintf(out, "  busbw        %10.3f GB/s (algbw * 2(n-1)/n)\n", r.busbw_gbps().value_or(0.0));
  }
  if (r.max_abs_error) {
    std::fprintf(out, "  max abs err  %10g      (%llu of %llu elements wrong, over %d rank%s)\n", *r.max_abs_error,
                 static_cast<unsigned long long>(r.wrong_elements),
                 static_cast<unsigned long long>(r.elements * static_cast<uint64_t>(r.chips)), r.chips,
                 r.chips == 1 ? "" : "s");
  }
  if (r.ok) {
    std::fprintf(out, "OK\n");
  } else if (!r.error.empty()) {
    std::fprintf(out, "FAILED (the error is on stderr)\n");
  } else {
    std::fprintf(out, "FAILED: %llu wrong elements; first: %s\n", static_cast<unsigned long long>(r.wrong_elements),
                 r.first_wrong.c_str());
  }
}

void print_demo_json(const DemoReport& r, FILE* out) {
  nlohmann::ordered_json j;
  j["ok"] = r.ok;
  if (r.cluster) j["hosts"] = r.hosts;
  j["chips"] = r.chips;
  j["bytes"] = r.bytes;
  j["elements"] = r.elements;
  j["dtype"] = r.dtype;
  j["mode"] = r.mode;
  if (!r.chosen_mode.empty()) j["chosen_mode"] = r.chosen_mode;
  j["op"] = r.op;
  j["platform"] = r.platform;
  j["iterations"] = r.iterations;
  j["bringup_ms"] = opt(r.bringup_ms);
  nlohmann::ordered_json phases = nlohmann::ordered_json::object();
  for (const auto& [k, v] : ordered_phases(r)) phases[k] = v;
  j["phases_ms"] = phases;
  j["allreduce_us"] = opt(r.allreduce_us);
  j["allreduce_us_min"] = opt(r.allreduce_us_min);
  j["allreduce_us_mean"] = opt(r.allreduce_us_mean);
  j["flush_us"] = opt(r.flush_us);
  j["allreduce_stream_us"] = opt(r.allreduce_stream_us);
  if (r.cluster) {
    j["inter_host_us"] = opt(r.inter_host_us);
    j["inter_host_share"] = opt(r.inter_host_share());
  }
  j["algbw_gbps"] = opt(r.algbw_gbps());
  j["busbw_gbps"] = opt(r.busbw_gbps());
  j["max_abs_error"] = opt(r.max_abs_error);
  j["wrong_elements"] = r.wrong_elements;
  j["first_wrong"] = r.first_wrong.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(r.first_wrong);
  j["error"] = r.error.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(r.error);
  std::fprintf(out, "%s\n", j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace).c_str());
}

}  // namespace chipmesh::cli
