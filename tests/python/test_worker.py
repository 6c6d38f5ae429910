"""Worker from Python: bring-up, contexts, allreduce through run(),
failures, and Ctrl-C."""

import gc
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import chipmesh
from conftest import chipmesh_shm


def configs(n, tmp_path, count=256, dtype="float32"):
    root = str(tmp_path / "rootinfo")
    size = count * chipmesh.dtype_size(dtype)
    return [chipmesh.ChipBootstrapConfig(
        comm=chipmesh.ChipCommBootstrapConfig(r, n, root, 2 * size),
        buffers=[chipmesh.ChipBufferSpec("x", dtype, count, size), chipmesh.ChipBufferSpec("y", dtype, count, size)])
        for r in range(n)]


@pytest.mark.parametrize("n", [1, 2, 4])
def test_chip_contexts(n, tmp_path):
    with chipmesh.Worker(level=3, device_ids=list(range(n)), chip_bootstrap_configs=configs(n, tmp_path)) as w:
        w.init()
        ctxs = w.chip_contexts
        assert len(ctxs) == n
        for r, c in enumerate(ctxs):
            assert (c.device_id, c.rank, c.nranks) == (r, r, n)
            assert set(c.buffer_ptrs) == {"x", "y"}
            assert c.buffer_ptrs["x"] == c.local_window_base
            assert c.actual_window_size >= 2 * 256 * 4
        assert w.bringup_phases_ms["total"] > 0
    with pytest.raises(RuntimeError, match="after init"):
        w.chip_contexts


def test_before_init():
    w = chipmesh.Worker(device_ids=[0])
    with pytest.raises(RuntimeError, match="after init"):
        w.chip_contexts
    with pytest.raises(ValueError, match="not initialized"):
        w.malloc(0, 16)
    w.close()
    w.close()
    with pytest.raises(ValueError, match="level"):
        chipmesh.Worker(level=2, device_ids=[0])
    with pytest.raises(ValueError, match="chip_bootstrap_configs"):
        chipmesh.Worker(device_ids=[0, 1], chip_bootstrap_configs=[chipmesh.ChipBootstrapConfig()])


def test_bogus_config_on_one_chip(tmp_path):
    cfgs = configs(2, tmp_path)
    bad = cfgs[1].buffers
    bad[0].placement = "bogus"
    cfgs[1].buffers = bad
    w = chipmesh.Worker(device_ids=[0, 1], chip_bootstrap_configs=cfgs)
    with pytest.raises(chipmesh.ChipError) as info:
        w.init()
    e = info.value
    assert (e.chip, e.device_id) == (1, 1)
    assert e.pid > 0
    assert e.cause.startswith("ConfigError: ") and "bogus" in e.cause
    assert "chip 1" in str(e)
    w.close()


def to_bf16(a):
    return (np.asarray(a, np.float32).view(np.uint32) >> 16).astype(np.uint16)


def from_bf16(a):
    return (a.astype(np.uint32) << 16).view(np.float32)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "int32"])
def test_allreduce_every_mode(dtype, tmp_path):
    n, count = 3, 1000
    rng = np.random.default_rng(1)
    inputs = [rng.integers(-8, 9, count) for _ in range(n)]  # every partial sum is exact
    npdtype = {"float32": np.float32, "float16": np.float16, "int32": np.int32}.get(dtype)

    def host(a):
        return to_bf16(a) if dtype == "bfloat16" else np.asarray(a, npdtype)

    def back(a):
        return from_bf16(a) if dtype == "bfloat16" else a

    with chipmesh.Worker(device_ids=list(range(n)), chip_bootstrap_configs=configs(n, tmp_path, count, dtype)) as w:
        w.init()
        ctxs = w.chip_contexts
        for op, ref in [("sum", np.sum), ("max", np.max), ("min", np.min)]:
            for algo in ["auto", "onephase", "twophase", "ring"]:
                for c in range(n):
                    w.copy_to(c, ctxs[c].buffer_ptrs["x"], host(inputs[c]))
                tasks = [chipmesh.allreduce_task(ctxs[c].buffer_ptrs["x"], ctxs[c].buffer_ptrs["y"], count, dtype,
                                                 op, algo) for c in range(n)]
                w.run(lambda orch: orch.submit_group(list(range(n)), tasks))
                expected = ref(np.stack(inputs), axis=0)
                for c in range(n):
                    out = np.empty(count, np.uint16 if dtype == "bfloat16" else npdtype)
                    w.copy_from(c, out, ctxs[c].buffer_ptrs["y"])
                    np.testing.assert_array_equal(back(out).astype(np.float64), expected,
                                                  err_msg=f"{op} {algo} chip {c}")


