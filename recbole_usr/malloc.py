"""Keep freed heap memory in the process instead of returning it to the OS at once.

glibc gives the top of the heap back to the kernel whenever more than 128 KiB is free
(``M_TRIM_THRESHOLD``); a training step frees and re-allocates its large activations, so
every step pays page faults for memory it just released. Raising the threshold at the
command-line entry points (never at library import: a user's process keeps its own
allocator settings) made Beauty-size training epochs about 1.5x faster on a 2-core CPU
(benchmarks/RESULTS.md). It is the ``mallopt`` equivalent of the environment setting
``MALLOC_TRIM_THRESHOLD_``, applied to this process only.
"""

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
TRIM_THRESHOLD_BYTES = 2**31 - 1  # mallopt takes an int


def keep_freed_memory():
    """True when glibc accepted the setting (False elsewhere: macOS, musl, Windows)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    except (OSError, AttributeError):
        return False
