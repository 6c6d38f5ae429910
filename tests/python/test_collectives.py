"""The typed collectives from Python: Worker.world(), CommDomain /
DomainContext and the Orchestrator's allreduce, allgather, reduce_scatter,
broadcast, reduce, all_to_all and barrier, by buffer names and by device
addresses, in place and out of place, checked against numpy references."""

import numpy as np
import pytest

import chipmesh

C = 7  # elements per rank (per peer, per block): not a multiple of any domain size
DTYPES = ["float32", "float16", "bfloat16", "int32", "int8"]
OPS = ["sum", "prod", "max", "min"]
# Each dtype passed in another of the accepted forms.
DTYPE_FORMS = {"float32": np.float32, "float16": np.dtype("float16"), "bfloat16": chipmesh.DataType.BFLOAT16,
               "int32": "int32", "int8": np.int8}
NP = {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16, "int32": np.int32, "int8": np.int8}
REF = {"sum": np.sum, "prod": np.prod, "max": np.max, "min": np.min}


def to_bf16(a):
    return (np.asarray(a, np.float32).view(np.uint32) >> 16).astype(np.uint16)


def from_bf16(a):
    return (a.astype(np.uint32) << 16).view(np.float32)


def host(a, dtype):
    """Integer values (exact in every dtype) as the dtype's host array."""
    return to_bf16(a) if dtype == "bfloat16" else np.asarray(a, NP[dtype])


def values(a, dtype):
    """A host array of the dtype back as float64 values."""
    return (from_bf16(a) if dtype == "bfloat16" else a).astype(np.float64)


def data(n, length, op, seed):
    """Per-rank integer inputs whose reductions over n ranks are exact in
    every dtype here (int8 included)."""
    rng = np.random.default_rng(seed)
    if op == "prod":
        return [rng.choice([-2, -1, 1, 2], length) for _ in range(n)]
    return [rng.integers(-8, 9, length) for _ in range(n)]


def configs(n, tmp_path, elems=None):
    """A communicator over n chips with window buffers "a" and "b" of
    n * C 8-byte elements each (room for any dtype here)."""
    elems = n * C if elems is None else elems
    root = str(tmp_path / "rootinfo")
    size = elems * 8
    return [chipmesh.ChipBootstrapConfig(
        comm=chipmesh.ChipCommBootstrapConfig(r, n, root, 2 * size),
        buffers=[chipmesh.ChipBufferSpec("a", "int64", elems), chipmesh.ChipBufferSpec("b", "int64", elems)])
        for r in range(n)]


class Job:
    """A Worker over n chips and its world domain, with helpers to fill and
    read the members' buffers by domain rank."""

    def __init__(self, w):
        self.w = w
        self.world = w.world()
        self.n = self.world.size

    def ptr(self, rank, name):
        return self.world.context(self.world.chips[rank]).buffer_ptrs[name]

    def put(self, name, arrays):
        for r, a in enumerate(arrays):
            self.w.copy_to(self.world.chips[r], self.ptr(r, name), a)

    def get(self, rank, name, count, dtype):
        out = np.empty(count, NP[dtype])
        if count:
            self.w.copy_from(self.world.chips[rank], out, self.ptr(rank, name))
        return out

    def io(self, by_name, inplace):
        """(in_, out) of a call, by names or by address lists."""
        names = ("a", "a") if inplace else ("a", "b")
        if by_name:
            return names
        return ([self.ptr(r, names[0]) for r in range(self.n)], [self.ptr(r, names[1]) for r in range(self.n)])


@pytest.fixture(params=[1, 2, 4], ids=lambda n: f"{n}chips")
def job(request, tmp_path):
    n = request.param
    with chipmesh.Worker(level=3, chip_bootstrap_configs=configs(n, tmp_path)) as w:
        w.init()
        yield Job(w)


# (by_name, inplace): names out of place, addresses out of place, names in place, addresses in place.
MODES = [(True, False), (False, False), (True, True), (False, True)]


