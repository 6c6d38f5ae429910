// Worker::run and the Orchestrator: task submission to one chip or to a group
// of chips (all-or-nothing), and waiting with first-error-wins semantics.
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <set>
#include <vector>

#include "chipmesh/worker.h"
#include "knobs/knobs.h"
#include "worker/worker_impl.h"

namespace chipmesh {

using worker::Entry;
using worker::TaskDesc;

namespace {

void check_task(const Task& t) {
  if (t.kernel.empty()) throw ConfigError("task has no kernel name");
  if (t.kernel.size() >= worker::kMaxKernelName)
    throw ConfigError("kernel name '" + t.kernel + "' is longer than " + std::to_string(worker::kMaxKernelName - 1));
  if (t.library.size() >= worker::kMaxLibraryPath)
    throw ConfigError("kernel library path is longer than " + std::to_string(worker::kMaxLibraryPath - 1));
  if (t.tensors.size() > worker::kMaxTaskTensors)
    throw ConfigError("task '" + t.kernel + "' has " + std::to_string(t.tensors.size()) + " tensors, at most " +
                      std::to_string(worker::kMaxTaskTensors));
  if (t.scalars.size() > worker::kMaxTaskScalars)
    throw ConfigError("task '" + t.kernel + "' has " + std::to_string(t.scalars.size()) + " scalars, at most " +
                      std::to_string(worker::kMaxTaskScalars));
  for (const auto& ten : t.tensors) {
    if (ten.shape.size() > CHIPMESH_KERNEL_MAX_DIMS)
      throw ConfigError("task '" + t.kernel + "': a tensor has " + std::to_string(ten.shape.size()) +
                        " dimensions, at most " + std::to_string(CHIPMESH_KERNEL_MAX_DIMS));
    dtype_size(ten.dtype);  // ConfigError for a value outside the enum
  }
}

// Stores `value` at `dst` unless it holds it already: in a stream the ring
// slot held the same request 128 requests ago, and a store would take the
// line back from the chip (which then misses on it) for nothing.
// The comparison is inlined word by word: as memcmp it was a library call
// for every tensor (80 bytes) of every task, 8 % of the samples of a
// back-to-back stream of 8-byte allreduces, on a core a chip shares.
template <typename T>
void store_if_changed(T& dst, const T& value) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) % 4 == 0, "compared in words");
  using Word = std::conditional_t<sizeof(T) % 8 == 0, uint64_t, uint32_t>;
  const auto* a = reinterpret_cast<const unsigned char*>(&dst);
  const auto* b = reinterpret_cast<const unsigned char*>(&value);
  Word diff = 0;
  for (size_t i = 0; i < sizeof(T); i += sizeof(Word)) {
    Word x, y;
    std::memcpy(&x, a + i, sizeof(Word));
    std::memcpy(&y, b + i, sizeof(Word));
    diff |= x ^ y;
  }
  if (diff != 0) std::memcpy(&dst, &value, sizeof(T));
}

// `queued`: the kernel of the task queued on this chip before (updated);
// a Worker::Impl::QueuedKernel (a template for the reason submit_tasks is).
template <typename QueuedKernel>
void encode(const Task& t, Entry& e, worker::EntryExtra& x, QueuedKernel& queued, bool repeatable) {
  store_if_changed(e.op, worker::Op::Task);
  TaskDesc& d = e.task;
  // Lengths are checked (check_task): copy with the NUL, no formatting on
  // the dispatch path; and only when the kernel changes.
  // (queued.kernel starts empty, a name no task has: check_task.)
  const uint32_t same_kernel = queued.kernel == t.kernel && queued.library == t.library ? 1 : 0;
  store_if_changed(d.same_kernel, same_kernel);
  if (!same_kernel) {
    std::memcpy(x.library, t.library.c_str(), t.library.size() + 1);
    std::memcpy(x.kernel, t.kernel.c_str(), t.kernel.size() + 1);
    queued.library = t.library;
    queued.kernel = t.kernel;
  }
  store_if_changed(d.num_tensors, static_cast<uint32_t>(t.tensors.size()));
  chipmesh_tensor* tensors = worker::task_tensors(d, x);
  for (size_t i = 0; i < t.tensors.size(); ++i) {
    chipmesh_tensor out{};
    out.addr = t.tensors[i].addr;
    out.dtype = static_cast<uint32_t>(t.tensors[i].dtype);
    out.ndim = static_cast<uint32_t>(t.tensors[i].shape.size());
    for (size_t k = 0; k < t.tensors[i].shape.size(); ++k) out.shape[k] = t.tensors[i].shape[k];
    store_if_changed(tensors[i], out);
  }
  store_if_changed(d.num_scalars, static_cast<uint32_t>(t.scalars.size()));
  uint64_t* scalars = worker::task_scalars(d, x);
  for (size_t i = 0; i < t.scalars.size(); ++i) store_if_changed(scalars[i], t.scalars[i]);
  store_if_changed(d.comm_ctx, t.comm_ctx);
  store_if_changed(d.flags, (t.flush_outputs ? worker::kTaskFlushOutputs : 0u) |
                                (repeatable ? worker::kTaskRepeatable : 0u));
}

}  // namespace

