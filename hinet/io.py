"""Atomic file writing: the one way `hinet` (and the app) replace a file on disk.

A reader of the target path sees either the old file or the complete new one, never a partial file; if
writing fails (full disk, killed process, an exception in the writer) the old file is untouched and no
temporary file is left behind.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text"]

_umask_lock = threading.Lock()
_umask: int | None = None


def _current_umask() -> int:
    # os.umask can only be read by setting it; doing that once (under a lock) keeps the brief window in
    # which another thread could create a world-writable file to a single moment per process.
    global _umask
    with _umask_lock:
        if _umask is None:
            _umask = os.umask(0o022)
            os.umask(_umask)
        return _umask


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Replace `path` with what `write(temp_path)` writes to a temporary file in the same folder.

    The temporary file gets the permissions of an ordinary new file (0o666 minus the umask; mkstemp
    would leave it 0o600), is fsynced, then renamed over `path`. On any error the temporary file is
    removed and the error re-raised. Returns `path`.
    """
    path = Path(path)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    temp = Path(temp_name)
    try:
        os.close(handle)
        handle = -1
        write(temp)
        # After writing: some writers (safetensors) replace the file with their own 0o600 one.
        os.chmod(temp, 0o666 & ~_current_umask())
        # Writers open the file themselves, so fsync through a fresh descriptor.
        sync_fd = os.open(temp, os.O_RDONLY)
        try:
            os.fsync(sync_fd)
        finally:
            os.close(sync_fd)
        os.replace(temp, path)
    except BaseException:
        if handle >= 0:
            os.close(handle)
        temp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically replace `path` with `data` (see `atomic_write`)."""
    return atomic_write(path, lambda temp: temp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Atomically replace `path` with `text` (see `atomic_write`)."""
    return atomic_write(path, lambda temp: temp.write_text(text, encoding=encoding))


def cache_dir() -> Path:
    """Where generated data is cached (dead leaves, prepared photos, the app's examples): `$HINET_CACHE`,
    else `~/.cache/hinet`."""
    return Path(os.environ.get("HINET_CACHE") or Path.home() / ".cache" / "hinet")
