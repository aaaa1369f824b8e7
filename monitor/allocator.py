"""One malloc arena for the long-running commands (glibc only).

glibc gives each thread that allocates while another holds the lock an arena of its own (up to
eight per core) and keeps what is freed there for that arena. The ingest threads, the fetch
loop and SQLite each allocate and free feeds' worth of memory, so a 500-feed catch-up peaked
at 191 MiB RSS with a heap of 103 MiB; with one arena it peaked at 148-156 MiB, no slower (the
GIL serialises nearly every allocation anyway). An operator's own `MALLOC_ARENA_MAX` wins:
glibc reads it at start-up and this leaves it alone.
"""

from __future__ import annotations

import os
import sys

_M_ARENA_MAX = -8  # from glibc's malloc.h


def limit_arenas(count: int = 1) -> bool:
    """Cap glibc's malloc arenas at `count`; call it before the process starts threads.

    Returns whether the cap was set (False: not glibc, or `MALLOC_ARENA_MAX` is set)."""
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # a libc without mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, count))
