#!/usr/bin/env bash
# Installs this build into a scratch prefix and uses the installed Python
# package from another directory, with only its parent on PYTHONPATH: it must
# import from the prefix, find libchipmesh, the sim platform and the built-in
# kernels there (no CHIPMESH_* variables), run a Worker, and run the example.
#   install_check.sh BUILD_DIR PYTHON EXAMPLE
set -euo pipefail
build="$1"
python="$2"
example="$3"

scratch="$(mktemp -d "${TMPDIR:-/tmp}/chipmesh-pyinstall.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
prefix="$scratch/prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null

pkg="$(find "$prefix/lib" -name __init__.py -path '*/chipmesh/__init__.py' | head -1)"
[[ -n "$pkg" ]] || { echo "install_check: no chipmesh/__init__.py under $prefix/lib" >&2; exit 1; }
site="$(dirname "$(dirname "$pkg")")"
echo "install_check: package installed in ${site#"$prefix"/}"

mkdir "$scratch/elsewhere"
cd "$scratch/elsewhere"
unset CHIPMESH_PLATFORM_PATH CHIPMESH_TEST_LIB_DIR
export PYTHONPATH="$site"
"$python" - "$prefix" <<'PY'
import sys
import numpy as np
import chipmesh

prefix = sys.argv[1]
assert chipmesh.__file__.startswith(prefix), chipmesh.__file__
cfgs = [chipmesh.ChipBootstrapConfig(
    comm=chipmesh.ChipCommBootstrapConfig(r, 2, "rootinfo", 4096),
    buffers=[chipmesh.ChipBufferSpec("x", "float32", 256), chipmesh.ChipBufferSpec("y", "float32", 256)])
    for r in range(2)]
with chipmesh.Worker(device_ids=[0, 1], chip_bootstrap_configs=cfgs) as w:
    w.init()
    ptrs = [c.buffer_ptrs["x"] for c in w.chip_contexts]
    outs = [c.buffer_ptrs["y"] for c in w.chip_contexts]
    for c in range(2):
        w.copy_to(c, ptrs[c], np.full(256, c + 1, np.float32))
    w.run(lambda o: o.submit_group([0, 1], [chipmesh.allreduce_task(p, q, 256, "float32", "sum") for p, q in zip(ptrs, outs)]))
    out = np.zeros(256, np.float32)
    w.copy_from(1, out, outs[1])
    assert (out == 3).all(), out
maps = open("/proc/self/maps").read()
libs = {l.split()[-1] for l in maps.splitlines() if "libchipmesh" in l}
assert libs and all(l.startswith(prefix) for l in libs), libs
print("install_check: Worker OK with", sorted(libs))
PY
"$python" "$example" --chips 2 | tail -1