def test_kernel_failure_then_close(tmp_path, test_kernels):
    w = chipmesh.Worker(device_ids=[0, 1], chip_bootstrap_configs=configs(2, tmp_path))
    w.init()
    with pytest.raises(chipmesh.ChipError, match="bad input 42") as info:
        w.run(lambda orch: orch.submit(1, chipmesh.Task("test_fail", test_kernels)))
    assert info.value.chip == 1
    assert info.value.cause.startswith("ConfigError")
    w.run(lambda orch: orch.submit_group([0, 1], chipmesh.Task("test_noop", test_kernels)))
    w.close()
    w.close()


def test_deferred_flush(tmp_path, test_kernels):
    t = chipmesh.Task("test_noop", test_kernels)
    assert t.flush_outputs is True
    t = chipmesh.Task("test_noop", test_kernels, flush_outputs=False)
    assert t.flush_outputs is False
    t.flush_outputs = True
    assert t.flush_outputs is True
    t.flush_outputs = False

    def body(orch):
        orch.submit_group([0, 1], t)
        orch.flush_outputs([0, 1])  # no store_to_host buffers: nothing to copy

    with chipmesh.Worker(device_ids=[0, 1], chip_bootstrap_configs=configs(2, tmp_path)) as w:
        w.init()
        w.run(body)
        with pytest.raises(chipmesh.ChipError, match="bad input 42"):
            w.run(lambda orch: orch.submit(1, chipmesh.Task("test_fail", test_kernels)))
        # A chip without store_to_host buffers is not asked: nothing to refuse.
        w.run(lambda orch: orch.flush_outputs([0, 1]))

    # Outputs are never flushed after a failed task, also not on request.
    cfgs = configs(2, tmp_path)
    for c in cfgs:
        c.buffers = [c.buffers[0], chipmesh.ChipBufferSpec("y", "float32", 256, 1024, store_to_host=True)]
    with chipmesh.Worker(device_ids=[0, 1], chip_bootstrap_configs=cfgs) as w:
        outs = [w.stage_output(r, "y", 1024) for r in range(2)]
        w.init()
        with pytest.raises(chipmesh.ChipError, match="bad input 42"):
            w.run(lambda orch: orch.submit(1, chipmesh.Task("test_fail", test_kernels)))
        with pytest.raises(chipmesh.ChipError, match="last task on this chip failed") as info:
            w.run(lambda orch: orch.flush_outputs([1]))
        assert info.value.chip == 1
        w.run(lambda orch: orch.flush_outputs([0]))


