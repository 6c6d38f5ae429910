"""ChipWorker.bootstrap_context on sim, two ranks in processes forked by
multiprocessing, as per-rank harnesses are written."""

import mmap
from multiprocessing import shared_memory

import numpy as np
import pytest

import chipmesh

State = chipmesh.ChipBootstrapMailboxState
MB = chipmesh.CHIP_BOOTSTRAP_MAILBOX_SIZE


def mailboxes(n):
    return mmap.mmap(-1, MB * n)


def channel(mm, rank):
    return chipmesh.ChipBootstrapChannel(memoryview(mm)[rank * MB:(rank + 1) * MB], 8)


def test_happy_path(ranks, tmp_path):
    root = str(tmp_path / "rootinfo")
    mm = mailboxes(2)
    window = 100_000  # sim rounds it up to pages

    def rank_fn(rank):
        cw = chipmesh.ChipWorker()
        cw.init("sim")
        cfg = chipmesh.ChipBootstrapConfig(
            comm=chipmesh.ChipCommBootstrapConfig(rank, 2, root, window),
            buffers=[chipmesh.ChipBufferSpec("x", "float32", 1024, 4096)])
        res = cw.bootstrap_context(rank, cfg, channel(mm, rank))
        cw.comm_barrier(cw.bootstrap_comm)
        out = (res.device_ctx, res.local_window_base, res.actual_window_size, list(res.buffer_ptrs))
        cw.shutdown_bootstrap()
        cw.finalize()
        return out

    results = run(ranks, rank_fn)
    for rank, (ctx, base, size, ptrs) in enumerate(results):
        assert ptrs == [base]
        assert size >= window
        assert ctx != 0
        ch = channel(mm, rank)
        assert ch.state == State.SUCCESS
        assert (ch.device_ctx, ch.local_window_base, ch.actual_window_size, ch.buffer_ptrs) == (ctx, base, size, ptrs)


def run(ranks, fn):
    return ranks(2, fn)


@pytest.mark.parametrize("nbytes", [64, 16 << 20])
def test_load_from_host(ranks, tmp_path, nbytes):
    root = str(tmp_path / "rootinfo")
    count = nbytes // 4
    shms = []
    try:
        for r in range(2):
            shm = shared_memory.SharedMemory(create=True, size=nbytes)
            np.ndarray((count,), np.int32, buffer=shm.buf)[:] = np.arange(count, dtype=np.int32) * (r + 1)
            shms.append(shm)
        names = [s.name for s in shms]  # no leading '/', as multiprocessing gives them

        def rank_fn(rank):
            cw = chipmesh.ChipWorker()
            cw.init()
            cfg = chipmesh.ChipBootstrapConfig(
                comm=chipmesh.ChipCommBootstrapConfig(rank, 2, root, nbytes),
                buffers=[chipmesh.ChipBufferSpec("in", np.int32, count, nbytes, load_from_host=True)],
                host_inputs=[chipmesh.HostBufferStaging("in", names[rank], nbytes)])
            res = cw.bootstrap_context(rank, cfg)
            got = np.zeros(count, np.int32)
            cw.copy_from(got, res.buffer_ptrs[0])
            cw.shutdown_bootstrap()
            cw.finalize()
            return bool(np.array_equal(got, np.arange(count, dtype=np.int32) * (rank + 1)))

        assert run(ranks, rank_fn) == [True, True]
    finally:
        for s in shms:
            s.close()
            s.unlink()


def test_bogus_placement(tmp_path):
    mm = mailboxes(1)
    ch = channel(mm, 0)
    cw = chipmesh.ChipWorker()
    cw.init("sim")
    cfg = chipmesh.ChipBootstrapConfig(
        comm=chipmesh.ChipCommBootstrapConfig(0, 1, str(tmp_path / "rootinfo"), 4096),
        buffers=[chipmesh.ChipBufferSpec("x", "int8", 16, 16, placement="bogus")])
    with pytest.raises(ValueError, match="bogus") as info:
        cw.bootstrap_context(0, cfg, ch)
    assert isinstance(info.value, chipmesh.ConfigError)
    assert ch.state == State.ERROR
    assert ch.error_code == 1
    assert ch.error_message.startswith("ConfigError: ") and "bogus" in ch.error_message
    cw.shutdown_bootstrap()
    cw.finalize()


def test_shutdown_bootstrap_twice(tmp_path):
    cw = chipmesh.ChipWorker()
    cw.init("sim")
    cfg = chipmesh.ChipBootstrapConfig(comm=chipmesh.ChipCommBootstrapConfig(0, 1, str(tmp_path / "ri"), 4096))
    res = cw.bootstrap_context(0, cfg)
    assert res.buffer_ptrs == []
    assert cw.bootstrap_comm != 0
    cw.shutdown_bootstrap()
    cw.shutdown_bootstrap()
    assert cw.bootstrap_comm == 0
    cw.finalize()


def test_copies_and_argument_errors():
    cw = chipmesh.ChipWorker()
    cw.init()
    cw.set_device(0)
    p = cw.malloc(256)
    a = np.arange(64, dtype=np.float32)
    cw.copy_to(p, a)
    b = np.empty(64, np.float32)
    cw.copy_from(b, p)
    assert np.array_equal(a, b)
    cw.copy_to(p, b"\x01" * 16)
    ba = bytearray(16)
    cw.copy_from(ba, p, 16)
    assert ba == b"\x01" * 16
    with pytest.raises(ValueError, match="not contiguous"):
        cw.copy_to(p, a[::2])
    with pytest.raises(ValueError, match="read-only"):
        cw.copy_from(b"\x00" * 16, p)
    ro = np.zeros(4, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        cw.copy_from(ro, p)
    with pytest.raises(ValueError, match="fewer than nbytes"):
        cw.copy_to(p, a, 1000)
    with pytest.raises(ValueError, match=">= 0"):
        cw.malloc(-1)
    with pytest.raises(TypeError, match="buffer protocol"):
        cw.copy_to(p, "a string")
    cw.free(p)
    cw.finalize()


def test_config_argument_errors():
    with pytest.raises(ValueError, match="nbytes"):
        chipmesh.ChipBufferSpec("x", "float32", 4, 15)
    with pytest.raises(ValueError, match="float33"):
        chipmesh.ChipBufferSpec("x", "float33", 4)
    with pytest.raises(ValueError, match="complex64"):
        chipmesh.ChipBufferSpec("x", np.complex64, 4)
    assert chipmesh.ChipBufferSpec("x", np.float64, 4).nbytes == 32
    with pytest.raises(ValueError, match=">= 0"):
        chipmesh.ChipBufferSpec("x", "int8", -4)
    with pytest.raises(ValueError, match=">= 0"):
        chipmesh.HostBufferStaging("x", "y", -1)
    assert chipmesh.ChipBufferSpec("x", np.dtype("float16"), 4).nbytes == 8
    assert chipmesh.ChipBufferSpec("x", chipmesh.DataType.BFLOAT16, 4).nbytes == 8
    assert chipmesh.HostBufferStaging("x", "psm_1", 4).shm_name == "/psm_1"
    cfg = chipmesh.ChipBootstrapConfig(host_inputs=[chipmesh.HostBufferStaging("x", "/a", 4)])
    assert cfg.input_staging("x").shm_name == "/a"
    with pytest.raises(ValueError):
        cfg.output_staging("x")
