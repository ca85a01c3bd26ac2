r"""Atomic output files and strict JSON: nothing half-written is ever left behind.

Every file the command line, the experiments, the reports and the benchmarks write goes through this module
(the model files :func:`lstm_jax.io.save` writes too); it imports nothing of lstm_jax:

* :func:`atomic_write` writes ``data`` to a temporary file in the **same folder** as
  ``path`` (so the final :func:`os.replace` is a rename on one file system, atomic on
  POSIX and Windows), flushes and ``fsync``\ s it, then renames it into place.  A
  process killed at any moment leaves either the old file untouched or the new file
  complete; the temporary file is removed on any exception.  (A ``SIGKILL`` or power loss
  cannot run cleanup code: a stray hidden ``.NAME.*.tmp`` file may then remain beside the
  target, which itself is intact; it is safe to delete.)  Published files get the
  permissions of the file they replace, or ``0o666`` minus the umask.
* :class:`AtomicOutputs` collects several files and publishes them as one **output set**, all or
  nothing even under a kill: each file is staged beside its target, then the set's manifest (names,
  sizes, SHA-256) is written as a journal (the commit point), the files are renamed into place and the
  journal becomes ``manifest.json``.  A kill before the commit point leaves the old set; after it, the
  next publication into the folder (or :func:`complete_outputs`, :func:`check_output_set`) finishes the
  renames, so the folder holds the new set.  On an exception nothing is renamed, every staged file is
  removed, and folders created for the set are removed again.
* :func:`check_output_set` is the reader's side: it returns the manifest after checking every file.
* :func:`check_writable_dir` validates an output folder *before* any computation
  (exists or can be created, is a folder, is writable) without creating it.
* :func:`strict_json` serialises with ``allow_nan=False`` after replacing NaN and
  ±inf by ``null`` and counting them (the caller records the count, e.g. in a
  ``"non_finite"`` field), so every file is valid JSON (RFC 8259 has no NaN).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pathlib
import tempfile
from typing import Any, Optional, Union

import numpy as np

__all__ = ["AtomicOutputs", "atomic_write", "check_output_set", "check_writable_dir", "check_writable_file",
           "complete_outputs", "strict_json"]

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
    """Check that files can be written in folder ``path``, without creating it.

    ``path`` is an existing writable folder, or its nearest existing ancestor is a writable folder (the
    missing folders are created only when the outputs are published, by :class:`AtomicOutputs` /
    :func:`atomic_write`, so a run that fails leaves no empty folder behind).

    Raises:
      OSError: naming ``name``, the path and why (a file is in the way, no permission, ...).
    """
    p = pathlib.Path(path)
    if p.exists() and not p.is_dir():
        raise NotADirectoryError(f"{name}: {str(p)!r} exists and is not a folder; expected a folder to write into")
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise NotADirectoryError(f"{name}: cannot create folder {str(p)!r}: {str(probe)!r} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "is not writable" if probe == p else f"cannot be created ({str(probe)!r} is not writable)"
        raise PermissionError(f"{name}: folder {str(p)!r} {what}")
    return p


def check_writable_file(path: PathLike, name: str) -> pathlib.Path:
    """Check that ``path`` can be written atomically (its folder exists or can be made; it is not a folder)."""
    p = pathlib.Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"{name}: {str(p)!r} is a folder; expected a file path")
    check_writable_dir(p.parent if str(p.parent) else ".", name)
    return p


def atomic_write(path: PathLike, data: Union[str, bytes]) -> pathlib.Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` atomically (temporary file + rename).

    Missing parent folders are created."""
    p = pathlib.Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = _stage(p, data)
    try:
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p


MANIFEST = "manifest.json"


