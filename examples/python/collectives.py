#!/usr/bin/env python3
"""The typed collectives from Python: an allgather and a reduce_scatter over
Worker.world() on N chips (default 4), by buffer names, checked with numpy.

Each chip's window holds the buffers "shard" (count elements) and "full"
(N * count). allgather collects every chip's shard into every chip's full;
reduce_scatter then sums the full buffers and hands chip r block r of the
sum (which is N times shard r). Prints OK (exit 0) or what differs (exit 1).

    python3 examples/python/collectives.py [--chips N] [--count K]
"""

import argparse
import sys

import numpy as np

import chipmesh


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chips", type=int, default=4)
    ap.add_argument("--count", type=int, default=1000, help="elements per chip")
    args = ap.parse_args()
    n, count = args.chips, args.count
    dtype = np.dtype(np.int32)
    rng = np.random.default_rng(0)
    shards = [rng.integers(-1000, 1000, count).astype(dtype) for _ in range(n)]

    configs = [
        chipmesh.ChipBootstrapConfig(
            # No rootinfo_path: the chips meet in the Worker's shared memory.
            comm=chipmesh.ChipCommBootstrapConfig(rank=r, nranks=n, window_size=(n + 1) * count * dtype.itemsize),
            buffers=[chipmesh.ChipBufferSpec("shard", dtype, count),
                     chipmesh.ChipBufferSpec("full", dtype, n * count)],
        )
        for r in range(n)
    ]
    with chipmesh.Worker(level=3, chip_bootstrap_configs=configs) as w:
        w.init()
        world = w.world()  # the bring-up communicator as a CommDomain
        for r, chip in enumerate(world.chips):
            w.copy_to(chip, world.context(chip).buffer_ptrs["shard"], shards[r])

        def collectives(orch):
            orch.allgather(world, "shard", "full", count, dtype)
            orch.reduce_scatter(world, "full", "shard", count, dtype, "sum")  # ordered after the allgather

        w.run(collectives)

        ok = True
        gathered = np.concatenate(shards)
        for r, chip in enumerate(world.chips):
            full = np.empty(n * count, dtype)
            shard = np.empty(count, dtype)
            w.copy_from(chip, full, world.context(chip).buffer_ptrs["full"])
            w.copy_from(chip, shard, world.context(chip).buffer_ptrs["shard"])
            if not np.array_equal(full, gathered):
                print(f"chip {chip}: allgather differs", file=sys.stderr)
                ok = False
            if not np.array_equal(shard, n * shards[r]):
                print(f"chip {chip}: reduce_scatter differs", file=sys.stderr)
                ok = False
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
