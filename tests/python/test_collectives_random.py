"""Random calls of the typed collectives against numpy, and nothing written
outside each call's outputs.

The grid tests (test_collectives.py, the C++ suites) take every collective,
dtype and op over whole worlds with every rank in place or every rank out of
place. Here each call draws what they do not combine: a domain over a random
subset of the chips in random order, each rank in place or not on its own
(allgather and reduce_scatter also in the NCCL forms), data in the domain's
window or in Worker.malloc memory moved through a small staging area,
counts from 0 to past many chunks, any root, and repeats of one call in one
run. Each malloc'd buffer sits between guard bytes, and every byte of a
rank's memory but its output must come back as it was (an in-place rank's
input may be rewritten). Seeds are fixed: a failure names its call and
replays."""

import random

import numpy as np
import pytest

import chipmesh

COLLECTIVES = ["allreduce", "allgather", "reduce_scatter", "broadcast", "reduce", "all_to_all"]
DTYPES = [np.int8, np.uint8, np.int32, np.int64, np.float16, np.float32, np.float64]
OPS = ["sum", "prod", "max", "min"]
GUARD = 256  # bytes on each side of a malloc'd buffer that no call may write


def draw_count(rng):
    k = rng.random()
    if k < 0.1:
        return 0
    if k < 0.2:
        return 1
    if k < 0.6:
        return rng.randint(2, 200)
    if k < 0.95:
        return rng.randint(200, 40000)
    return rng.randint(40000, 300000)  # many chunks of a small staging area


def draw_inputs(rng, n, length, dtype, op):
    """Small integers: every fold over up to 8 ranks is exact in every dtype
    here (int8 and float16 included); products wrap as integers do."""
    g = np.random.default_rng(rng.randrange(1 << 30))
    if op == "prod":
        arrays = [g.choice([-1, 1, 1, 2], length) for _ in range(n)]
    else:
        arrays = [g.integers(-8, 9, length) for _ in range(n)]
    if np.dtype(dtype).kind == "u":
        arrays = [np.abs(a) for a in arrays]
    return [a.astype(dtype) for a in arrays]


def fold(arrays, op, dtype):
    """The left fold in rank order, wrapping as the dtype does."""
    out = arrays[0].copy()
    for a in arrays[1:]:
        if op == "sum":
            out = (out + a).astype(dtype)
        elif op == "prod":
            out = (out * a).astype(dtype)
        elif op == "max":
            out = np.maximum(out, a)
        else:
            out = np.minimum(out, a)
    return out


class Call:
    """One drawn call: what it is, where each rank's input and output lie
    in that rank's region, and what every rank's output must hold."""

    def __init__(self, rng, nchips):
        self.n = rng.randint(1, nchips)
        self.chips = rng.sample(range(nchips), self.n)
        self.coll = rng.choice(COLLECTIVES)
        self.dtype = np.dtype(rng.choice(DTYPES))
        self.op = rng.choice(OPS)
        self.count = draw_count(rng)
        self.root = rng.randrange(self.n)
        self.algo = rng.choice(["auto", "onephase", "twophase", "ring"])
        self.staged = rng.random() < 0.6
        self.window = rng.choice([4096, 8192, 65536]) + rng.randrange(0, 4096, 64)
        n, c = self.n, self.count
        self.n_in, self.n_out = {"allgather": (c, n * c), "reduce_scatter": (n * c, c),
                                 "all_to_all": (n * c, n * c)}.get(self.coll, (c, c))
        self.modes = [self._draw_mode(rng) for _ in range(n)]
        if self.coll == "allreduce" and not self.staged:
            self.modes = [self.modes[0]] * n  # in the windows allreduce needs one offset on every rank
        self.repeats = 1
        same = all(m is None for m in self.modes) or (self.coll == "allreduce" and set(self.modes) == {"literal"})
        if rng.random() < 0.3 and same:  # each repeat reads what the last one left
            self.repeats = rng.randint(2, 4)
        reducing = self.coll in ("allreduce", "reduce_scatter", "reduce")
        self.inputs = draw_inputs(rng, n, self.n_in, self.dtype, self.op if reducing else "sum")

    def _draw_mode(self, rng):
        if rng.random() >= 0.35:
            return None  # out of place
        if self.coll in ("allgather", "reduce_scatter") and rng.random() < 0.5:
            return "nccl"  # allgather: in == out + rank * count; reduce_scatter: out == in + rank * count
        return "literal"  # in == out

    def __repr__(self):
        return (f"{self.coll}(chips={self.chips}, dtype={self.dtype.name}, op={self.op}, count={self.count}, "
                f"root={self.root}, algo={self.algo}, staged={self.staged}, window={self.window}, "
                f"in_place={self.modes}, repeats={self.repeats})")

    def region_bytes(self, r):
        """A rank's input and output: side by side, or overlapping in place."""
        es = self.dtype.itemsize
        return (self.n_in + self.n_out) * es if self.modes[r] is None else max(self.n_in, self.n_out) * es

    def offsets(self, r):
        """(input, output) offsets in rank r's region."""
        es, m = self.dtype.itemsize, self.modes[r]
        if m is None:
            return 0, self.n_in * es
        if m == "literal":
            return 0, 0
        if self.coll == "allgather":
            return r * self.count * es, 0
        return 0, r * self.count * es

    def expected(self):
        """Every rank's output after the call's repeats (None: left alone)."""
        n, c, ins = self.n, self.count, self.inputs
        if self.coll == "allreduce":
            # Repeated in place, each call reduces what the last one left.
            for _ in range(self.repeats if self.modes[0] == "literal" else 1):
                ins = [fold(ins, self.op, self.dtype)] * n
            return ins
        if self.coll == "allgather":
            return [np.concatenate(ins)] * n
        if self.coll == "reduce_scatter":
            full = fold(ins, self.op, self.dtype)
            return [full[r * c:(r + 1) * c] for r in range(n)]
        if self.coll == "broadcast":
            return [ins[self.root]] * n
        if self.coll == "reduce":
            return [fold(ins, self.op, self.dtype) if r == self.root else None for r in range(n)]
        return [np.concatenate([ins[j][r * c:(r + 1) * c] for j in range(n)]) for r in range(n)]

    def submit(self, orch, domain, ins, outs):
        dt = self.dtype
        for _ in range(self.repeats):
            if self.coll == "allreduce":
                orch.allreduce(domain, ins, outs, self.count, dt, self.op, self.algo)
            elif self.coll == "allgather":
                orch.allgather(domain, ins, outs, self.count, dt)
            elif self.coll == "reduce_scatter":
                orch.reduce_scatter(domain, ins, outs, self.count, dt, self.op)
            elif self.coll == "broadcast":
                orch.broadcast(domain, ins, outs, self.count, dt, self.root)
            elif self.coll == "reduce":
                orch.reduce(domain, ins, outs, self.count, dt, self.op, self.root)
            else:
                orch.all_to_all(domain, ins, outs, self.count, dt)


