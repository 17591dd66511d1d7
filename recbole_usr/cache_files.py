"""Writing files that a later run reads back (caches, results) so that no run can break the next.

Why: a write cut short (disk full, file-size limit, Ctrl-C) used to leave a partial file at
the final path, and every later run then failed on it. Here a file is written to a
temporary name in the same directory and renamed into place only once complete (a rename
within one file system is atomic), and a cache that does not pass its checks on read is
reported with its path and rebuilt.
"""

import contextlib
import os
import tempfile
from logging import getLogger


@contextlib.contextmanager
def atomic_output(path):
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on any error
    (KeyboardInterrupt included) it is removed and ``path`` is left as it was."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    os.close(handle)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~current_umask())  # mkstemp's 0600 would hide a shared cache from others
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


class BadCacheError(ValueError):
    """A cache file exists but cannot be used (unreadable, wrong shape, non-finite, stale)."""


def discard_bad_cache(path, reason, what="cache"):
    """Log why the cache at ``path`` is unusable and remove it, so it is rebuilt."""
    getLogger().warning(f"Ignoring the {what} {path}: {reason}. It is rebuilt now.")
    with contextlib.suppress(OSError):
        os.remove(path)
