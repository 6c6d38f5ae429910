"""Communication domains from Python: Orchestrator.allocate_domain /
release_domain, the domain as a context manager, collectives on a domain
checked with numpy, and the errors (live name, load_from_host)."""

import numpy as np
import pytest

import chipmesh


def test_domain_context_manager_collectives_and_release():
    with chipmesh.Worker(device_ids=[0, 1, 2, 3]) as w:  # no bring-up communicator
        w.init()
        seen = {}

        def fn(orch):
            spec = [chipmesh.ChipBufferSpec("x", "int32", 6), chipmesh.ChipBufferSpec("y", "int32", 6)]
            with orch.allocate_domain("pair", [3, 1], 4096, spec) as d:
                assert d.name == "pair" and d.chips == [3, 1] and d.size == 2 and not d.released
                assert [d.context(c).domain_rank for c in (3, 1)] == [0, 1]
                with pytest.raises(chipmesh.ConfigError, match="pair"):
                    orch.allocate_domain("pair", [0, 2], 4096)
                for c, v in ((3, 1), (1, 10)):
                    w.copy_to(c, d.context(c).buffer_ptrs["x"], np.full(6, v, np.int32))
                orch.allreduce(d, "x", "y", 6, "int32", "sum")
                orch.wait()
                for c in (3, 1):
                    out = np.empty(6, np.int32)
                    w.copy_from(c, out, d.context(c).buffer_ptrs["y"])
                    np.testing.assert_array_equal(out, np.full(6, 11, np.int32))
                seen["first"] = d
            assert d.released
            orch.release_domain(d)  # idempotent
            again = orch.allocate_domain("pair", [0, 2], 4096)  # the name is free again
            assert again.allocation_id != seen["first"].allocation_id
            seen["again"] = again  # still live at the end: run() releases it

        w.run(fn)
        assert seen["again"].released


def test_domain_errors_keep_the_users_exception():
    with chipmesh.Worker(device_ids=[0, 1]) as w:
        w.init()

        def bad_buffer(orch):
            orch.allocate_domain("d", [0, 1], 4096, [chipmesh.ChipBufferSpec("x", "int8", 8, load_from_host=True)])

        with pytest.raises(chipmesh.ConfigError, match="load_from_host"):
            w.run(bad_buffer)

        def raises_inside(orch):
            with orch.allocate_domain("d", [0, 1], 4096):
                raise KeyError("mine")

        with pytest.raises(KeyError, match="mine"):
            w.run(raises_inside)
        w.run(lambda orch: orch.release_domain(orch.allocate_domain("d", [0, 1], 4096)))