def rotated(i, dtype):
    """The mode of the i-th call of a test with this dtype: over the dtypes
    of a test every op (root) meets every mode, at a quarter of the calls."""
    return MODES[(i + DTYPES.index(dtype)) % len(MODES)]


def mode_id(by_name, inplace):
    return ("names" if by_name else "addrs") + (" in place" if inplace else "")


def test_world_domain(job):
    d, n = job.world, job.n
    assert (d.name, d.chips, d.size, len(d), d.allocation_id, d.released) == ("world", list(range(n)), n, n, 0, False)
    assert d == job.w.world() and hash(d) == hash(job.w.world())
    assert "world" in repr(d)
    for chip, cc in enumerate(job.w.chip_contexts):
        ctx = d.context(chip)
        assert isinstance(ctx, chipmesh.DomainContext)
        assert (ctx.chip, ctx.domain_rank, ctx.domain_size) == (chip, chip, n)
        assert (ctx.device_ctx, ctx.local_window_base, ctx.actual_window_size) == (
            cc.device_ctx, cc.local_window_base, cc.actual_window_size)
        assert ctx.buffer_ptrs == cc.buffer_ptrs and set(ctx.buffer_ptrs) == {"a", "b"}
        assert d.rank_of(chip) == chip
        assert "domain_rank" in repr(ctx)
    assert d.rank_of(n) == -1
    with pytest.raises(chipmesh.ConfigError):
        d.context(n)


def check_allreduce(job, dtype):
    n = job.n
    for i, op in enumerate(OPS):
        for by_name, inplace in [rotated(i, dtype)]:
            inputs = data(n, C, op, seed=i)
            job.put("a", [host(x, dtype) for x in inputs])
            in_, out = job.io(by_name, inplace)
            opv = op if by_name else chipmesh.parse_reduce_op(op)  # a name or a ReduceOp
            job.w.run(lambda orch: orch.allreduce(job.world, in_, out, C, DTYPE_FORMS[dtype], opv))
            expected = REF[op](np.stack(inputs), axis=0)
            for r in range(n):
                got = values(job.get(r, "a" if inplace else "b", C, dtype), dtype)
                np.testing.assert_array_equal(got, expected, err_msg=f"{op} {mode_id(by_name, inplace)} rank {r}")


def test_allreduce_algos(job):
    n, count = job.n, job.n * C  # the whole buffer
    for algo in ["onephase", chipmesh.AllreduceAlgo.TWOPHASE, "ring", chipmesh.AllreduceAlgo.AUTO]:
        inputs = data(n, count, "sum", seed=3)
        job.put("a", [host(x, "float32") for x in inputs])
        job.w.run(lambda orch: orch.allreduce(job.world, "a", "b", count, "float32", "sum", algo=algo))
        for r in range(n):
            np.testing.assert_array_equal(job.get(r, "b", count, "float32"), np.sum(np.stack(inputs), axis=0),
                                          err_msg=f"{algo} rank {r}")


def test_argument_forms_convert_alike_in_any_order(job):
    """dtypes, ops and algos are recognised by identity where that is cheap
    (enum members, the last numpy dtype); every other form must still
    convert, in any order: a numpy dtype after another, an enum made from its
    value, addresses as a tuple or a numpy array."""
    forms = [(np.float32, "float32"), (np.dtype("int32"), "int32"), (np.float32, "float32"), ("int8", "int8"),
             (chipmesh.DataType.FLOAT16, "float16"), (np.dtype("float32"), "float32"), (np.int32, "int32"),
             (chipmesh.DataType(chipmesh.DataType.INT64.value), "int64")]
    for form, name in forms:
        assert chipmesh.dtype_name(form) == name, form

    class Holder:  # numpy.dtype() reads a class's `dtype` attribute, which may change
        dtype = np.dtype("int32")
    assert chipmesh.dtype_name(Holder) == "int32"
    Holder.dtype = np.dtype("float32")
    assert chipmesh.dtype_name(Holder) == "float32"
    n, count = job.n, job.n * C
    inputs = data(n, count, "max", seed=5)
    job.put("a", [host(x, "int32") for x in inputs])
    in_ = tuple(job.ptr(r, "a") for r in range(n))
    out = np.array([job.ptr(r, "b") for r in range(n)], dtype=np.uint64)
    op, algo = chipmesh.ReduceOp(chipmesh.ReduceOp.MAX.value), chipmesh.AllreduceAlgo(chipmesh.AllreduceAlgo.RING.value)
    assert op == chipmesh.ReduceOp.MAX and op is not chipmesh.ReduceOp.MAX
    job.w.run(lambda orch: orch.allreduce(job.world, in_, out, count, np.int32, op, algo=algo))
    for r in range(n):
        np.testing.assert_array_equal(job.get(r, "b", count, "int32"), np.max(np.stack(inputs), axis=0))