def test_worker_owned_staging(tmp_path):
    # stage_input / stage_output: unnamed staging the Worker owns (nothing in
    # /dev/shm); inputs loaded at bring-up, outputs flushed after a task.
    n, count = 2, 1000
    size = count * 4
    root = str(tmp_path / "rootinfo")
    cfgs = [chipmesh.ChipBootstrapConfig(
        comm=chipmesh.ChipCommBootstrapConfig(r, n, root, 3 * size),
        buffers=[chipmesh.ChipBufferSpec("x", "float32", count, size, load_from_host=True),
                 chipmesh.ChipBufferSpec("y", "float32", count, size, store_to_host=True)])
        for r in range(n)]
    before = chipmesh_shm()
    with chipmesh.Worker(device_ids=list(range(n)), chip_bootstrap_configs=cfgs) as w:
        outs = []
        for r in range(n):
            staged = w.stage_input(r, "x", size).view(np.float32)
            staged[:] = np.arange(count, dtype=np.float32) + r
            outs.append(w.stage_output(r, "y", size).view(np.float32))
        with pytest.raises(chipmesh.ConfigError, match="already staged"):
            w.stage_input(0, "x", size)
        w.init()
        assert chipmesh_shm() == before
        with pytest.raises(chipmesh.ConfigError, match="only before init"):
            w.stage_output(0, "z", 4)
        w.run(lambda orch: orch.allreduce(w.world(), "x", "y", count, "float32", "sum"))
        want = sum(np.arange(count, dtype=np.float32) + r for r in range(n))
        for r in range(n):
            np.testing.assert_array_equal(outs[r], want)


def reduce_on_two_chips(w, count):
    """Chip c's x holds c + 1; an allreduce task per chip sums the x's into
    y: both chips work (checked on chip 1)."""
    ctxs = w.chip_contexts
    for c in range(2):
        w.copy_to(c, ctxs[c].buffer_ptrs["x"], np.full(count, c + 1, np.float32))
    tasks = [chipmesh.allreduce_task(ctxs[c].buffer_ptrs["x"], ctxs[c].buffer_ptrs["y"], count, "float32", "sum")
             for c in range(2)]
    w.run(lambda orch: orch.submit_group([0, 1], tasks))
    out = np.empty(count, np.float32)
    w.copy_from(1, out, ctxs[1].buffer_ptrs["y"])
    np.testing.assert_array_equal(out, np.full(count, 3, np.float32))


