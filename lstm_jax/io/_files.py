r"""Atomic output files and strict JSON: nothing half-written is ever left behind.

Every file the command line writes goes through this module:

* :func:`atomic_write` writes ``data`` to a temporary file in the **same folder** as
  ``path`` (so the final :func:`os.replace` is a rename on one file system, atomic on
  POSIX and Windows), flushes and ``fsync``\ s it, then renames it into place.  A
  process killed at any moment leaves either the old file untouched or the new file
  complete; the temporary file is removed on any exception.  (A ``SIGKILL`` or power loss
  cannot run cleanup code: a stray hidden ``.NAME.*.tmp`` file may then remain beside the
  target, which itself is intact; it is safe to delete.)  Published files get the
  permissions of the file they replace, or ``0o666`` minus the umask.
* :class:`AtomicOutputs` collects several files and publishes them together: each is
  staged as a temporary file beside its target; only when the ``with`` block finishes
  without an exception are they renamed into place, one after another.  On an
  exception nothing is renamed and every staged file is removed, so "the output files
  appear together or not at all" up to the (sub-millisecond) sequence of renames.
* :func:`check_writable_dir` validates an output folder *before* any computation
  (exists or can be created, is a folder, is writable).
* :func:`strict_json` serialises with ``allow_nan=False`` after replacing NaN and
  ±inf by ``null`` and counting them (the caller records the count, e.g. in a
  ``"non_finite"`` field), so every file is valid JSON (RFC 8259 has no NaN).
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import tempfile
from typing import Any, Union

import numpy as np

PathLike = Union[str, os.PathLike]


def _file_mode(path: pathlib.Path) -> int:
    """Permissions for the published file: those of the file it replaces, else 0o666 minus the umask.

    ``tempfile.mkstemp`` creates 0o600 files; without this the outputs would not be readable by others.
    """
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        pass
    umask = 0o022
    try:  # Linux: read the umask without changing it (os.umask would set process-global state)
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                umask = int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o666 & ~umask


def _stage(path: pathlib.Path, data: Union[str, bytes]) -> pathlib.Path:
    """Write ``data`` to a new temporary file beside ``path``; return its path (fsynced)."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _file_mode(path))
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    return pathlib.Path(tmp)


def check_writable_dir(path: PathLike, name: str = "out") -> pathlib.Path:
    """Create folder ``path`` if needed and check that files can be written in it.

    Raises:
      OSError: naming ``name``, the path and why (a file is in the way, no permission, ...).
    """
    p = pathlib.Path(path)
    if p.exists() and not p.is_dir():
        raise NotADirectoryError(f"{name}: {str(p)!r} exists and is not a folder; expected a folder to write into")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"{name}: cannot create folder {str(p)!r}: {exc.strerror or exc}") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise PermissionError(f"{name}: folder {str(p)!r} is not writable")
    return p


def check_writable_file(path: PathLike, name: str) -> pathlib.Path:
    """Check that ``path`` can be written atomically (its folder exists or can be made; it is not a folder)."""
    p = pathlib.Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"{name}: {str(p)!r} is a folder; expected a file path")
    check_writable_dir(p.parent if str(p.parent) else ".", name)
    return p


def atomic_write(path: PathLike, data: Union[str, bytes]) -> pathlib.Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` atomically (temporary file + rename)."""
    p = pathlib.Path(path)
    tmp = _stage(p, data)
    try:
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p


class AtomicOutputs:
    """Stage several output files and publish them together when the ``with`` block succeeds.

    Example::

        with AtomicOutputs() as out:
            out.write(folder / "report.html", html)
            out.write(folder / "diagnosis.json", strict_json(doc))
        # both files are in place here; after an exception neither was touched.

    ``write_with(path, writer)`` stages a file written by ``writer(tmp_path)`` (for libraries that
    insist on writing to a path themselves, e.g. ``numpy.savez`` or ``Figure.savefig``).
    """

    def __init__(self) -> None:
        self._staged: list[tuple[pathlib.Path, pathlib.Path]] = []

    def __enter__(self) -> "AtomicOutputs":
        return self

    def write(self, path: PathLike, data: Union[str, bytes]) -> pathlib.Path:
        p = pathlib.Path(path)
        self._staged.append((_stage(p, data), p))
        return p

    def write_with(self, path: PathLike, writer) -> pathlib.Path:
        p = pathlib.Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp" + p.suffix, dir=p.parent)
        os.close(fd)
        tmp_p = pathlib.Path(tmp)
        self._staged.append((tmp_p, p))
        os.chmod(tmp_p, _file_mode(p))
        writer(tmp_p)
        return p

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                for _, final in self._staged:  # refuse before the first rename, so the set stays all-or-nothing
                    if final.is_dir():
                        raise IsADirectoryError(f"{str(final)!r} is a folder; cannot replace it with a file")
                for tmp, final in self._staged:
                    os.replace(tmp, final)
            finally:
                self._cleanup()
        else:
            self._cleanup()

    def _cleanup(self) -> None:
        for tmp, _ in self._staged:
            tmp.unlink(missing_ok=True)
        self._staged.clear()


def _finite(x: Any, counter: list) -> Any:
    if isinstance(x, dict):
        return {str(k): _finite(v, counter) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v, counter) for v in x]
    if hasattr(x, "_asdict"):
        return _finite(x._asdict(), counter)
    if hasattr(x, "value") and hasattr(x, "name") and not hasattr(x, "shape"):  # enum.Enum
        return _finite(x.value, counter)
    if isinstance(x, (np.ndarray, np.generic)) or type(x).__module__.startswith("jax"):
        return _finite(np.asarray(x).tolist(), counter)
    if isinstance(x, float) and not math.isfinite(x):
        counter[0] += 1
        return None
    return x


def strict_json(obj: Any, *, indent: int | None = 1) -> str:
    """``obj`` as strict JSON text (arrays to lists, enums to values, NaN/±inf to ``null``).

    If any non-finite number was replaced and ``obj`` is a dict, the document gets a top-level
    ``"non_finite_replaced_by_null": count`` field so a reader knows a ``null`` means NaN/inf.
    """
    counter = [0]
    doc = _finite(obj, counter)
    if counter[0] and isinstance(doc, dict):
        doc["non_finite_replaced_by_null"] = counter[0]
    return json.dumps(doc, indent=indent, ensure_ascii=False, allow_nan=False) + "\n"