def check_allgather(job, dtype):
    n = job.n
    for by_name, inplace in MODES:
        inputs = data(n, C, "sum", seed=4)
        job.put("a", [host(x, dtype) for x in inputs])
        in_, out = job.io(by_name, inplace)
        job.w.run(lambda orch: orch.allgather(job.world, in_, out, C, DTYPE_FORMS[dtype]))
        for r in range(n):
            got = values(job.get(r, "a" if inplace else "b", n * C, dtype), dtype)
            np.testing.assert_array_equal(got, np.concatenate(inputs), err_msg=f"{mode_id(by_name, inplace)} rank {r}")


def check_reduce_scatter(job, dtype):
    n = job.n
    for i, op in enumerate(OPS):
        for by_name, inplace in [rotated(i, dtype)]:
            inputs = data(n, n * C, op, seed=10 + i)
            job.put("a", [host(x, dtype) for x in inputs])
            in_, out = job.io(by_name, inplace)
            job.w.run(lambda orch: orch.reduce_scatter(job.world, in_, out, C, DTYPE_FORMS[dtype], op))
            reduced = REF[op](np.stack(inputs), axis=0)
            for r in range(n):
                got = values(job.get(r, "a" if inplace else "b", C, dtype), dtype)
                np.testing.assert_array_equal(got, reduced[r * C:(r + 1) * C],
                                              err_msg=f"{op} {mode_id(by_name, inplace)} rank {r}")


def check_broadcast(job, dtype):
    n = job.n
    for root in range(n):
        for by_name, inplace in [rotated(root, dtype)]:
            inputs = data(n, C, "sum", seed=20 + root)
            job.put("a", [host(x, dtype) for x in inputs])
            in_, out = job.io(by_name, inplace)
            job.w.run(lambda orch: orch.broadcast(job.world, in_, out, C, DTYPE_FORMS[dtype], root))
            for r in range(n):
                got = values(job.get(r, "a" if inplace else "b", C, dtype), dtype)
                np.testing.assert_array_equal(got, inputs[root],
                                              err_msg=f"root {root} {mode_id(by_name, inplace)} rank {r}")


def check_reduce(job, dtype):
    n = job.n
    for i, op in enumerate(OPS):
        root = (i + 1) % n
        for by_name, inplace in [rotated(i, dtype)]:
            inputs = data(n, C, op, seed=30 + i)
            job.put("a", [host(x, dtype) for x in inputs])
            in_, out = job.io(by_name, inplace)
            job.w.run(lambda orch: orch.reduce(job.world, in_, out, C, DTYPE_FORMS[dtype], op, root))
            got = values(job.get(root, "a" if inplace else "b", C, dtype), dtype)
            np.testing.assert_array_equal(got, REF[op](np.stack(inputs), axis=0),
                                          err_msg=f"{op} root {root} {mode_id(by_name, inplace)}")


def check_all_to_all(job, dtype):
    n = job.n
    for by_name, inplace in MODES:
        inputs = data(n, n * C, "sum", seed=40)
        job.put("a", [host(x, dtype) for x in inputs])
        in_, out = job.io(by_name, inplace)
        job.w.run(lambda orch: orch.all_to_all(job.world, in_, out, C, DTYPE_FORMS[dtype]))
        for r in range(n):
            got = values(job.get(r, "a" if inplace else "b", n * C, dtype), dtype)
            expected = np.concatenate([inputs[j][r * C:(r + 1) * C] for j in range(n)])
            np.testing.assert_array_equal(got, expected, err_msg=f"{mode_id(by_name, inplace)} rank {r}")


