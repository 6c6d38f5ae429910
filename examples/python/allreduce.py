#!/usr/bin/env python3
"""The allreduce harness users start from: N chips (default 2), one process
each, sum their inputs with the built-in allreduce kernel.

Per-rank inputs are numpy arrays in POSIX shared memory
(multiprocessing.shared_memory), loaded into each chip's window at bring-up
(HostBufferStaging + load_from_host); the shared memory is unlinked as soon as
init() returned. One allreduce task group runs through Worker.run(); each
chip's result comes back with copy_from into numpy and is compared with
numpy.sum. Prints OK (exit 0) or what differs (exit 1).

    python3 examples/python/allreduce.py [--chips N] [--count K] [--dtype float32|float16|int32] [--algo auto|onephase|twophase|ring]
"""

import argparse
import sys
import time
from multiprocessing import shared_memory

import numpy as np

import chipmesh


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chips", type=int, default=2)
    ap.add_argument("--count", type=int, default=1 << 16, help="elements per chip")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16", "int32"])
    ap.add_argument("--algo", default="auto", choices=["auto", "onephase", "twophase", "ring"])
    args = ap.parse_args()
    n, count, dtype = args.chips, args.count, np.dtype(args.dtype)
    nbytes = count * dtype.itemsize

    # Small integers: every partial sum is exact in every dtype.
    rng = np.random.default_rng(0)
    inputs = [rng.integers(-4, 5, count).astype(dtype) for _ in range(n)]
    shms = []
    try:
        for x in inputs:
            shm = shared_memory.SharedMemory(create=True, size=nbytes)
            np.ndarray(x.shape, dtype, buffer=shm.buf)[:] = x
            shms.append(shm)

        configs = [
            chipmesh.ChipBootstrapConfig(
                # No rootinfo_path: the chips meet in the Worker's shared memory.
                comm=chipmesh.ChipCommBootstrapConfig(rank=r, nranks=n, window_size=2 * nbytes),
                buffers=[
                    chipmesh.ChipBufferSpec("in", dtype, count, nbytes, load_from_host=True),
                    chipmesh.ChipBufferSpec("out", dtype, count, nbytes),
                ],
                host_inputs=[chipmesh.HostBufferStaging("in", shms[r].name, nbytes)],
            )
            for r in range(n)
        ]
        with chipmesh.Worker(level=3, device_ids=list(range(n)), chip_bootstrap_configs=configs) as worker:
            worker.init()
            for shm in shms:  # the chips hold the data now
                shm.close()
                shm.unlink()
            shms = []

            ctxs = worker.chip_contexts
            tasks = [chipmesh.allreduce_task(c.buffer_ptrs["in"], c.buffer_ptrs["out"], count, dtype, "sum", args.algo)
                     for c in ctxs]
            t0 = time.perf_counter()
            worker.run(lambda orch: orch.submit_group(list(range(n)), tasks))
            elapsed = time.perf_counter() - t0

            expected = np.sum(np.stack(inputs).astype(np.float64), axis=0)
            bad = 0
            for c in range(n):
                out = np.empty(count, dtype)
                worker.copy_from(c, out, ctxs[c].buffer_ptrs["out"])
                wrong = np.count_nonzero(out.astype(np.float64) != expected)
                if wrong:
                    print(f"chip {c}: {wrong} of {count} elements differ from numpy.sum", file=sys.stderr)
                    bad += wrong
        print(f"allreduce of {n} x {count} {dtype.name} ({args.algo}): bring-up "
              f"{worker.bringup_phases_ms['total']:.1f} ms, run {elapsed * 1e3:.2f} ms")
        print("FAILED" if bad else "OK")
        return 1 if bad else 0
    finally:
        for shm in shms:
            shm.close()
            shm.unlink()


if __name__ == "__main__":
    sys.exit(main())
