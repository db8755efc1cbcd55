"""client_distill/train/heap.py: freed large blocks stay in the heap once keep_freed_memory has run.

In a fresh interpreter each (glibc's settings are process-wide): allocate and free a block of 8 MB (above
glibc's default mmap threshold of 128 KB, below the 32 MB it pins) and read the heap's free bytes back
with ``mallinfo2``: with the defaults the block was its own mapping and is gone; kept, it is free heap."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

PROBE = """
import ctypes, sys
from client_distill.train.heap import keep_freed_memory
class Info(ctypes.Structure):
    names = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
    _fields_ = [(n, ctypes.c_size_t) for n in names.split()]
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = Info
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
block = libc.malloc(8 << 20)
ctypes.memset(block, 1, 8 << 20)  # touch it: its pages are mapped
libc.free(block)
print(kept, libc.mallinfo2().fordblks)
"""


def free_heap_after_a_big_free(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True).stdout
    kept, free = out.split()
    return kept, int(free)


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="glibc ≥ 2.33 only"
)
def test_a_freed_block_stays_mapped_only_when_kept():
    kept, free = free_heap_after_a_big_free("keep")
    assert kept == "True" and free >= 8 << 20
    _, free = free_heap_after_a_big_free("default")
    assert free < 8 << 20  # glibc's default: the block was unmapped on free