# One Worker per domain size and collective (bring-up dominates the time); the dtypes in a loop.
def test_allreduce(job):
    for dtype in DTYPES:
        check_allreduce(job, dtype)


def test_allgather(job):
    for dtype in ["float32", "bfloat16", "int32", "int8"]:
        check_allgather(job, dtype)


def test_reduce_scatter(job):
    for dtype in DTYPES:
        check_reduce_scatter(job, dtype)


def test_broadcast(job):
    for dtype in ["float32", "bfloat16", "int32", "int8"]:
        check_broadcast(job, dtype)


def test_reduce(job):
    for dtype in ["float32", "bfloat16", "int32", "int8"]:
        check_reduce(job, dtype)


def test_all_to_all(job):
    for dtype in ["float32", "bfloat16", "int32", "int8"]:
        check_all_to_all(job, dtype)


def test_barrier_and_several_in_one_run(job):
    """Collectives submitted in one run() are ordered as submitted; a count
    of 0 is a no-op; wait() inside the run waits for them."""
    n = job.n
    inputs = data(n, C, "sum", seed=50)
    job.put("a", [host(x, "int32") for x in inputs])

    def fn(orch):
        orch.barrier(job.world)
        orch.allreduce(job.world, "a", "b", C, "int32", chipmesh.ReduceOp.SUM)
        orch.broadcast(job.world, "b", "a", 0, "int32", 0)  # nothing moves
        orch.barrier(job.world)
        orch.allgather(job.world, "b", "a", C, "int32")
        orch.wait()

    job.w.run(fn)
    total = np.sum(np.stack(inputs), axis=0)
    for r in range(n):
        np.testing.assert_array_equal(job.get(r, "b", C, "int32"), total)
        np.testing.assert_array_equal(job.get(r, "a", n * C, "int32"), np.tile(total, n))


def test_bad_arguments(tmp_path):
    n = 2
    with chipmesh.Worker(level=3, chip_bootstrap_configs=configs(n, tmp_path)) as w:
        w.init()
        d = w.world()
        a = [d.context(c).buffer_ptrs["a"] for c in d.chips]
        b = [d.context(c).buffer_ptrs["b"] for c in d.chips]

        def fails(call, exc=chipmesh.ConfigError, match=None):
            with pytest.raises(exc, match=match):
                w.run(call)

        fails(lambda o: o.allreduce(d, a[:1], b[:1], C, "float32", "sum"), match="input")  # wrong length
        fails(lambda o: o.allgather(d, a + a, b + b, C, "float32"))
        fails(lambda o: o.all_to_all(d, a, b[:1], C, "float32"))
        fails(lambda o: o.broadcast(d, "a", "b", C, "float32", n), match="root")
        fails(lambda o: o.reduce(d, a, b, C, "float32", "sum", -1), match="root")
        fails(lambda o: o.allreduce(d, "a", "b", C, "float32", "avg"), match="unknown reduce op 'avg'")
        fails(lambda o: o.reduce_scatter(d, "a", "b", C, "float32", 3))  # an int is not a ReduceOp
        fails(lambda o: o.allreduce(d, "a", "b", C, "float32", "sum", algo="fastest"), match="allreduce algorithm")
        fails(lambda o: o.allreduce(d, "a", b, C, "float32", "sum"), match="both")  # a name and a list
        fails(lambda o: o.allreduce(d, "a", "nope", C, "float32", "sum"), match="no buffer 'nope'")
        fails(lambda o: o.allreduce(d, "a", "b", C, "complex64", "sum"))  # not a chipmesh dtype
        fails(lambda o: o.allreduce(d, "a", "b", C, "uint16", "sum"), match="uint16")  # not reducible
        fails(lambda o: o.allreduce(d, [x + 0 for x in a], b, 10 ** 6, "float32", "sum"), match="window")  # too many
        # By name, the buffer's own size bounds the count (it ran on into the next buffer).
        fails(lambda o: o.allreduce(d, "a", "b", 10 ** 6, "float32", "sum"),
              match=r"the input 'a' of chip 0 \(rank 0\) holds \d+ bytes, and 1000000 float32 elements need 4000000")
        fails(lambda o: o.allgather(d, "b", "a", 4 * C, "float32"), match="the output .a. of chip 0")
        fails(lambda o: o.allreduce(d, "a", "b", -1, "float32", "sum"), match=">= 0")
        fails(lambda o: o.allreduce(d, [-8, 0], b, C, "float32", "sum"), match="negative")
        fails(lambda o: o.allreduce(d, [2 ** 64, 0], b, C, "float32", "sum"), match="64 bits")
        fails(lambda o: o.allreduce(d, 5, b, C, "float32", "sum"), exc=TypeError)
        fails(lambda o: o.allreduce(d, ["x", 0], b, C, "float32", "sum"), exc=TypeError)
        # ConfigError is a ValueError; nothing was dispatched, so the worker still works.
        assert issubclass(chipmesh.ConfigError, ValueError)
        w.run(lambda o: o.barrier(d))


