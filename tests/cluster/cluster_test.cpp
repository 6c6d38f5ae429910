// Multi-host Workers (docs/multi-host.md). On one host: the accessors and
// the config errors. Under mpirun (-np 2 / 3 on this machine, one process
// per "host", each with its own chips, rootinfo and job token): cluster_prog
// checks the accessors, world() and the hierarchical allreduce, and that a
// job the hosts disagree on fails on every host. Skips without MPI/mpirun.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "chipmesh/worker.h"
#include "support/leak_check.h"

using namespace chipmesh;

namespace {

WorkerConfig two_chips() {
  WorkerConfig cfg;
  cfg.device_ids = {0, 1};
  return cfg;
}

TEST(ClusterConfig, OneHostAccessors) {
  Worker w(two_chips());
  EXPECT_EQ(w.num_hosts(), 1);
  EXPECT_EQ(w.host_rank(), 0);
  EXPECT_EQ(w.num_global_chips(), 2u);
  EXPECT_EQ(w.global_chip(1), 1);
  EXPECT_THROW(w.global_chip(2), ConfigError);
  EXPECT_THROW(w.global_chip(-1), ConfigError);
}

TEST(ClusterConfig, UnknownClusterIsAConfigError) {
  WorkerConfig cfg = two_chips();
  cfg.cluster = "slurm";
  try {
    Worker w(cfg);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("'slurm'"), std::string::npos) << e.what();
  }
}

// The lines of /proc/<pid>/maps that name a file containing `part`.
std::vector<std::string> mappings_of(const std::string& pid, const std::string& part) {
  std::vector<std::string> hits;
  std::ifstream maps("/proc/" + pid + "/maps");
  for (std::string line; std::getline(maps, line);)
    if (line.find(part) != std::string::npos) hits.push_back(line);
  return hits;
}

// MPI is a plugin opened by join(): a one-host Worker and its chips (forks
// of it, which copy every mapping) hold neither libmpi nor the plugin.
TEST(ClusterPlugin, AOneHostWorkerAndItsChipsMapNoMpiLibrary) {
  chipmesh::testing::ScratchDir scratch;
  WorkerConfig cfg = two_chips();
  for (int r = 0; r < 2; ++r) {
    ChipBootstrapConfig c;
    c.comm = ChipCommBootstrapConfig{r, 2, scratch.file("rootinfo"), 4096};
    c.buffers = {ChipBufferSpec{"x", DataType::INT32, 4, 16}};
    cfg.chip_bootstrap_configs.push_back(c);
  }
  Worker w(cfg);
  w.init();
  // A collective on world() (one host: no step across hosts).
  w.run([&](Orchestrator& o) { o.allreduce(w.world(), "x", "x", 4, DataType::INT32, ReduceOp::SUM); });
  for (const std::string& pid : {std::string("self"), std::to_string(w.chip_pid(0)), std::to_string(w.chip_pid(1))}) {
    EXPECT_EQ(mappings_of(pid, "libmpi"), std::vector<std::string>{}) << "process " << pid;
    EXPECT_EQ(mappings_of(pid, "libchipmesh_cluster_mpi"), std::vector<std::string>{}) << "process " << pid;
    EXPECT_EQ(mappings_of(pid, "libopen-pal"), std::vector<std::string>{}) << "process " << pid;
  }
  // The process's first lines are there (the check reads what it thinks).
  EXPECT_FALSE(mappings_of("self", "libchipmesh").empty());
  w.close();
}

TEST(ClusterConfig, MpiNeedsMpiBuildAndInitBeforeAccessors) {
  WorkerConfig cfg = two_chips();
  cfg.cluster = "mpi";
#ifdef CHIPMESH_TEST_HAVE_MPI
  Worker w(cfg);  // joins only in init()
  EXPECT_THROW(w.num_hosts(), ConfigError);
  EXPECT_THROW(w.host_rank(), ConfigError);
#else
  try {
    Worker w(cfg);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("built without MPI"), std::string::npos) << e.what();
  }
#endif
}

