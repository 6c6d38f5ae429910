"""The exceptions of chipmesh, one per C++ error kind (chipmesh/errors.h).

Every error raised by the C++ core arrives as one of these, so callers can
catch by kind: ``except ValueError`` catches a ``ConfigError``, ``except
TimeoutError`` (the builtin) catches a ``chipmesh.TimeoutError``.
"""

import builtins

__all__ = ["Error", "ConfigError", "CommError", "DeviceError", "TimeoutError", "ChipError"]


class Error(RuntimeError):
    """Base of every chipmesh error (C++ ``chipmesh::Error``; also InternalError)."""


class ConfigError(Error, ValueError):
    """Bad input: arguments, configuration, a layout that cannot work."""


class CommError(Error):
    """The communicator failed: rendezvous, a dead or disagreeing peer."""


class DeviceError(Error):
    """The device or platform failed: plugin loading, memory, copies."""


class TimeoutError(Error, builtins.TimeoutError):  # noqa: A001 - the C++ name, on purpose
    """A wait ran past its deadline."""


class ChipError(Error):
    """A failure on one chip of a Worker.

    Attributes:
        chip: index of the chip in the Worker's device_ids.
        device_id: its device id.
        pid: its process id (-1 when unknown).
        cause: the chip's own ``"<Kind>: <message>"``, or how its process died.
    """

    def __init__(self, message, chip=-1, device_id=-1, pid=-1, cause=""):
        super().__init__(message)
        self.chip = chip
        self.device_id = device_id
        self.pid = pid
        self.cause = cause

    def __reduce__(self):
        return (type(self), (str(self), self.chip, self.device_id, self.pid, self.cause))
