"""Keep a job process's allocations out of the heap it shares with the fork server.

A job process inherits glibc's heap from the fork server, copy-on-write. Left
alone, its ``malloc`` reuses that heap's free chunks and the free top of it,
pages the fork server holds: each 4 KiB page the job then writes is a fault
and a copy. Those chunks are taken out of its reach instead: the worker's
parent takes every free chunk once, before it forks the fork server
(``take_free_chunks``), and each spare takes the rest of the top chunk as it
starts (``take_top``), so a job's allocations grow the heap into fresh
memory, which ``glibc.malloc.hugetlb=1`` (set by ``bin/ephemera worker``)
faults in 2 MiB at a time. Taken chunks are never used, only their first
bytes are written (glibc's chunk headers), and they are gone with the
process. With the rehearsal (``workers.warm_up``), whose freed memory would
otherwise be reused copy-on-write: ~1,000 fewer page faults per job.

glibc only: with another C library (or a glibc older than 2.33, without
``mallinfo2``) both are no-ops, and so is ``take_free_chunks`` when Python's
own objects come from glibc's heap (``PYTHONMALLOC=malloc``).
"""

from __future__ import annotations

import ctypes
import os
import sys
from functools import cache

#: Chunk sizes tried, largest first: each takes the free chunks it fits into.
_LARGEST = 64 * 1024 * 1024
_SMALLEST = 16
#: glibc's per-thread cache (tcache) holds freed chunks of each size up to
#: 1032 bytes apart from the bins, and ``mallinfo2`` counts them as in use:
#: each of these sizes is asked for until it comes from the top.
_CACHED_SIZES = range(8, 1033, 16)
#: Room left at the top chunk's end for glibc's own header.
_TOP_SLACK = 64


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


@cache
def _glibc() -> ctypes.CDLL | None:
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "mallinfo2"):
        return None
    libc.mallinfo2.restype = _Mallinfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.sbrk.restype = ctypes.c_void_p
    libc.sbrk.argtypes = [ctypes.c_ssize_t]
    return libc


def top_bytes() -> int:
    """The size of the heap's top chunk: what ``malloc`` carves from before growing the heap."""
    libc = _glibc()
    return 0 if libc is None else int(libc.mallinfo2().keepcost)


def take_free_chunks() -> int:
    """Take every free chunk of the main heap; the bytes taken.

    Sizes go down by halves, then through every size glibc caches per thread;
    each is asked for until the answer is carved from the top chunk (or, for
    a large size, mapped apart): then no free chunk fits it any more. Sizes
    above the free bytes of all arenas (``mallinfo2``) cannot fit and are
    skipped. With ``PYTHONMALLOC=malloc`` nothing is taken: the interpreter
    then frees its own objects into the heap, the ints this loop makes
    included, as fast as it takes chunks, so no answer ever came from the top
    and the worker never started.
    """
    libc = _glibc()
    if libc is None or _objects_in_glibc_heap():
        return 0
    taken = 0
    size = _LARGEST
    while size >= _SMALLEST:
        if size <= libc.mallinfo2().fordblks:
            while _take(libc, size):
                taken += size
        size //= 2
    for size in _CACHED_SIZES:
        while _take(libc, size):
            taken += size
    return taken


def _objects_in_glibc_heap() -> bool:
    """Whether the interpreter allocates its objects with ``malloc`` instead of pymalloc."""
    chosen = "" if sys.flags.ignore_environment else os.environ.get("PYTHONMALLOC", "")
    return chosen in ("malloc", "malloc_debug")


def _take(libc: ctypes.CDLL, size: int) -> bool:
    """Allocate ``size`` bytes and keep them; whether they came from a free chunk.

    Kept by never freeing them, not in a list: a list that grows frees its old
    array, a chunk the sizes already taken would have left behind.
    """
    mapped = libc.mallinfo2().hblks
    top = libc.sbrk(0) - top_bytes()  # the main heap's top chunk ends at the break
    chunk = libc.malloc(size)
    if chunk is None:
        return False
    if libc.mallinfo2().hblks > mapped:  # mapped apart: nothing in the heap fits
        libc.free(chunk)
        return False
    return bool(chunk < top)


def take_top() -> None:
    """Take the rest of the top chunk, so the next allocation grows the heap."""
    libc = _glibc()
    if libc is not None and top_bytes() > 2 * _TOP_SLACK:
        libc.malloc(top_bytes() - _TOP_SLACK)