def page_alone(addr):
    """Whether this process alone maps the page of `addr` (pagemap bit 56)."""
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(addr // os.sysconf("SC_PAGE_SIZE") * 8)
        return bool(int.from_bytes(f.read(8), "little") >> 56 & 1)


def test_exclude_from_chips(tmp_path):
    """An array left out of the chips' forks stays this process's alone (its
    next write is no copy-on-write), one that is not is shared with the
    chips; the chips still work, and the mistakes are errors."""
    count = 256
    excluded = np.full(1 << 20, 7, np.uint8)  # 1 MiB: 4 KiB pages, written before init()
    other = np.full(1 << 20, 7, np.uint8)
    middle = excluded.nbytes // 2
    assert page_alone(excluded.ctypes.data + middle) and page_alone(other.ctypes.data + middle)
    with chipmesh.Worker(device_ids=[0, 1], chip_bootstrap_configs=configs(2, tmp_path, count)) as w:
        w.exclude_from_chips(excluded)
        with pytest.raises(ValueError, match="nbytes is required"):
            w.exclude_from_chips(excluded.ctypes.data)
        with pytest.raises(TypeError, match="buffer protocol"):
            w.exclude_from_chips("not memory")
        with pytest.raises(ValueError, match="is empty"):
            w.exclude_from_chips(excluded.ctypes.data, 0)
        w.init()
        assert page_alone(excluded.ctypes.data + middle)
        assert not page_alone(other.ctypes.data + middle)
        with pytest.raises(ValueError, match="before init"):
            w.exclude_from_chips(other)
        reduce_on_two_chips(w, count)
        excluded[:] = 9
        assert (excluded == 9).all()


def test_init_on_a_thread_that_ends(tmp_path):
    """The chips are forked by a thread of the Worker's own: init() on a
    helper thread that ends leaves chips that work (a chip's parent-death
    signal follows the thread that forked it)."""
    count = 256
    with chipmesh.Worker(device_ids=[0, 1], chip_bootstrap_configs=configs(2, tmp_path, count)) as w:
        tids = []

        def bring_up():
            tids.append(threading.get_native_id())
            w.init()

        t = threading.Thread(target=bring_up)
        t.start()
        t.join()
        # join() returns before the thread's exit is through (the parent-death
        # signals go out later in it); once its /proc entry is gone it is.
        entry = f"/proc/self/task/{tids[0]}"
        deadline = time.monotonic() + 30
        while os.path.exists(entry) and time.monotonic() < deadline:
            os.sched_yield()
        assert not os.path.exists(entry), "the thread that called init() did not end within 30 s"
        reduce_on_two_chips(w, count)


def test_a_forked_child_leaves_the_workers_chips_alone(tmp_path):
    """A Worker belongs to the process that made it: in an os.fork() child
    its calls raise ConfigError, and the child's copy going away (as at its
    interpreter's exit) neither closes nor kills the parent's chips."""
    count = 256
    with chipmesh.Worker(device_ids=[0, 1], chip_bootstrap_configs=configs(2, tmp_path, count)) as w:
        w.init()
        pid = os.fork()
        if pid == 0:  # the child: report through the exit status only
            ok = False
            try:
                w.run(lambda orch: None)
            except chipmesh.ConfigError as e:
                ok = "is a fork of the one that created the Worker" in str(e)
            except BaseException:
                pass
            try:
                w.close()
                del w
                gc.collect()
            finally:
                os._exit(0 if ok else 1)
        fd = os.pidfd_open(pid)
        exited = select.select([fd], [], [], 60)[0]  # readable once the child has exited
        os.close(fd)
        if not exited:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert exited, "the child's copy of the Worker kept it from exiting for 60 s"
        assert os.waitstatus_to_exitcode(status) == 0, "the child's calls did not raise the ConfigError"
        reduce_on_two_chips(w, count)


def test_threads_sharing_a_worker_take_turns(tmp_path):
    """Calls from several threads run one at a time (run() with its whole
    function): they used to race on the Worker's state and abort the
    interpreter."""
    count = 4096
    errors = []
    with chipmesh.Worker(device_ids=[0, 1], chip_bootstrap_configs=configs(2, tmp_path, count)) as w:
        w.init()
        ctx = w.chip_contexts

        def reduce_in_a_loop():
            try:
                for _ in range(300):
                    w.run(lambda o: o.allreduce(w.world(), "x", "y", count, "float32", "sum"))
            except BaseException as e:
                errors.append(e)

        def copy_in_a_loop(chip):  # the only writer of this chip's x (the allreduce writes y)
            try:
                for i in range(300):
                    data = np.full(count, 1000 * chip + i, np.float32)
                    w.copy_to(chip, ctx[chip].buffer_ptrs["x"], data)
                    back = np.empty(count, np.float32)
                    w.copy_from(chip, back, ctx[chip].buffer_ptrs["x"])
                    np.testing.assert_array_equal(back, data)
                    p = w.malloc(chip, 4096)
                    w.free(chip, p)
                    assert len(w.chip_contexts) == 2
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=reduce_in_a_loop)] + [
            threading.Thread(target=copy_in_a_loop, args=(chip,)) for chip in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads)
        assert not errors, errors
        reduce_on_two_chips(w, count)


def test_orchestrator_from_another_thread_is_refused(tmp_path):
    seen = []
    with chipmesh.Worker(device_ids=[0, 1]) as w:
        w.init()

        def orch(o):
            def elsewhere():
                try:
                    o.wait()
                except chipmesh.Error as e:
                    seen.append(str(e))
            t = threading.Thread(target=elsewhere)
            t.start()
            t.join(60)

        w.run(orch)
    assert len(seen) == 1 and "from another thread than the one in its run()" in seen[0], seen


