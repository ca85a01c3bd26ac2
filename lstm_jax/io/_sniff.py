r"""What a file is, before anything in it is believed: kind checks, format detection and size limits.

Every file a user hands to lstm_jax (a model for :func:`~lstm_jax.io.load_model`, ``--data`` /
``--lengths`` arrays) passes :func:`check_input_file` first:

* it must be a **regular file** (a folder, a named pipe, a device or a socket is refused before it is
  opened: ``open()`` on a FIFO blocks forever, ``/dev/zero`` reads without end);
* its size must be at most :data:`MAX_FILE_BYTES`;
* its **format is read from its first bytes** (:func:`sniff`), not from its name: zip archives are told
  apart by their members (NumPy ``.npz``, PyTorch checkpoint, TorchScript archive, Keras ``.keras``),
  then pickle (protocol 2-5), HDF5, ``.npy``, safetensors (8-byte header length + JSON), msgpack maps,
  ONNX protobuf (``ir_version`` first), text and empty files.  A format lstm_jax does not read gets an
  error that names it and lists what is accepted, instead of a parser's message about "corruption".

Arrays are sized **by what they declare before they are built**: :func:`read_npz` reads each ``.npz``
member's ``.npy`` header, checks its shape and dtype, sums the declared bytes against
:func:`array_budget` (the smaller of :data:`MAX_ARRAY_BYTES` and half the free memory) and only then
reads exactly that many bytes (a zip bomb or an archive declaring terabytes is refused at its header);
:func:`read_npy` does the same for one ``.npy`` file and also checks that the file holds the bytes its
header declares.  PyTorch tensors are sized by ``numel() * element_size()`` — what they will become as
arrays — so a zero-stride tensor on a one-element storage counts at its full size
(:func:`check_tensor_sizes`).
"""

from __future__ import annotations

import lzma
import os
import pathlib
import stat
import struct
import tokenize
import zipfile
import zlib
from typing import Any

import numpy as np

#: the largest model or data file read (bytes); larger files are refused before they are opened.
MAX_FILE_BYTES = 4 * 2**30
#: the most bytes of arrays one file may declare, before the free-memory limit of :func:`array_budget`.
MAX_ARRAY_BYTES = 2 * 2**30
#: the deepest nesting of dicts read from a checkpoint (msgpack, state_dict trees).
MAX_DEPTH = 64

ACCEPTED_FILES = (
    "a PyTorch state_dict or checkpoint saved with torch.save (.pt/.pth), a lstm_jax .npz (lstm_jax.io.save or "
    "the params.npz of lstm-jax train), Flax variables serialised with flax.serialization (.msgpack), or a "
    "safetensors file with torch state_dict names, a TorchScript archive (its weights; none of its code runs), an ONNX model with LSTM/GRU/RNN operators, or a Keras 3 .keras / .weights.h5 file"
)

_NAMES = {
    "npz": "a NumPy .npz archive",
    "torch-zip": "a PyTorch checkpoint (torch.save zip archive)",
    "torchscript": "a TorchScript archive (torch.jit.save / torch.jit.script / torch.jit.trace)",
    "keras": "a Keras .keras archive",
    "zip": "a zip archive",
    "broken-zip": "a zip archive that cannot be opened (truncated or corrupt)",
    "pickle": "a Python pickle (e.g. a PyTorch checkpoint in the legacy format)",
    "hdf5": "an HDF5 file (e.g. Keras .h5 / .weights.h5)",
    "npy": "a single NumPy .npy array",
    "safetensors": "a safetensors file",
    "msgpack": "a msgpack map (e.g. flax.serialization.to_bytes)",
    "onnx": "an ONNX model (protobuf)",
    "text": "a text file",
    "empty": "an empty file (0 bytes)",
    "unknown": "a file of no format lstm_jax recognises",
}

