// The `chipmesh` command:
//   chipmesh demo  [--chips N] [--bytes B] [--dtype T] [--mode M] [--op O]
//                  [--platform P] [--iters K] [--json]
//   chipmesh clean [--dry-run] [--rootinfo PATH...]
//   chipmesh bench ...
//   chipmesh env   [--json] [--all]
// Exit status: 0 success, 1 a failed run (wrong result, runtime error), 2 a
// command-line error.

#include <CLI/CLI.hpp>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "bench_command.h"
#include "chipmesh/version.h"
#include "clean.h"
#include "demo.h"
#include "env_command.h"
#include "logging/log.h"

namespace {

std::vector<std::string> as_vector(const char* const* list) {
  std::vector<std::string> v;
  for (int i = 0; list[i]; ++i) v.emplace_back(list[i]);
  return v;
}

}  // namespace

namespace {

// CLI11 reads 0x10 and 0b101 as integers; a count on our command line is
// decimal, so "--chips 0x10" is an error, not 16.
std::string decimal_digits_only(const std::string& v) {
  if (!v.empty() && v.find_first_not_of("0123456789") == std::string::npos) return {};
  return "must be a decimal number, got '" + v + "'";
}

// CLI::AsSizeValue saturates on overflow (2^64 would read as 2^64-1): refuse
// a size whose number or number * unit does not fit in 64 bits.
std::string size_fits_u64(const std::string& v) {
  size_t digits = v.find_first_not_of("0123456789");
  if (digits == 0) return {};  // not a number: the transform reports it
  const std::string number = v.substr(0, digits);
  errno = 0;
  const unsigned long long n = std::strtoull(number.c_str(), nullptr, 10);
  std::string unit = digits == std::string::npos ? "" : v.substr(digits);
  for (auto& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!unit.empty() && unit.back() == 'b') unit.pop_back();
  if (!unit.empty() && unit.back() == 'i') unit.pop_back();
  const std::string prefixes = "kmgtpe";
  unsigned shift = 0;
  if (!unit.empty()) {
    auto pos = prefixes.find(unit);
    if (unit.size() != 1 || pos == std::string::npos) return {};  // the transform reports it
    shift = 10 * static_cast<unsigned>(pos + 1);
  }
  if (errno == ERANGE || (shift > 0 && (n >> (64 - shift)) != 0))
    return "must fit in 64 bits (at most 18446744073709551615 bytes), got '" + v + "'";
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  using namespace chipmesh::cli;

  CLI::App app{"chipmesh: brings up a group of accelerator chips (one process per chip) and runs work on them.",
               "chipmesh"};
  app.set_version_flag("--version", "chipmesh " CHIPMESH_VERSION_STRING);
  app.require_subcommand(1);

  DemoOptions demo_opts;
  CLI::App* demo = app.add_subcommand("demo", "the main job: bring up N chips, run allreduce, check and report");
  demo->footer(
      "Brings up N chips with inputs staged from host shared memory, runs the built-in allreduce, checks "
      "every rank's output against closed-form values and reports the bring-up time (by phase), the "
      "allreduce time, algbw, busbw (algbw * 2(n-1)/n) and the max abs error. Exit status: 0 OK, 1 a wrong "
      "result or a failure, 2 bad arguments.");
  demo->add_option("--chips", demo_opts.chips, "number of chips, one process each")
      ->check(decimal_digits_only, "DECIMAL")
      ->check(CLI::Range(1, kDemoMaxChips))
      ->capture_default_str();
  demo->add_option("--bytes", demo_opts.bytes,
                   "bytes per chip of the input (and output) buffer, a positive multiple of the element size; "
                   "suffixes like 64KiB, 1MiB are accepted")
      ->check(
          [](const std::string& v) {
            return v.find('-') == std::string::npos ? std::string() : "must be a positive size, got " + v;
          },
          "SIZE")
      ->check(size_fits_u64, "SIZE")
      ->transform(CLI::AsSizeValue(true))
      ->capture_default_str();
  demo->add_option("--dtype", demo_opts.dtype, "element type")
      ->check(CLI::IsMember(as_vector(demo_dtypes())))
      ->capture_default_str();
  demo->add_option("--mode", demo_opts.mode, "allreduce algorithm; auto: what AllreduceAlgo::AUTO (the API's default) takes, reported")
      ->check(CLI::IsMember(as_vector(demo_modes())))
      ->capture_default_str();
  demo->add_option("--op", demo_opts.op, "reduction")->check(CLI::IsMember(as_vector(demo_ops())))->capture_default_str();
  demo->add_option("--platform", demo_opts.platform, "platform name (sim, cuda) or path to a platform plugin")
      ->capture_default_str();
  demo->add_option("--iters", demo_opts.iters,
                   "timed allreduce calls (and output flushes) after one warm-up call; then as many back to back "
                   "in one run()")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  demo->add_flag("--json", demo_opts.json, "print the report as one JSON object");
  demo->add_option("--cluster", demo_opts.cluster,
                   "mpi: this is one host's demo in an MPI job (mpirun, one process per host): --chips on every "
                   "host, the allreduce over all of them; host 0 prints the report (also CHIPMESH_CLUSTER=mpi)")
      ->check(CLI::IsMember({"mpi"}));

  CleanOptions clean_opts;
  CLI::App* clean =
      app.add_subcommand("clean", "remove what dead chipmesh jobs left behind in /dev/shm (and stale rootinfo files)");
  clean->footer(
      "Removes chipmesh shared-memory objects (/dev/shm/chipmesh*) whose owning process is gone: sim "
      "communicator objects (chipmesh_<pid hex>_<token>_...) and demo staging (chipmesh_demo_<pid>_...). A "
      "live job's objects, other users' objects and objects whose owner cannot be told from their name are "
      "kept. Rootinfo files live wherever each job put them: clean only checks the ones given with "
      "--rootinfo (and their temp files next to them), removing those whose rank 0 is gone. Prints one line "
      "per object.");
  clean->add_flag("--dry-run,-n", clean_opts.dry_run, "only print what would be removed");
  clean->add_option("--rootinfo", clean_opts.rootinfo_paths,
                    "rootinfo file(s) to check: removed when their rank 0 is gone (clean only checks the "
                    "rootinfo files it is given, and their temp files)");

  BenchCommand bench = register_bench_command(app);

  EnvOptions env_opts;
  CLI::App* env = register_env_command(app, env_opts);

  // CLI11 reads an unknown word as a missing subcommand: name it instead.
  auto is_command = [&](const std::string& word) {
    for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
      if (sub->get_name() == word) return true;
    return false;
  };
  if (argc > 1 && argv[1][0] != '-' && !is_command(argv[1])) {
    std::fprintf(stderr, "chipmesh: unknown command '%s' (commands: demo, clean, bench, env; see chipmesh --help)\n", argv[1]);
    return 2;
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);  // prints help, version or the error
    return rc == 0 ? 0 : 2;
  }

  try {
    if (*demo) return run_demo(demo_opts);
    if (*clean) return run_clean(clean_opts);
    if (*bench.sub) return run_bench_command(bench);
    if (*env) return run_env(env_opts);
  } catch (const std::exception& e) {
    CHIPMESH_WARN(CLI, "chipmesh failed: %s", e.what());
    std::fprintf(stderr, "chipmesh: %s\n", e.what());
    return 1;
  }
  return 2;
}
