"""Shared fixtures of the chipmesh Python tests.

Run with the interpreter that has numpy and pytest (Debian: /usr/bin/python3)
and the build tree's package on the path:
    PYTHONPATH=build/python /usr/bin/python3 -m pytest tests/python -q
"""

import glob
import multiprocessing
import os
import pathlib
import sys
import re
import threading
import traceback

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
if not any(pathlib.Path(p, "chipmesh").is_dir() for p in sys.path if p):
    sys.path.insert(0, str(ROOT / "build" / "python"))

import chipmesh  # noqa: E402

FORK = multiprocessing.get_context("fork")


def chipmesh_shm():
    """The chipmesh* objects in /dev/shm."""
    return set(glob.glob("/dev/shm/chipmesh*"))


def _descendants(pid):
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            for k in kids:
                if k not in out:
                    out.add(k)
                    todo.append(k)
    return out


class _ProcessTree:
    """Every pid this process forked (directly or not) while it runs: sim
    names carry their creator's pid ("chipmesh_<pid hex>_..."), so objects
    of other jobs on a shared machine are told apart, as tests/support/
    leak_check.cpp does for the C++ suite."""

    def __init__(self):
        self.pids = {os.getpid()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self):
        while not self._stop.wait(0.002):
            self.pids |= _descendants(os.getpid())

    def stop(self):
        self._stop.set()
        self._thread.join()
        self.pids |= _descendants(os.getpid())

    def owns(self, path):
        name = os.path.basename(path)
        m = re.match(r"chipmesh_([0-9a-f]{8})_[0-9a-f]{8}_", name)
        if m:
            return int(m.group(1), 16) in self.pids
        return any(f"_{p}_" in name or name.endswith(f"_{p}") for p in self.pids)


@pytest.fixture(autouse=True)
def no_shm_leftovers():
    """Every test leaves no chipmesh* object in /dev/shm behind (objects of
    other jobs running on the machine at the same time are not counted)."""
    before = chipmesh_shm()
    tree = _ProcessTree()
    yield
    tree.stop()
    left = sorted(p for p in chipmesh_shm() - before if tree.owns(p))
    for p in left:
        try:
            os.unlink(p)  # so later tests start clean
        except OSError:
            pass
    assert not left, f"/dev/shm holds chipmesh objects after the test: {left}"


@pytest.fixture
def test_kernels():
    """Path of libchipmesh_test_kernels.so (kernels that fail or block on purpose)."""
    lib_dir = os.environ.get("CHIPMESH_TEST_LIB_DIR", str(ROOT / "build" / "lib"))
    path = pathlib.Path(lib_dir, "libchipmesh_test_kernels.so")
    if not path.exists():
        pytest.skip(f"{path} is not built")
    return str(path)


def _rank_main(fn, rank, queue):
    try:
        queue.put((rank, True, fn(rank)))
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        queue.put((rank, False, f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))


def run_ranks(nranks, fn, timeout=120):
    """Runs fn(rank) in nranks processes forked by multiprocessing; returns
    their results by rank, or fails the test with the first rank's error."""
    queue = FORK.Queue()
    procs = [FORK.Process(target=_rank_main, args=(fn, r, queue)) for r in range(nranks)]
    for p in procs:
        p.start()
    results = {}
    try:
        for _ in range(nranks):
            rank, ok, value = queue.get(timeout=timeout)
            if not ok:
                pytest.fail(f"rank {rank}: {value}")
            results[rank] = value
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join()
    for p in procs:
        assert p.exitcode == 0, f"rank process exited with {p.exitcode}"
    return [results[r] for r in range(nranks)]


@pytest.fixture
def ranks():
    return run_ranks