#: formats recognised but not read, with what to do instead.
UNSUPPORTED = {
    "npy": "a model file holds named weights; a single array is not a model",
    "zip": "its members are neither .npy arrays nor a PyTorch checkpoint",
    "broken-zip": "it is not a readable archive (an interrupted download or copy?)",
    "text": "model files are binary",
    "empty": "the file holds nothing",
    "unknown": "the first bytes match none of the accepted formats",
}


def describe(kind: str) -> str:
    """The human name of a :func:`sniff` result, e.g. ``"a TorchScript archive (...)"``."""
    return _NAMES[kind]


def check_input_file(path: Any, argument: str, *, max_bytes: int = MAX_FILE_BYTES) -> pathlib.Path:
    """Refuse anything but an existing regular file of at most ``max_bytes``, without opening it.

    Raises:
      FileNotFoundError: no such file (exit 3 on the command line).  PermissionError: not readable (exit 3).
      ValueError: a folder, FIFO, device or socket, or a file larger than ``max_bytes`` (exit 2).
    """
    p = pathlib.Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise FileNotFoundError(f"{argument}: no such file {str(p)!r}") from None
    except PermissionError:
        raise PermissionError(f"{argument}: {str(p)!r} cannot be read (permission denied)") from None
    except OSError as exc:
        raise OSError(f"{argument}: {str(p)!r} cannot be read ({exc.strerror or exc})") from None
    mode = st.st_mode
    if not stat.S_ISREG(mode):
        what = ("a folder" if stat.S_ISDIR(mode) else "a named pipe (FIFO)" if stat.S_ISFIFO(mode)
                else "a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        hint = (" (a checkpoint folder, e.g. Orbax, is not read: pass a single file)" if stat.S_ISDIR(mode) else "")
        raise ValueError(f"{argument}: {str(p)!r} is {what}; expected a regular file{hint}")
    if st.st_size > max_bytes:
        raise ValueError(f"{argument}: {str(p)!r} has {st.st_size / 2**30:.1f} GiB; files larger than "
                         f"{max_bytes / 2**30:.0f} GiB are not read")
    if not os.access(p, os.R_OK):
        raise PermissionError(f"{argument}: {str(p)!r} cannot be read (permission denied)")
    return p


def _zip_kind(path: pathlib.Path) -> str:
    _check_zip_directory(path, f"{str(path)!r}")
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return "broken-zip"
    if names and all(n.endswith(".npy") for n in names):
        return "npz"
    if "config.json" in names and any(n.endswith(".weights.h5") or n == "model.weights.h5" for n in names):
        return "keras"
    if any("/code/" in n or n.endswith("/constants.pkl") for n in names):
        return "torchscript"
    if any(n.endswith("data.pkl") for n in names):
        return "torch-zip"
    if any(n.endswith(".npy") for n in names):
        return "npz"
    return "zip"


def sniff(path: Any) -> str:
    """The format of ``path`` from its first bytes: one of the keys of :func:`describe`'s table."""
    p = pathlib.Path(path)
    with open(p, "rb") as fh:
        head = fh.read(64)
    if not head:
        return "empty"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _zip_kind(p)
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if len(head) >= 9 and head[8:9] == b"{":
        (size,) = struct.unpack("<Q", head[:8])
        if 2 <= size <= p.stat().st_size - 8:
            return "safetensors"
    if 0x81 <= head[0] <= 0x8F or head[0] in (0xDE, 0xDF):
        return "msgpack"
    if head[0] == 0x08 and len(head) > 2 and 1 <= head[1] <= 20 and head[2] in (0x12, 0x1A, 0x22, 0x2A, 0x3A, 0x42):
        return "onnx"  # field 1 (ir_version) varint, then producer/graph/opset fields
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "unknown"
    return "text" if all(c.isprintable() or c in "\r\n\t" for c in text) else "unknown"


def unsupported_error(path: Any, argument: str, kind: str) -> ValueError:
    """The error for a file whose format lstm_jax recognises but does not read."""
    return ValueError(f"{argument}: {str(path)!r} is {describe(kind)}; {UNSUPPORTED[kind]} (accepted: {ACCEPTED_FILES})")


def array_budget() -> int:
    """Bytes of arrays one file may declare: ``min(MAX_ARRAY_BYTES, free memory / 2)``."""
    from lstm_jax._validation import _available_bytes

    avail = _available_bytes()
    return MAX_ARRAY_BYTES if avail is None else min(MAX_ARRAY_BYTES, avail // 2)


def _refuse_size(what: str, nbytes: int, budget: int) -> ValueError:
    return ValueError(f"{what} declares {nbytes / 2**30:.2f} GiB of arrays; at most {budget / 2**30:.2f} GiB are read "
                      f"(the smaller of {MAX_ARRAY_BYTES / 2**30:.0f} GiB and half the free memory)")


#: the longest .npy header read (numpy's own headers are under 200 bytes; its reader allows 10,000 but
#: reads the whole declared length, up to 4 GiB, before it checks)
MAX_HEADER = 65_536
#: the largest zip central directory read (10,000 members need well under 1 MiB)
MAX_ZIP_DIRECTORY = 16 * 2**20


def _npy_header(fh, what: str) -> tuple[tuple, np.dtype, bool]:
    try:
        start = fh.tell()
        magic = fh.read(8)
        if len(magic) == 8 and magic[:6] == b"\x93NUMPY":
            raw = fh.read(2 if magic[6] == 1 else 4)
            length = int.from_bytes(raw, "little") if raw else 0
            if length > MAX_HEADER:
                raise ValueError(f"its header declares {length} bytes; at most {MAX_HEADER} are read")
        fh.seek(start)
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(fh)  # parses the header's literal safely (no eval), checks its keys
    except (ValueError, OSError, SyntaxError, EOFError, tokenize.TokenError, zlib.error, lzma.LZMAError,
            RuntimeError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{what}: not a readable .npy array ({type(exc).__name__}: {exc})") from None
    if dtype.hasobject:
        raise ValueError(f"{what} holds Python objects (a pickled object array), which lstm_jax never loads "
                         f"(unpickling runs code); expected plain numeric arrays")
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ValueError(f"{what}: the header declares shape {shape!r}; expected non-negative integers")
    if dtype.kind not in "biufc":
        raise ValueError(f"{what} has dtype {dtype}; expected a numeric array (bool, integer, float, complex)")
    return tuple(shape), dtype, fortran


def _nbytes(shape: tuple, dtype: np.dtype) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n * max(dtype.itemsize, 1)


def _check_zip_directory(path: pathlib.Path, what: str) -> None:
    """Refuse a zip whose central directory (read from its end record, before ``zipfile`` parses it) is huge."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(max(0, size - 65_557))
        tail = fh.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) < at + 22:
        return  # no end record: zipfile reports the archive as unreadable
    entries, directory = struct.unpack("<HI", tail[at + 10:at + 16])
    if entries != 0xFFFF and directory != 0xFFFFFFFF and (entries > 10_000 or directory > MAX_ZIP_DIRECTORY):
        raise ValueError(f"{what} lists {entries} members in a {directory / 2**20:.1f} MiB directory; a model file has "
                         f"at most 10,000 arrays")


def read_npy(path: Any, argument: str) -> np.ndarray:
    """One ``.npy`` array, its header checked (shape, dtype, size against :func:`array_budget` and against
    the bytes the file holds) before the array is allocated.  No pickles."""
    p = check_input_file(path, argument)
    kind = sniff(p)
    if kind != "npy":
        raise ValueError(f"{argument}: {str(p)!r} is {describe(kind)}; expected one .npy array "
                         f"(numpy.save(path, array))")
    with open(p, "rb") as fh:
        shape, dtype, fortran = _npy_header(fh, f"{argument} {str(p)!r}")
        nbytes, offset = _nbytes(shape, dtype), fh.tell()
        budget = array_budget()
        if nbytes > budget:
            raise _refuse_size(f"{argument} {str(p)!r}", nbytes, budget)
        if offset + nbytes > p.stat().st_size:
            raise ValueError(f"{argument}: {str(p)!r} declares shape {shape} {dtype} ({nbytes} bytes) but holds only "
                             f"{p.stat().st_size - offset}: truncated")
        fh.seek(0)
        return np.lib.format.read_array(fh, allow_pickle=False)


def read_npz(path: Any, argument: str) -> dict:
    """Every member of an ``.npz`` archive, each ``.npy`` header checked and the declared bytes summed against
    :func:`array_budget` before any member is inflated.  No pickles."""
    p = pathlib.Path(path)
    what = f"{argument} {str(p)!r}"
    _check_zip_directory(p, what)
    try:
        z = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ValueError(f"{what}: not a readable .npz archive ({type(exc).__name__}: {exc})") from None
    with z:
        infos = z.infolist()
        if len(infos) > 10_000:
            raise ValueError(f"{what} has {len(infos)} members; a model file has at most 10,000 arrays")
        specs, total, budget = [], 0, array_budget()
        try:
            for info in infos:
                if not info.filename.endswith(".npy"):
                    raise ValueError(f"{what}: member {info.filename!r} is not a .npy array")
                with z.open(info) as fh:
                    shape, dtype, _ = _npy_header(fh, f"{what} member {info.filename!r}")
                total += _nbytes(shape, dtype)
                if total > budget:
                    raise _refuse_size(what, total, budget)
                specs.append(info)
            out = {}
            for info in specs:
                with z.open(info) as fh:
                    out[info.filename[: -len(".npy")]] = np.lib.format.read_array(fh, allow_pickle=False)
        except (zipfile.BadZipFile, EOFError, OSError, KeyError, NotImplementedError, zlib.error, lzma.LZMAError,
                RuntimeError, tokenize.TokenError) as exc:
            raise ValueError(f"{what}: not a readable .npz archive (truncated or corrupt: {type(exc).__name__}: "
                             f"{exc})") from None
        except ValueError as exc:
            if str(exc).startswith(what):
                raise
            raise ValueError(f"{what}: not a readable .npz archive ({exc})") from None
    return out


def check_zip_declared_size(path: Any, argument: str) -> None:
    """Refuse a zip archive (a torch checkpoint) whose members declare more bytes than :func:`array_budget`."""
    try:
        with zipfile.ZipFile(path) as z:
            total = sum(i.file_size for i in z.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ValueError(f"{argument}: {str(path)!r} is not a readable zip archive ({exc})") from None
    budget = array_budget()
    if total > budget:
        raise _refuse_size(f"{argument} {str(path)!r}", total, budget)


def check_tensor_sizes(obj: Any, what: str) -> None:
    """Refuse a loaded torch object whose tensors would need more than :func:`array_budget` as arrays.

    Sized by ``numel() * element_size()`` — the array each becomes — not by its storage, so zero-stride
    (``expand``) tensors and many views of one storage count at the size they will have.
    """
    import torch

    total, budget, seen = 0, array_budget(), 0
    stack = [(obj, 0)]
    while stack:
        x, depth = stack.pop()
        seen += 1
        if depth > MAX_DEPTH or seen > 1_000_000:
            raise ValueError(f"{what} nests deeper than {MAX_DEPTH} levels or holds over 10^6 objects; not a checkpoint")
        if isinstance(x, torch.Tensor):
            total += x.numel() * x.element_size()
            if total > budget:
                raise _refuse_size(what, total, budget)
        elif isinstance(x, torch.nn.Module):
            stack.extend((t, depth + 1) for t in x.state_dict().values())
        elif isinstance(x, dict):
            stack.extend((v, depth + 1) for v in x.values())
        elif isinstance(x, (list, tuple)):
            stack.extend((v, depth + 1) for v in x)