def test_a_child_forked_while_another_thread_holds_the_worker_does_not_wait_for_it(tmp_path):
    """os.fork() while run() on another thread holds the Worker: the child's
    calls raise at once (a Worker belongs to its creator) instead of waiting
    for a lock nobody in the child will release."""
    inside, leave = threading.Event(), threading.Event()
    with chipmesh.Worker(device_ids=[0, 1]) as w:
        w.init()
        t = threading.Thread(target=lambda: w.run(lambda o: (inside.set(), leave.wait(60))))
        t.start()
        assert inside.wait(60)
        pid = os.fork()
        if pid == 0:
            ok = False
            try:
                w.malloc(0, 64)
            except chipmesh.ConfigError as e:
                ok = "is a fork of the one that created the Worker" in str(e)
            except BaseException:
                pass
            os._exit(0 if ok else 1)
        fd = os.pidfd_open(pid)
        exited = select.select([fd], [], [], 60)[0]
        os.close(fd)
        if not exited:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        leave.set()
        t.join(60)
        assert exited, "the child waited for the Worker's lock"
        assert os.waitstatus_to_exitcode(status) == 0, "the child's call did not raise the ConfigError"


def test_orchestrator_after_run(tmp_path):
    kept = []
    with chipmesh.Worker(device_ids=[0]) as w:
        w.init()
        w.run(kept.append)
        with pytest.raises(chipmesh.Error, match="after its run"):
            kept[0].wait()
        with pytest.raises(ZeroDivisionError):
            w.run(lambda orch: 1 / 0)


def test_run_and_close_inside_a_run_are_refused(tmp_path):
    # close() there used to unmap what the run still used: a segfault.
    with chipmesh.Worker(device_ids=[0, 1]) as w:
        w.init()

        def orch(o):
            d = o.allocate_domain(name="pair", chips=[0, 1], window_size=4096)
            with pytest.raises(chipmesh.ConfigError, match="Worker::run: called from the orchestration function"):
                w.run(lambda inner: None)
            with pytest.raises(chipmesh.ConfigError, match="Worker::close: called from the orchestration function"):
                w.close()
            assert not d.released
            o.barrier(d)

        w.run(orch)
        w.run(lambda o: None)  # the Worker goes on
    assert not chipmesh_shm()


def test_keyboard_interrupt_during_run(tmp_path, test_kernels):
    r, wfd = os.pipe()
    w = chipmesh.Worker(device_ids=[0, 1], chip_bootstrap_configs=configs(2, tmp_path))
    w.init()
    pids = {w.chip_pid(c) for c in range(2)}

    def ours():  # the job's objects (the sim names carry their creator's pid)
        return {p for p in chipmesh_shm() if any(f"chipmesh_{pid:08x}_" in p for pid in pids)}

    def ctrl_c():
        os.read(r, 1)  # a kernel started
        os.kill(os.getpid(), signal.SIGINT)

    t = threading.Thread(target=ctrl_c)
    t.start()
    task = chipmesh.Task("test_block", test_kernels, scalars=[wfd])
    with pytest.raises(KeyboardInterrupt):
        w.run(lambda orch: orch.submit_group([0, 1], task))
    t.join()
    os.close(r)
    os.close(wfd)
    assert not ours()
    with pytest.raises(ValueError, match="closed"):
        w.run(lambda orch: None)
    w.close()


