#!/usr/bin/env python3
"""What the Python layer costs: the time of `import chipmesh`, of
Worker.init() for 4 sim chips and of one empty run(), next to the same from
C++ (build/bin/chipmesh_overhead_cpp). Medians; run on an idle machine.

    PYTHONPATH=build/python /usr/bin/python3 python/bench/overhead.py [--chips 4] [--reps 5] [--runs 200]
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chips", type=int, default=4)
    ap.add_argument("--reps", type=int, default=5, help="Worker.init() repetitions")
    ap.add_argument("--runs", type=int, default=200, help="empty run() repetitions")
    ap.add_argument("--cpp", default=str(ROOT / "build" / "bin" / "chipmesh_overhead_cpp"))
    args = ap.parse_args()

    # import chipmesh, in fresh interpreters (numpy is imported by neither).
    code = "import time; t = time.perf_counter(); import chipmesh; print(time.perf_counter() - t)"
    imports = [float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                                    env=os.environ).stdout) * 1e3 for _ in range(5)]

    import chipmesh

    init_ms, run_us = [], []
    for r in range(args.reps):
        with chipmesh.Worker(device_ids=list(range(args.chips))) as w:
            t = time.perf_counter()
            w.init()
            init_ms.append((time.perf_counter() - t) * 1e3)
            if r == 0:
                w.run(lambda orch: None)  # warm-up
                for _ in range(args.runs):
                    t = time.perf_counter()
                    w.run(lambda orch: None)
                    run_us.append((time.perf_counter() - t) * 1e6)

    cpp = json.loads(subprocess.run([args.cpp, str(args.chips), str(args.reps), str(args.runs)], check=True,
                                    capture_output=True, text=True).stdout)
    med = statistics.median
    print(f"import chipmesh:                 {med(imports):8.2f} ms")
    print(f"Worker.init() {args.chips} chips  Python {med(init_ms):8.2f} ms   C++ {med(cpp['init_ms']):8.2f} ms")
    print(f"empty run()            Python {med(run_us):8.2f} us   C++ {med(cpp['empty_run_us']):8.2f} us")


if __name__ == "__main__":
    main()