namespace {

// task_of(i) into an entry of chips[i] (i < count), all-or-nothing: first a
// free entry on every chip, then write them all, then publish them all.
// Nothing else is queued between. `repeatable`: the entries may be granted
// repeats (kTaskRepeatable, chip_shared.h).
// (Impl: Worker::Impl, deduced.)
template <typename Impl, typename TaskOf>
void queue_tasks(Impl& m, const int* chips, size_t count, TaskOf&& task_of, bool repeatable) {
  auto& entries = m.submit_entries;
  entries.clear();
  for (size_t i = 0; i < count; ++i) entries.push_back(&m.acquire_entry(static_cast<size_t>(chips[i])));
  m.throw_pending();
  for (size_t i = 0; i < count; ++i) {
    const auto c = static_cast<size_t>(chips[i]);
    encode(task_of(i), *entries[i], m.acquired_extra(c), m.queued_kernel[c], repeatable);
  }
  m.commit_group(chips, count);
}

// submit_group's body: tasks[i * stride] goes to chips[i] (i < count) (stride 0: one
// task for every chip, not copied). Nothing is allocated once the
// worker's scratch vectors have grown to the group's size.
// (A template: Worker::Impl is private to Worker and its friends, so it is
// deduced, not named.)
template <typename Impl>
void submit_tasks(Impl& m, const int* chips, size_t count, const Task* tasks, size_t stride, bool repeatable = false) {
  if (count == 0) return;
  if (++m.submit_gen == 0) {  // wrapped: old marks could match again
    std::fill(m.submit_marks.begin(), m.submit_marks.end(), 0);
    m.submit_gen = 1;
  }
  for (size_t i = 0; i < count; ++i) {
    const int c = chips[i];
    m.require_usable(c, "run");
    uint32_t& mark = m.submit_marks[static_cast<size_t>(c)];
    if (mark == m.submit_gen) throw ConfigError("submit_group: chip " + std::to_string(c) + " is listed twice");
    mark = m.submit_gen;
  }
  for (size_t i = 0; i < count; ++i) check_task(tasks[i * stride]);
  m.throw_pending();  // a group is not started after a failure
  queue_tasks(m, chips, count, [&](size_t i) -> const Task& { return tasks[i * stride]; }, repeatable);
}

}  // namespace

void Orchestrator::submit(int chip, const Task& task) { submit_tasks(*worker_.impl_, &chip, 1, &task, 0); }

void Orchestrator::submit_group(const std::vector<int>& chips, const Task& task) {
  submit_tasks(*worker_.impl_, chips.data(), chips.size(), &task, 0);
}

void Orchestrator::submit_group(const std::vector<int>& chips, const std::vector<Task>& tasks) {
  if (chips.size() != tasks.size())
    throw ConfigError("submit_group: " + std::to_string(chips.size()) + " chips but " + std::to_string(tasks.size()) +
                      " tasks");
  submit_tasks(*worker_.impl_, chips.data(), chips.size(), tasks.data(), 1);
}

void Worker::Impl::submit_repeatable(const std::vector<int>& members, const std::vector<Task>& tasks) {
  submit_tasks(*this, members.data(), members.size(), tasks.data(), 1, true);  // sized alike by the caller
}