#ifdef CHIPMESH_TEST_HAVE_MPI
// Runs `args` under mpirun with `np` processes on this machine, TCP over the
// loopback only; every run is bounded by timeout(1). Returns the exit status
// and the output.
int mpirun(int np, const std::string& args, std::string& out,
           const std::string& program = CHIPMESH_TEST_CLUSTER_PROG) {
  // Under AddressSanitizer the MPI processes run without LeakSanitizer: Open
  // MPI keeps allocations to exit (ompi_op_base_op_select and others, many
  // from MCA components it has dlclose()d, which no suppression can name).
  // This process and every other test keep the leak check.
  std::string env;
  if (const char* asan = std::getenv("ASAN_OPTIONS")) env = "ASAN_OPTIONS='" + std::string(asan) + ":detect_leaks=0' ";
  const std::string cmd = env + "timeout -k 5 120 " CHIPMESH_TEST_MPIEXEC " -np " + std::to_string(np) +
                          " --oversubscribe --allow-run-as-root --mca pml ob1 --mca btl tcp,self"
                          " --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo " + program +
                          " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

bool mpirun_usable(std::string& why) {
  if (access(CHIPMESH_TEST_MPIEXEC, X_OK) != 0) {
    why = "mpirun (" CHIPMESH_TEST_MPIEXEC ") is not installed";
    return false;
  }
  return true;
}

// Runs cluster_prog `mode` on `np` hosts: it must end 0 with every host OK.
void expect_every_host_ok(int np, const std::string& mode) {
  std::string out;
  const int rc = mpirun(np, mode, out);
  EXPECT_EQ(rc, 0) << out;
  for (int r = 0; r < np; ++r)
    EXPECT_NE(out.find("host " + std::to_string(r) + ": OK"), std::string::npos) << out;
  EXPECT_EQ(out.find("FAIL"), std::string::npos) << out;
}

class ClusterMpi : public ::testing::TestWithParam<int> {};

TEST_P(ClusterMpi, AccessorsWorldAndHierarchicalAllreduce) {
  std::string why;
  if (!mpirun_usable(why)) GTEST_SKIP() << why;
  expect_every_host_ok(GetParam(), "basic");
}

INSTANTIATE_TEST_SUITE_P(Hosts, ClusterMpi, ::testing::Values(2, 3));

// Every collective on world() and on domains allocated with global chips
// (spanning all hosts in reverse order, two chips of the end hosts only,
// inside one host), results checked exactly on every member of every host.
class ClusterMpiCollectives : public ::testing::TestWithParam<int> {};

TEST_P(ClusterMpiCollectives, EveryCollectiveOnWorldAndOnDomainsAcrossHosts) {
  std::string why;
  if (!mpirun_usable(why)) GTEST_SKIP() << why;
  expect_every_host_ok(GetParam(), "collectives");
}

INSTANTIATE_TEST_SUITE_P(Hosts, ClusterMpiCollectives, ::testing::Values(2, 3));

// A program that initialized MPI itself keeps it: chipmesh joins without
// MPI_Init and leaves MPI_Finalize to the program.
TEST(ClusterMpiOwnership, TheProgramsMpiInitIsTheProgramsToFinalize) {
  std::string why;
  if (!mpirun_usable(why)) GTEST_SKIP() << why;
  expect_every_host_ok(2, "owninit");
}

class ClusterMpiMismatch : public ::testing::TestWithParam<const char*> {};

TEST_P(ClusterMpiMismatch, EveryHostGetsTheSameConfigError) {
  std::string why;
  if (!mpirun_usable(why)) GTEST_SKIP() << why;
  expect_every_host_ok(2, GetParam());
}

INSTANTIATE_TEST_SUITE_P(Shapes, ClusterMpiMismatch,
                         ::testing::Values("mismatch", "window", "domainmismatch", "callmismatch"));

// A host that fails loading its platform or bringing up its chips fails
// init() on every host, and one whose chip dies fails the allreduce over
// world() on every host: its own error there, a CommError naming it
// elsewhere.
class ClusterMpiOneHostFails : public ::testing::TestWithParam<const char*> {};

TEST_P(ClusterMpiOneHostFails, EveryHostThrows) {
  std::string why;
  if (!mpirun_usable(why)) GTEST_SKIP() << why;
  expect_every_host_ok(3, GetParam());
}

INSTANTIATE_TEST_SUITE_P(Steps, ClusterMpiOneHostFails,
                         ::testing::Values("platform", "bringup", "chipdies", "badargs", "badname", "domainfails"));

// A host that stops (SIGSTOP) after init never reaches the next settled
// step: the others fail it with a CommError after CHIPMESH_COMM_TIMEOUT_S
// (2 s here) saying not every host arrived, and chipmesh aborts the MPI job
// at their exit, so mpirun ends the stopped host too and exits non-zero;
// no process of the job is left. The survivors meet in a directory before
// they exit: the first exit aborts the job, and once (CI) that ended host 0
// between its error line and its OK.
TEST(ClusterMpiDeadline, AStoppedHostFailsTheOthersWithinTheDeadlineAndNothingIsLeft) {
  std::string why;
  if (!mpirun_usable(why)) GTEST_SKIP() << why;
  std::string out;
  std::string meet = (std::filesystem::temp_directory_path() / "chipmesh_meet_XXXXXX").string();
  ASSERT_NE(mkdtemp(meet.data()), nullptr);
  const auto t0 = std::chrono::steady_clock::now();
  const int rc = mpirun(3, "hoststops", out,
                        "-x CHIPMESH_COMM_TIMEOUT_S=2 -x CHIPMESH_TEST_MEET_DIR=" + meet + " " CHIPMESH_TEST_CLUSTER_PROG);
  std::filesystem::remove_all(meet);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(rc, 0) << out;
  EXPECT_NE(out.find("host 0: OK"), std::string::npos) << out;
  EXPECT_NE(out.find("host 2: OK"), std::string::npos) << out;
  EXPECT_EQ(out.find("FAIL"), std::string::npos) << out;
  EXPECT_LT(s, 60.0) << out;
  // The stopped host and every chip are gone (chips follow their Worker).
  bool left = true;
  for (const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
       left && std::chrono::steady_clock::now() < until;) {
    left = std::system("pgrep -f 'cluster_pro[g] hoststops' >/dev/null") == 0;
    if (left) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_FALSE(left) << "processes of the job outlived it";
  std::printf("mpirun exit status %d after %.2f s\n", rc, s);
}

// `chipmesh demo` started by mpirun: one demo per host, the allreduce over
// every chip of every host; only host 0 prints the report.
TEST(ClusterMpiDemo, HostZeroReportsEveryChipOfEveryHost) {
  std::string why;
  if (!mpirun_usable(why)) GTEST_SKIP() << why;
  std::string out;
  const int rc = mpirun(2, "demo --cluster mpi --chips 2 --bytes 16KiB --iters 2 --json", out, CHIPMESH_TEST_CLI);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out.find("\"ok\":true"), out.rfind("\"ok\":true")) << "one report only:\n" << out;
  EXPECT_NE(out.find("{\"ok\":true,\"hosts\":2,\"chips\":4,"), std::string::npos) << out;
  EXPECT_NE(out.find("\"wrong_elements\":0"), std::string::npos) << out;
}

TEST(ClusterMpiDemo, SelectedByTheEnvironmentWithTextReport) {
  std::string why;
  if (!mpirun_usable(why)) GTEST_SKIP() << why;
  std::string out;
  const int rc = mpirun(3, "demo --chips 2 --bytes 4KiB --iters 1 --dtype int32 --op min", out,
                        "-x CHIPMESH_CLUSTER=mpi " CHIPMESH_TEST_CLI);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("over 6 sim chips on 3 hosts"), std::string::npos) << out;
  EXPECT_NE(out.find("(0 of 6144 elements wrong, over 6 ranks)"), std::string::npos) << out;
  EXPECT_EQ(out.find("OK\n"), out.rfind("OK\n")) << "one report only:\n" << out;
}
#endif

}  // namespace