def _sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(folder: pathlib.Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _pending(folder: pathlib.Path, manifest: str) -> pathlib.Path:
    return folder / f".{manifest}.pending"


def complete_outputs(folder: PathLike, manifest: str = MANIFEST) -> bool:
    """Finish a publication that a killed process left half done; ``True`` if there was one.

    :class:`AtomicOutputs` commits a set by writing ``.manifest.json.pending`` (the new manifest, naming
    each staged file) *before* its first rename.  If the process died between the renames, this performs
    the remaining ones, checks every file against the SHA-256 the journal records and renames the journal
    to ``manifest.json``: the folder then holds the new set, exactly.  Called by every :class:`AtomicOutputs`
    that publishes into ``folder`` and by :func:`check_output_set`.

    Raises:
      ValueError: a file of the journal is neither staged nor in place with its recorded content (the folder
        was changed by hand after the kill).
    """
    folder = pathlib.Path(folder)
    journal = _pending(folder, manifest)
    if not journal.is_file():
        return False
    doc = json.loads(journal.read_text(encoding="utf-8"))
    for name, entry in doc["files"].items():
        staged = folder / entry["staged"]
        if staged.is_file():
            os.replace(staged, folder / name)
        final = folder / name
        if not final.is_file() or _sha256(final) != entry["sha256"]:
            raise ValueError(f"{str(folder)!r}: an interrupted publication cannot be completed: {name!r} is neither "
                             f"staged nor in place with the content its journal {journal.name} records; delete the "
                             f"folder's outputs and run the command again")
    files = {name: {"sha256": e["sha256"], "bytes": e["bytes"]} for name, e in sorted(doc["files"].items())}
    atomic_write(folder / manifest, json.dumps({**doc, "files": files}, indent=1, sort_keys=True) + "\n")
    journal.unlink()
    _fsync_dir(folder)
    return True


def check_output_set(folder: PathLike, manifest: str = MANIFEST) -> dict:
    """The manifest of the output set in ``folder`` after checking that every file it lists is the one published.

    Completes an interrupted publication first (:func:`complete_outputs`).  Returns the manifest
    (``{"set": id, "files": {name: {"sha256", "bytes"}}}``).

    Raises:
      FileNotFoundError: no manifest (not an output folder of lstm_jax, or written before manifests).
      ValueError: a listed file is missing or differs from the published one (a mixed or edited set).
    """
    folder = pathlib.Path(folder)
    complete_outputs(folder, manifest)
    path = folder / manifest
    if not path.is_file():
        raise FileNotFoundError(f"{str(folder)!r} holds no {manifest}: not an output set published by lstm_jax")
    doc = json.loads(path.read_text(encoding="utf-8"))
    for name, entry in doc["files"].items():
        final = folder / name
        if not final.is_file() or _sha256(final) != entry["sha256"]:
            raise ValueError(f"{str(folder)!r}: {name!r} is not the file published with this set (missing or "
                             f"changed since); the folder does not hold one consistent output set")
    return doc


class AtomicOutputs:
    """Stage several output files and publish them together when the ``with`` block succeeds.

    Example::

        with AtomicOutputs() as out:
            out.write(folder / "report.html", html)
            out.write(folder / "diagnosis.json", strict_json(doc))
        # both files and folder/manifest.json are in place here; after an exception nothing was touched.

    ``write_with(path, writer)`` stages a file written by ``writer(tmp_path)`` (for libraries that
    insist on writing to a path themselves, e.g. ``numpy.savez`` or ``Figure.savefig``).

    **The set is all or nothing, also under a kill.**  Every file is staged (written and flushed to disk)
    beside its target.  Then, for each folder of the set, the new manifest — each file's name, size and
    SHA-256 — is written as the journal ``.manifest.json.pending`` (one atomic write: the commit point),
    the staged files are renamed into place, and the journal is renamed to ``manifest.json``.  A kill before
    the commit point leaves the old set and its manifest untouched (after a SIGKILL, stray hidden ``.*.tmp``
    files may remain; they are safe to delete); a kill after it leaves the journal, and the next
    :class:`AtomicOutputs` into the folder, or :func:`complete_outputs` / :func:`check_output_set`, finishes
    the renames: the folder then holds exactly the new set.  ``manifest=None`` publishes without a manifest
    (the renames are then a sub-millisecond window in which a kill leaves a mix).

    Folders that do not exist are created when the set is published and removed again if publishing fails,
    so a failed run leaves no empty output folder.
    """

    def __init__(self, manifest: Optional[str] = MANIFEST) -> None:
        self._staged: list[tuple[pathlib.Path, pathlib.Path]] = []
        self._created: list[pathlib.Path] = []
        self._committed: set[pathlib.Path] = set()
        self._manifest = manifest

    def __enter__(self) -> "AtomicOutputs":
        return self

    def _folder(self, p: pathlib.Path) -> None:
        missing = []
        parent = p.parent
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        for d in reversed(missing):
            d.mkdir()
            self._created.append(d)
        if self._manifest is not None:
            complete_outputs(p.parent, self._manifest)

    def write(self, path: PathLike, data: Union[str, bytes]) -> pathlib.Path:
        p = pathlib.Path(path)
        self._folder(p)
        self._staged.append((_stage(p, data), p))
        return p

    def write_with(self, path: PathLike, writer) -> pathlib.Path:
        p = pathlib.Path(path)
        self._folder(p)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp" + p.suffix, dir=p.parent)
        os.close(fd)
        tmp_p = pathlib.Path(tmp)
        self._staged.append((tmp_p, p))
        os.chmod(tmp_p, _file_mode(p))
        writer(tmp_p)
        return p

    def _publish(self) -> None:
        for _, final in self._staged:  # refuse before the first rename, so the set stays all-or-nothing
            if final.is_dir():
                raise IsADirectoryError(f"{str(final)!r} is a folder; cannot replace it with a file")
        by_folder: dict[pathlib.Path, list] = {}
        for tmp, final in self._staged:
            by_folder.setdefault(final.parent, []).append((tmp, final))
        for folder, pairs in by_folder.items():
            if self._manifest is None:
                for tmp, final in pairs:
                    os.replace(tmp, final)
                continue
            files = {final.name: {"sha256": _sha256(tmp), "bytes": tmp.stat().st_size, "staged": tmp.name}
                     for tmp, final in pairs}
            set_id = hashlib.sha256(json.dumps({k: v["sha256"] for k, v in sorted(files.items())}).encode()).hexdigest()
            journal = {"format": "lstm_jax.output_set", "version": 1, "set": set_id[:16], "files": files}
            self._committed.add(folder)  # before the journal exists: an interrupt from here on keeps the staged files
            atomic_write(_pending(folder, self._manifest), json.dumps(journal, indent=1, sort_keys=True) + "\n")
            _fsync_dir(folder)
            complete_outputs(folder, self._manifest)  # the renames; the same code finishes a killed publication
        self._staged.clear()

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._publish()
        finally:
            self._cleanup(failed=exc_type is not None or bool(self._staged))

    def _cleanup(self, failed: bool) -> None:
        for tmp, final in self._staged:
            journal = self._manifest is not None and _pending(final.parent, self._manifest).exists()
            if final.parent not in self._committed or not journal:  # a journal on disk needs its staged files
                tmp.unlink(missing_ok=True)
        self._staged.clear()
        self._committed.clear()
        if failed:
            for d in reversed(self._created):
                try:
                    d.rmdir()  # only if still empty
                except OSError:
                    pass
        self._created.clear()


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
