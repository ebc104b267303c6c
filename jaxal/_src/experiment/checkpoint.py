"""The file format of experiment checkpoints: atomic, checksummed writes.

A checkpoint is one ``.npz`` file (NumPy arrays only, no pickle) holding the
named arrays, a JSON metadata record and a sha256 over both; the zip archive's
comment holds a second sha256, over every byte of the file before it, so a
change to any byte (zip headers included) is found. It is written to
a temporary file in the same folder, flushed and ``fsync``-ed, then moved over
the old file with ``os.replace`` (atomic on POSIX and Windows) and the folder
is ``fsync``-ed: a reader sees the old checkpoint or the new one, never a mix,
whenever the writer is killed. A file that is truncated, unreadable or whose
checksum does not match is refused with :class:`CheckpointError`, never
silently ignored.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import tempfile
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

FORMAT = "jaxal-checkpoint-2"  # 2: sealed by a whole-file sha256; train states beside it
_META = "__meta__"
_SHA = "__sha256__"
TMP_SUFFIX = ".jaxal-tmp"
# The zip comment: this prefix, then the hex sha256 of every byte of the file before the hex.
_SEAL = b"jaxal-sha256:"
_EOCD = b"PK\x05\x06"  # the end-of-central-directory record: 22 bytes, then the comment


class CheckpointError(RuntimeError):
  """A checkpoint is corrupt, partial or belongs to another experiment."""


def _digest(arrays: Mapping[str, np.ndarray], meta_bytes: bytes) -> str:
  h = hashlib.sha256()
  h.update(meta_bytes)
  for name in sorted(arrays):
    a = np.ascontiguousarray(arrays[name])
    h.update(f"\0{name}\0{a.dtype.str}\0{a.shape}\0".encode())
    h.update(memoryview(a).cast("B") if a.size else b"")
  return h.hexdigest()


def _seal(data: bytes) -> bytes:
  """A zip archive without a comment, given the comment ``_SEAL`` + sha256 of all bytes before it."""
  if data[-22:-18] != _EOCD or data[-2:] != b"\0\0":  # pragma: no cover - numpy's own zip
    raise ValueError("expected a zip archive without a comment")
  head = data[:-2] + struct.pack("<H", len(_SEAL) + 64) + _SEAL
  return head + hashlib.sha256(head).hexdigest().encode()


def _sealed(data: bytes) -> bool | None:
  """Whether the file's trailing sha256 matches (None: the file carries none)."""
  head, digest = data[:-64], data[-64:]
  if not head.endswith(_SEAL):
    return None
  return hashlib.sha256(head).hexdigest().encode() == digest


def _fsync_dir(path: str) -> None:
  if os.name != "posix":  # pragma: no cover - Windows cannot open folders
    return
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def atomic_write_bytes(path: str, data: bytes) -> None:
  """Writes ``data`` to ``path`` atomically (temp file, fsync, os.replace, fsync folder)."""
  folder = os.path.dirname(os.path.abspath(path))
  try:
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=TMP_SUFFIX, dir=folder)
  except OSError as e:  # name the folder, not the temporary file that could not be made
    raise PermissionError(
      f"folder {folder!r} cannot be written ({e.strerror or type(e).__name__}), so "
      f"{os.path.basename(path)!r} cannot be saved there"
    ) from e
  try:
    # mkstemp makes the file private (0600); give it the mode open() would (0666 less umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  _fsync_dir(folder)


def atomic_write_json(path: str, obj: Any) -> None:
  """``json.dump`` to ``path`` atomically."""
  atomic_write_bytes(path, (json.dumps(obj, indent=1) + "\n").encode())


def remove_stale_temporaries(folder: str, *, recursive: bool = True) -> list[str]:
  """Deletes temporary files a killed writer left in ``folder`` (and below); returns them."""
  removed = []
  walk = (
    os.walk(folder)
    if recursive
    else [(folder, [], os.listdir(folder) if os.path.isdir(folder) else [])]
  )
  for root, _, files in walk:
    for name in files:
      if name.endswith(TMP_SUFFIX):
        os.remove(os.path.join(root, name))
        removed.append(os.path.join(root, name))
  return removed


def save(path: str, arrays: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
  """Saves arrays and a JSON-able ``meta`` record to ``path`` atomically, with a checksum.

  Args:
    path: the checkpoint file (``.npz``); its folder must exist.
    arrays: name -> array (NumPy-convertible; no object dtypes).
    meta: a JSON-serialisable record saved beside the arrays.
  """
  arrays = {k: np.asarray(v) for k, v in arrays.items()}
  for k, v in arrays.items():
    if k in (_META, _SHA):
      raise ValueError(f"array name {k!r} is reserved")
    if v.dtype == object:
      raise TypeError(f"array {k!r} has dtype object; checkpoints hold plain arrays only")
  meta_bytes = json.dumps({"format": FORMAT, **meta}, sort_keys=True).encode()
  digest = _digest(arrays, meta_bytes)
  buf = io.BytesIO()
  np.savez(
    buf,
    **arrays,
    **{_META: np.frombuffer(meta_bytes, np.uint8), _SHA: np.frombuffer(digest.encode(), np.uint8)},
  )
  atomic_write_bytes(path, _seal(buf.getvalue()))


def load(path: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """Loads a checkpoint written by :func:`save`, verifying its checksum.

  Returns:
    ``(arrays, meta)``.

  Raises:
    CheckpointError: the file is unreadable, truncated, not a jaxal
      checkpoint, or a checksum (of the file's bytes, or of its arrays and
      metadata) does not match its content.
  """
  hint = (
    "it was not written by this jaxal version or was damaged after writing (jaxal "
    "writes checkpoints atomically). Delete it to recompute that run from its first "
    "round, or restore it from a backup"
  )
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise CheckpointError(
      f"checkpoint {path!r} is unreadable ({type(e).__name__}: {e}); {hint}"
    ) from e
  sealed = _sealed(data)  # first: a damaged zip header can make zipfile raise anything
  if sealed is False:
    raise CheckpointError(f"checkpoint {path!r} fails its sha256 checksum; {hint}")
  try:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
      arrays = {k: z[k] for k in z.files}
  except (
    OSError,
    ValueError,
    EOFError,
    zipfile.BadZipFile,
    KeyError,
    NotImplementedError,
  ) as e:
    raise CheckpointError(
      f"checkpoint {path!r} is unreadable ({type(e).__name__}: {e}); {hint}"
    ) from e
  if _META not in arrays or _SHA not in arrays or sealed is None:
    raise CheckpointError(f"checkpoint {path!r} lacks its metadata or checksum; {hint}")
  meta_bytes = arrays.pop(_META).tobytes()
  stored = arrays.pop(_SHA).tobytes().decode("ascii", "replace")
  if _digest(arrays, meta_bytes) != stored:
    raise CheckpointError(f"checkpoint {path!r} fails its sha256 checksum; {hint}")
  try:
    meta = json.loads(meta_bytes)
  except ValueError as e:  # pragma: no cover - the checksum covers the metadata
    raise CheckpointError(f"checkpoint {path!r} has unreadable metadata; {hint}") from e
  if meta.get("format") != FORMAT:
    raise CheckpointError(
      f"checkpoint {path!r} has format {meta.get('format')!r}, not {FORMAT!r}; {hint}"
    )
  return arrays, meta
