"""chipmesh: bring up a group of accelerator chips, one process per chip, and
run distributed work on them, from Python.

The names and their meaning are those of the C++ API (include/chipmesh/):
configs (:class:`ChipBootstrapConfig` and its parts), the bootstrap mailbox
(:class:`ChipBootstrapChannel`), one chip (:class:`ChipWorker`) and a group
of chips (:class:`Worker`, with :class:`Task` and the orchestrator of
:meth:`Worker.run`), communication domains (:class:`CommDomain`,
:meth:`Worker.world`) and the typed collectives of the orchestrator
(``orch.allreduce(domain, in_, out, count, dtype, op)``, ...). Errors are
:class:`Error` subclasses of the C++ kind. Blocking calls release the GIL;
Ctrl-C during ``Worker.init()`` or ``Worker.run()`` tears the chips down and
raises KeyboardInterrupt.
"""

from ._errors import ChipError, CommError, ConfigError, DeviceError, Error, TimeoutError  # noqa: A004
from ._core import (
    CHIP_BOOTSTRAP_ERROR_MESSAGE_SIZE,
    CHIP_BOOTSTRAP_MAILBOX_SIZE,
    CHIP_BOOTSTRAP_MAX_BUFFERS,
    AllreduceAlgo,
    BootstrapTimings,
    ChipBootstrapChannel,
    ChipBootstrapConfig,
    ChipBootstrapMailboxState,
    ChipBootstrapResult,
    ChipBufferSpec,
    ChipCommBootstrapConfig,
    ChipContext,
    ChipWorker,
    CommDomain,
    DataType,
    DomainContext,
    HostBufferStaging,
    Orchestrator,
    ReduceOp,
    Task,
    TensorArg,
    Worker,
    __version__,
    allreduce_task,
    dtype_name,
    dtype_size,
    parse_allreduce_algo,
    parse_reduce_op,
    to_dtype,
)

__all__ = [
    "CHIP_BOOTSTRAP_ERROR_MESSAGE_SIZE",
    "CHIP_BOOTSTRAP_MAILBOX_SIZE",
    "CHIP_BOOTSTRAP_MAX_BUFFERS",
    "AllreduceAlgo",
    "BootstrapTimings",
    "ChipBootstrapChannel",
    "ChipBootstrapConfig",
    "ChipBootstrapMailboxState",
    "ChipBootstrapResult",
    "ChipBufferSpec",
    "ChipCommBootstrapConfig",
    "ChipContext",
    "ChipError",
    "ChipWorker",
    "CommDomain",
    "CommError",
    "ConfigError",
    "DataType",
    "DeviceError",
    "DomainContext",
    "Error",
    "HostBufferStaging",
    "Orchestrator",
    "ReduceOp",
    "Task",
    "TensorArg",
    "TimeoutError",
    "Worker",
    "__version__",
    "allreduce_task",
    "dtype_name",
    "dtype_size",
    "parse_allreduce_algo",
    "parse_reduce_op",
    "to_dtype",
]