def test_collectives_on_malloc_memory_are_staged(tmp_path):
    """Device memory from Worker.malloc is moved through the window's bytes
    after the buffers (here 4 KiB) in chunks: an allreduce and an allgather
    of 100000 elements per rank (far more than the window) are exact."""
    n, count = 2, 100000
    root = str(tmp_path / "rootinfo")
    cfgs = [chipmesh.ChipBootstrapConfig(comm=chipmesh.ChipCommBootstrapConfig(r, n, root, 4096 + 64),
                                         buffers=[chipmesh.ChipBufferSpec("x", "int32", 16)]) for r in range(n)]
    with chipmesh.Worker(level=3, chip_bootstrap_configs=cfgs) as w:
        w.init()
        d = w.world()
        inputs = data(n, count, "sum", seed=50)
        src = [w.malloc(c, count * 4) for c in d.chips]
        dst = [w.malloc(c, n * count * 4) for c in d.chips]
        for r, c in enumerate(d.chips):
            w.copy_to(c, src[r], host(inputs[r], "int32"))
        w.run(lambda o: o.allgather(d, src, dst, count, "int32"))
        w.run(lambda o: o.allreduce(d, src, src, count, "int32", "sum"))
        for r, c in enumerate(d.chips):
            got = np.empty(count, np.int32)
            w.copy_from(c, got, src[r])
            np.testing.assert_array_equal(got, np.sum(np.stack(inputs), axis=0), err_msg=f"allreduce rank {r}")
            gathered = np.empty(n * count, np.int32)
            w.copy_from(c, gathered, dst[r])
            np.testing.assert_array_equal(gathered, np.concatenate(inputs), err_msg=f"allgather rank {r}")
        # An address in no allocation and outside the window is refused before dispatch.
        with pytest.raises(chipmesh.ConfigError, match="nor inside one allocation Worker::malloc returned"):
            w.run(lambda o: o.allreduce(d, [x + count * 4 for x in src], src, count, "int32", "sum"))


def test_world_without_communicator():
    with chipmesh.Worker(level=3, device_ids=[0, 1]) as w:
        with pytest.raises(chipmesh.ConfigError, match="init"):
            w.world()  # before init()
        w.init()
        with pytest.raises(chipmesh.ConfigError, match="world"):
            w.world()


def test_example_collectives():
    """examples/python/collectives.py (allgather + reduce_scatter on 4 chips) prints OK."""
    import os
    import pathlib
    import subprocess
    import sys
    example = pathlib.Path(__file__).resolve().parents[2] / "examples" / "python" / "collectives.py"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, str(example), "--count", "100"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "OK", out.stdout + out.stderr
