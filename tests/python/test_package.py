"""The package itself: public names, docstrings, errors by kind."""

import builtins

import chipmesh


def test_every_public_name_has_a_docstring():
    for name in chipmesh.__all__:
        obj = getattr(chipmesh, name)
        if callable(obj):
            assert (obj.__doc__ or "").strip(), name


def test_error_hierarchy():
    assert issubclass(chipmesh.Error, RuntimeError)
    assert issubclass(chipmesh.ConfigError, ValueError)
    assert issubclass(chipmesh.TimeoutError, builtins.TimeoutError)
    for cls in (chipmesh.ConfigError, chipmesh.CommError, chipmesh.DeviceError, chipmesh.TimeoutError,
                chipmesh.ChipError):
        assert issubclass(cls, chipmesh.Error)


def test_unknown_platform_is_a_device_error():
    cw = chipmesh.ChipWorker()
    try:
        cw.init("nonexistent")
    except chipmesh.DeviceError as e:
        assert "nonexistent" in str(e)
    else:
        raise AssertionError("no DeviceError")


def test_names_and_enums():
    assert chipmesh.dtype_size("bfloat16") == 2
    assert chipmesh.to_dtype("int32") == chipmesh.DataType.INT32
    assert chipmesh.parse_reduce_op("max") == chipmesh.ReduceOp.MAX
    t = chipmesh.allreduce_task(64, 128, 10, "float32", chipmesh.ReduceOp.SUM, chipmesh.AllreduceAlgo.RING)
    assert t.kernel == "chipmesh_allreduce" and t.scalars == [2, 0]
    assert [x.shape for x in t.tensors] == [[10], [10]]
