"""glibc's heap, with its free chunks and top chunk taken out of a forked job process's reach.

Each test runs in a process forked from this one, as a job process is: with
one thread, so no other thread's frees put chunks back between a take and its
check, and what it takes goes with it.
"""

from __future__ import annotations

import ctypes
import os
import traceback
from collections.abc import Callable

import pytest

from tests.harness import python_probe
from workers import heap

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.sbrk.restype = ctypes.c_void_p
libc.sbrk.argtypes = [ctypes.c_ssize_t]

pytestmark = pytest.mark.skipif(not hasattr(libc, "mallinfo2"), reason="glibc >= 2.33 only")


def make_free_chunks(count: int = 200, size: int = 3000) -> None:
    """Allocate ``count`` chunks and free every other one: holes the top cannot absorb."""
    chunks = [libc.malloc(size) for _ in range(count)]
    for chunk in chunks[::2]:
        libc.free(chunk)


def comes_from_the_top(size: int) -> bool:
    """Whether ``malloc(size)`` is carved from the top chunk (the chunk is kept)."""
    top = libc.sbrk(0) - heap.top_bytes()
    return bool(libc.malloc(size) >= top)


def in_a_fork(check: Callable[[], None]) -> None:
    """Run ``check`` in a forked process; its failure, if any, fails the test here."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the fork, which exits through os._exit
        os.close(read)
        failure = b""
        try:
            check()
        except BaseException:
            failure = traceback.format_exc().encode()
        os.write(write, failure)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        failure = pipe.read().decode()
    os.waitpid(pid, 0)
    assert not failure, failure


def test_taking_the_free_chunks_leaves_none_for_malloc_to_reuse() -> None:
    in_a_fork(take_free_chunks_then_allocate)


def test_after_taking_the_top_the_next_allocation_grows_the_heap() -> None:
    in_a_fork(take_the_top_then_allocate)


def test_with_the_interpreters_objects_in_the_heap_nothing_is_taken() -> None:
    # The worker's parent takes the chunks before it forks its fork server:
    # under PYTHONMALLOC=malloc, taking them never ended, and the worker never started.
    env = {**os.environ, "PYTHONMALLOC": "malloc"}
    taken = python_probe("from workers import heap; print(heap.take_free_chunks())", env=env)
    assert taken.strip() == "0"


def take_free_chunks_then_allocate() -> None:
    make_free_chunks()
    assert not comes_from_the_top(3000)

    assert heap.take_free_chunks() >= 100 * 2048

    # Sizes from the per-thread cache to those of the holes: carved from the top.
    # (Below 512 bytes, the interpreter's own frees between these calls refill it.)
    for size in (600, 1000, 2900):
        assert comes_from_the_top(size), size


def take_the_top_then_allocate() -> None:
    # As in a spare: the parent took the free chunks before forking it. Then
    # a top chunk of at least 100 KB: a block freed at the top merges into it.
    heap.take_free_chunks()
    libc.free(libc.malloc(100_000))
    assert heap.top_bytes() >= 100_000
    end = libc.sbrk(0)

    heap.take_top()

    assert heap.top_bytes() < 1024
    chunk = libc.malloc(4096)
    # Its memory lies past the heap's old end, bar the old top's last bytes.
    assert chunk + 4096 > end
    assert libc.sbrk(0) > end
    libc.free(chunk)
