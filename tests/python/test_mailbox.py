"""ChipBootstrapChannel from Python: the one-page mailbox."""

import ctypes
import mmap

import pytest

import chipmesh
from conftest import FORK

State = chipmesh.ChipBootstrapMailboxState


def page():
    return mmap.mmap(-1, chipmesh.CHIP_BOOTSTRAP_MAILBOX_SIZE)  # MAP_SHARED | MAP_ANONYMOUS


def test_constants():
    assert chipmesh.CHIP_BOOTSTRAP_MAILBOX_SIZE == 4096
    assert set(State.__members__) == {"IDLE", "SUCCESS", "ERROR"}


def test_fresh_page_is_idle():
    ch = chipmesh.ChipBootstrapChannel(page(), 8)
    assert ch.state == State.IDLE
    assert ch.error_code == 0 and ch.error_message == "" and ch.buffer_ptrs == []


def test_int_address():
    mm = page()
    buf = ctypes.c_char.from_buffer(mm)
    ch = chipmesh.ChipBootstrapChannel(ctypes.addressof(buf), 4)
    ch.write_success(1, 2, 3, [4])
    assert chipmesh.ChipBootstrapChannel(mm, 4).buffer_ptrs == [4]
    del ch, buf


def test_success_round_trip():
    ch = chipmesh.ChipBootstrapChannel(page(), 16)
    ch.write_success(0x1000, 0x2000, 65536, [0x2000, 0x2100, 0x2200])
    assert ch.state == State.SUCCESS
    assert (ch.device_ctx, ch.local_window_base, ch.actual_window_size) == (0x1000, 0x2000, 65536)
    assert ch.buffer_ptrs == [0x2000, 0x2100, 0x2200]


def test_error_round_trip_and_reset():
    ch = chipmesh.ChipBootstrapChannel(page(), 16)
    ch.write_error(1, "ConfigError: nope")
    assert ch.state == State.ERROR
    assert ch.error_code == 1 and ch.error_message == "ConfigError: nope"
    ch.reset()
    assert ch.state == State.IDLE and ch.error_code == 0 and ch.error_message == ""


def _child_writes(mm):
    chipmesh.ChipBootstrapChannel(mm, 8).write_success(7, 8, 9, [10, 11])


def test_written_in_forked_child_read_in_parent():
    mm = page()
    ch = chipmesh.ChipBootstrapChannel(mm, 8)
    p = FORK.Process(target=_child_writes, args=(mm,))
    p.start()
    assert ch.wait_published(30) == State.SUCCESS
    p.join()
    assert p.exitcode == 0
    assert (ch.device_ctx, ch.local_window_base, ch.actual_window_size, ch.buffer_ptrs) == (7, 8, 9, [10, 11])


def test_377_pointers_rejected():
    ch = chipmesh.ChipBootstrapChannel(page(), chipmesh.CHIP_BOOTSTRAP_MAX_BUFFERS)
    with pytest.raises(ValueError):
        ch.write_success(1, 2, 3, list(range(377)))
    assert ch.state == State.IDLE
    with pytest.raises(chipmesh.ConfigError):
        chipmesh.ChipBootstrapChannel(page(), 377)
    ch.write_success(1, 2, 3, list(range(376)))
    assert len(ch.buffer_ptrs) == 376


def test_long_message_truncated():
    ch = chipmesh.ChipBootstrapChannel(page(), 8)
    ch.write_error(3, "x" * 2000)
    assert ch.error_message == "x" * 1023


def test_bad_mailboxes():
    with pytest.raises(ValueError, match="4096"):
        chipmesh.ChipBootstrapChannel(bytearray(100), 8)
    with pytest.raises(ValueError, match="read-only"):
        chipmesh.ChipBootstrapChannel(bytes(4096), 8)
    with pytest.raises(ValueError, match="aligned"):
        chipmesh.ChipBootstrapChannel(12, 8)
    with pytest.raises(ValueError):
        chipmesh.ChipBootstrapChannel(page(), -1)
