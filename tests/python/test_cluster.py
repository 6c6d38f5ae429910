"""Multi-host Workers from Python (docs/multi-host.md): two "hosts" on this
machine under mpirun, one Python process each, the hierarchical allreduce
over world(). Skips without mpirun or without MPI in chipmesh."""
import shutil
import subprocess
import sys
import textwrap

import pytest

import chipmesh

SCRIPT = textwrap.dedent(
    """
    import os, tempfile
    import numpy as np
    import chipmesh
    d = tempfile.mkdtemp()  # this host's own rootinfo directory
    cfgs = []
    for c in range(2):
        b = chipmesh.ChipBootstrapConfig()
        b.comm = chipmesh.ChipCommBootstrapConfig(rank=c, nranks=2, rootinfo_path=os.path.join(d, "ri"),
                                                  window_size=1 << 16)
        b.buffers = [chipmesh.ChipBufferSpec(name="x", dtype="int32", count=8, nbytes=32)]
        cfgs.append(b)
    with chipmesh.Worker(chip_bootstrap_configs=cfgs, cluster="mpi") as w:
        w.init()
        for c in range(2):
            w.copy_to(c, w.chip_contexts[c].buffer_ptrs["x"], np.full(8, w.global_chip(c), dtype=np.int32))
        w.run(lambda o: o.allreduce(w.world(), "x", "x", 8, "int32", "sum"))
        n = w.num_global_chips
        for c in range(2):
            out = np.zeros(8, dtype=np.int32)
            w.copy_from(c, out, w.chip_contexts[c].buffer_ptrs["x"])
            assert (out == n * (n - 1) // 2).all(), out

        # A domain across the hosts by global chip numbers: chip 1 of host 0,
        # chip 0 of host 1 (domain ranks 1 and 0); allgather of one element each.
        def across(o):
            spec = [chipmesh.ChipBufferSpec("a", "int32", 1), chipmesh.ChipBufferSpec("b", "int32", 2)]
            with o.allocate_domain("pair", [2, 1], 4096, spec) as d:
                assert d.spans_hosts and d.size == 1 and d.global_size == 2
                c = d.chips[0]
                g = d.global_rank_of(c)
                w.copy_to(c, d.context(c).buffer_ptrs["a"], np.array([100 + g], dtype=np.int32))
                o.allgather(d, "a", "b", 1, "int32")
                got = np.zeros(2, dtype=np.int32)
                w.copy_from(c, got, d.context(c).buffer_ptrs["b"])
                assert list(got) == [100, 101], got

        w.run(across)
        print(f"host {w.host_rank} of {w.num_hosts}: OK")
    os.rmdir(d)
    """
)


def test_allreduce_across_two_hosts_under_mpirun(tmp_path):
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        pytest.skip("mpirun is not installed")
    try:
        chipmesh.Worker(device_ids=[0], cluster="mpi").close()
    except ValueError as e:
        if "without MPI" in str(e):
            pytest.skip(str(e))
        raise
    script = tmp_path / "cluster_job.py"
    script.write_text(SCRIPT)
    cmd = [mpirun, "-np", "2", "--oversubscribe", "--allow-run-as-root", "--mca", "pml", "ob1", "--mca", "btl",
           "tcp,self", "--mca", "btl_tcp_if_include", "lo", "--mca", "oob_tcp_if_include", "lo", sys.executable,
           str(script)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "host 0 of 2: OK" in out and "host 1 of 2: OK" in out, out