def run_and_check(w, call, rng):
    """Runs the call in a domain of its own; returns one message per rank
    whose memory differs from what it should hold."""
    guard = GUARD if call.staged else 0
    sizes = [call.region_bytes(r) + 2 * guard for r in range(call.n)]
    allocations = []
    seen = {}

    def body(orch):
        if call.staged:
            domain = orch.allocate_domain("random", call.chips, call.window)
            starts = []
            for c, nbytes in zip(call.chips, sizes):
                allocations.append((c, w.malloc(c, nbytes)))
                starts.append(allocations[-1][1])
        else:
            spec = chipmesh.ChipBufferSpec("region", np.uint8, max(1, max(sizes)))
            domain = orch.allocate_domain("random", call.chips, call.window + max(sizes), buffers=[spec])
            starts = [domain.context(c).buffer_ptrs["region"] for c in call.chips]
        ins, outs = [], []
        for r, c in enumerate(call.chips):
            # Random bytes everywhere, the input over them.
            before = np.frombuffer(rng.randbytes(sizes[r]), np.uint8).copy()
            at_in, at_out = (guard + o for o in call.offsets(r))
            raw = call.inputs[r].view(np.uint8)
            before[at_in:at_in + raw.size] = raw
            if sizes[r]:
                w.copy_to(c, starts[r], before)
            seen[r] = [before, None, at_out]
            ins.append(starts[r] + at_in)
            outs.append(starts[r] + at_out)
        call.submit(orch, domain, ins, outs)
        orch.wait()
        for r, c in enumerate(call.chips):
            after = np.empty(sizes[r], np.uint8)
            if sizes[r]:
                w.copy_from(c, after, starts[r])
            seen[r][1] = after
        orch.release_domain(domain)

    try:
        w.run(body)
    finally:
        for c, p in allocations:
            w.free(c, p)
    problems = []
    for r, want_out in enumerate(call.expected()):
        before, after, at_out = seen[r]
        want = before.copy()
        mine = np.zeros(want.size, bool)  # the bytes this rank's output covers
        if want_out is not None:
            raw = np.ascontiguousarray(want_out, call.dtype).view(np.uint8)
            want[at_out:at_out + raw.size] = raw
            mine[at_out:at_out + raw.size] = True
        if call.modes[r] is not None:  # an in-place rank's input may be rewritten outside its output
            free = np.zeros(want.size, bool)
            free[guard:guard + call.region_bytes(r)] = True
            free &= ~mine
            after = np.where(free, want, after)
        differ = np.flatnonzero(after != want)
        if differ.size:
            where = "output" if mine[differ[0]] else "memory outside the output"
            problems.append(f"rank {r} (chip {call.chips[r]}): {differ.size} bytes differ, first at byte "
                            f"{differ[0]} of {want.size} ({where}; output at {at_out})")
    return problems


@pytest.mark.parametrize("seed,nchips", [(1, 3), (2, 5), (3, 8)])
def test_random_calls_match_numpy_and_write_only_their_outputs(seed, nchips):
    rng = random.Random(seed)
    with chipmesh.Worker(level=3, device_ids=list(range(nchips))) as w:
        w.init()
        for i in range(100):
            call = Call(rng, nchips)
            problems = run_and_check(w, call, rng)
            assert not problems, f"seed {seed}, call {i}: {call}:\n" + "\n".join(problems)