def test_keyboard_interrupt_during_init(tmp_path):
    # The chips pause in comm_init (a test hook read once per process, so in
    # a fresh interpreter); Ctrl-C must end init() with KeyboardInterrupt.
    script = textwrap.dedent(f"""
        import glob, os, signal, threading, time, chipmesh
        root = {str(tmp_path / "rootinfo")!r}
        cfgs = [chipmesh.ChipBootstrapConfig(comm=chipmesh.ChipCommBootstrapConfig(r, 2, root, 4096)) for r in range(2)]
        w = chipmesh.Worker(device_ids=[0, 1], chip_bootstrap_configs=cfgs)
        before = set(glob.glob("/dev/shm/chipmesh*"))  # only what this job makes counts
        threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
        t0 = time.monotonic()
        try:
            w.init()
            print("init returned")
        except KeyboardInterrupt:
            print("KeyboardInterrupt after %.1f s" % (time.monotonic() - t0))
        w.close()
        print("left:", sorted(set(glob.glob("/dev/shm/chipmesh*")) - before))
    """)
    env = dict(os.environ, CHIPMESH_TEST_PAUSE_AT="comm_init", PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert "KeyboardInterrupt after" in out.stdout, out.stdout + out.stderr
    assert "left: []" in out.stdout, out.stdout + out.stderr


def test_keyboard_interrupt_in_a_child_forked_from_a_helper_thread(tmp_path):
    # os.fork() from a helper thread makes that thread the child's main
    # thread, and the child has no watcher thread: the binding caches both
    # per process and must read them again there, or Ctrl-C in the child
    # waits for init() (paused in comm_init until the bootstrap timeout).
    script = textwrap.dedent(f"""
        import os, signal, sys, threading, time, chipmesh
        root = {str(tmp_path / "rootinfo")!r}
        with chipmesh.Worker(device_ids=[0]) as w:  # the parent's watcher, and its main thread, cached
            w.init()
            w.run(lambda orch: None)
        child = []
        def fork():
            pid = os.fork()
            if pid:
                child.append(pid)
                return
            cfgs = [chipmesh.ChipBootstrapConfig(comm=chipmesh.ChipCommBootstrapConfig(r, 2, root, 4096))
                    for r in range(2)]
            w = chipmesh.Worker(device_ids=[0, 1], chip_bootstrap_configs=cfgs, bootstrap_timeout_s=30)
            threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
            t0 = time.monotonic()
            try:
                w.init()
                print("init returned", flush=True)
            except KeyboardInterrupt:
                print("KeyboardInterrupt after %.1f s" % (time.monotonic() - t0), flush=True)
            except BaseException as e:
                print("init raised", repr(e), flush=True)
            w.close()
            os._exit(0)
        t = threading.Thread(target=fork)
        t.start()
        t.join()
        _, status = os.waitpid(child[0], 0)
        print("child exit", os.waitstatus_to_exitcode(status))
    """)
    env = dict(os.environ, CHIPMESH_TEST_PAUSE_AT="comm_init", PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert "KeyboardInterrupt after" in out.stdout, out.stdout + out.stderr
    assert float(out.stdout.split("KeyboardInterrupt after ")[1].split()[0]) < 20, out.stdout
    assert "child exit 0" in out.stdout, out.stdout + out.stderr


def test_run_restores_the_programs_own_signal_wakeup_fd():
    # init() and run() put their pipe in as Python's wakeup fd and give the
    # program's back after each call; no fd set stays none.
    r, wfd = os.pipe()
    os.set_blocking(wfd, False)
    with chipmesh.Worker(device_ids=[0]) as w:
        w.init()
        assert signal.set_wakeup_fd(-1) == -1
        w.run(lambda orch: None)
        assert signal.set_wakeup_fd(wfd) == -1
        w.run(lambda orch: None)
        assert signal.set_wakeup_fd(-1) == wfd
    os.close(r)
    os.close(wfd)


def test_worker_copies_validate(tmp_path):
    with chipmesh.Worker(device_ids=[0]) as w:
        w.init()
        p = w.malloc(0, 64)
        with pytest.raises(ValueError, match="fewer than nbytes"):
            w.copy_to(0, p, np.zeros(4, np.int8), 64)
        with pytest.raises(ValueError, match="not contiguous"):
            w.copy_from(0, np.zeros((4, 4), np.int32)[:, 1], p)
        with pytest.raises(ValueError, match=">= 0"):
            w.malloc(0, -5)
        w.free(0, p)


def test_one_host_accessors_and_cluster_choice():
    # Multi-host jobs (docs/multi-host.md): on one host the accessors are
    # the trivial ones; the cluster choice is checked when the Worker is made.
    w = chipmesh.Worker(device_ids=[0, 1])
    assert (w.num_hosts, w.host_rank, w.num_global_chips) == (1, 0, 2)
    assert w.global_chip(1) == 1
    with pytest.raises(ValueError, match="not one of this host"):
        w.global_chip(2)
    w.close()
    with pytest.raises(ValueError, match="'slurm'"):
        chipmesh.Worker(device_ids=[0], cluster="slurm")