void Worker::Impl::repeat_group(const std::vector<int>& members, const std::vector<Task>& tasks,
                                std::vector<uint32_t>& seqs) {
  // Grants only while entry seqs[i] is still the latest of every member:
  // nothing was queued on any of them since the group's last submission.
  bool latest = seqs.size() == members.size();
  for (size_t i = 0; i < members.size(); ++i) {
    require_usable(members[i], "run");
    latest = latest && next_req[static_cast<size_t>(members[i])] - 1 == seqs[i];
  }
  throw_pending();  // a group is not started after a failure
  auto& refused = repeat_refused;
  refused.clear();
  if (latest) {
    for (size_t i = 0; i < members.size(); ++i)
      if (!worker::grant_repeat(chips[static_cast<size_t>(members[i])]->repeat, seqs[i])) refused.push_back(i);
    if (refused.empty()) return;
  } else {
    for (size_t i = 0; i < members.size(); ++i) refused.push_back(i);
  }
  // The members that had finished the entry get one of their own.
  auto& refused_chips = repeat_refused_chips;
  refused_chips.clear();
  for (size_t i : refused) refused_chips.push_back(members[i]);
  try {
    queue_tasks(*this, refused_chips.data(), refused.size(), [&](size_t j) -> const Task& { return tasks[refused[j]]; },
                true);
  } catch (...) {
    // Members granted a run would wait in it for these: stop them.
    if (refused.size() != members.size()) abort_running_kernels();
    throw;
  }
  record_latest(members, seqs);
}

void Worker::Impl::record_latest(const std::vector<int>& members, std::vector<uint32_t>& seqs) const {
  seqs.resize(members.size());
  for (size_t i = 0; i < members.size(); ++i) seqs[i] = next_req[static_cast<size_t>(members[i])] - 1;
}

void Orchestrator::flush_outputs(const std::vector<int>& chips) {
  Worker::Impl& m = *worker_.impl_;
  std::set<int> seen;
  for (int c : chips) {
    m.require_usable(c, "run");
    if (!seen.insert(c).second) throw ConfigError("flush_outputs: chip " + std::to_string(c) + " is listed twice");
  }
  m.throw_pending();
  // Each chip flushes on its own (no kernel waits on a flush): no need for
  // the all-or-nothing of a group. A chip without store_to_host buffers has
  // nothing to flush and is not asked (a round trip to it, which the
  // collectives across hosts paid on every call).
  const auto& configs = m.cfg.chip_bootstrap_configs;
  auto has_outputs = [&](int c) {
    if (configs.empty()) return false;
    const auto& b = configs[static_cast<size_t>(c)].buffers;
    return std::any_of(b.begin(), b.end(), [](const ChipBufferSpec& s) { return s.store_to_host; });
  };
  std::vector<int> flushing;
  for (int c : chips)
    if (has_outputs(c)) flushing.push_back(c);
  for (int c : flushing) {
    worker::Entry& e = m.acquire_entry(c);
    e.op = worker::Op::Flush;
    e.a = flushing.size();  // how many flush at once: the chip picks its stores by it
    m.commit(c);
  }
}

void Orchestrator::wait() {
  Worker::Impl& m = *worker_.impl_;
  // Watch every chip of the run at once (run_members: no other chip has work
  // in flight): the first failure anywhere aborts the kernels still running
  // elsewhere (they may be waiting on the failed one).
  m.wait_until([&] { return m.inspect_run_members(); }, nullptr,
      [&] {  // each chip's last request (or a failure, or a death) wakes the parent
        for (int c : m.run_members)
          m.chips[static_cast<size_t>(c)]->wake_parent_at.store(m.next_req[static_cast<size_t>(c)],
                                                                 std::memory_order_seq_cst);
      },
      &m.run_members);
  m.throw_pending();
}

void Worker::run(const std::function<void(Orchestrator&)>& orch) {
  impl_->require_running("run");
  if (impl_->in_run)
    throw ConfigError("Worker::run: called from the orchestration function of a run() of the same Worker, whose "
                      "end would release that run's domains; queue the work on the Orchestrator that run() passed");
  impl_->check_interrupted("run");
  struct InRun {  // cleared however run() ends
    explicit InRun(bool& f) : flag(f) { flag = true; }
    ~InRun() { flag = false; }
    bool& flag;
  } in_run(impl_->in_run);
  for (auto* c : impl_->chips) c->abort.store(0, std::memory_order_release);
  impl_->pending_error.reset();
  ++impl_->run_gen;
  impl_->begin_run_members();
  knobs::test_pause_point("run");
  Orchestrator o(*this);
  try {
    orch(o);
    o.wait();
  } catch (...) {
    // Never leave tasks running, nor domains live, behind the caller's back.
    try {
      o.wait();
    } catch (const ChipError&) {
      // the orchestration function's own exception is the one to report
    }
    try {
      impl_->release_all_domains(false);
    } catch (...) {
      // nor does anything release_all_domains could throw replace it
    }
    throw;
  }
  impl_->release_all_domains(true);
}

}  // namespace chipmesh
