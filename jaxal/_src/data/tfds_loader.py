"""Real datasets through tensorflow-datasets' own registered builders.

``tensorflow_datasets`` is imported lazily: it is an optional dependency
(``pip install 'jaxal[datasets]'``) and nothing else in jaxal needs it.

Preparing a dataset (download, or the original files from a ``manual_dir``,
then conversion) runs TFDS's builder, which needs TensorFlow. Datasets are
prepared in the ``array_record`` format, so reading them afterwards goes through
``tfds.data_source`` and needs neither TensorFlow nor a network.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from typing import Any

import numpy as np

INSTALL_HINT = "pip install 'jaxal[datasets]'"

# jaxal name -> TFDS builder name. Any other registered image-classification
# builder is reachable as "tfds:<builder name>" (e.g. "tfds:emnist/letters").
TFDS_NAMES = {
  "mnist": "mnist",
  "fashion_mnist": "fashion_mnist",
  "kmnist": "kmnist",
  "cifar10": "cifar10",
  "cifar100": "cifar100",
  "svhn_cropped": "svhn_cropped",
}
PREFIX = "tfds:"

# Read this many examples per data-source call (bounds the list of decoded dicts).
_CHUNK = 4096

# Decoded splits are kept beside the prepared files, in this folder of the dataset's version
# folder: TFDS's data source parses and decodes every example on every read (about 20 s for
# MNIST's 70,000 on 2 CPU cores), the kept arrays load in a fraction of a second.
# ``JAXAL_DATASET_ARRAYS=0`` (or ``off``) neither reads nor writes them.
ARRAYS_FOLDER = "jaxal-arrays"
ARRAYS_ENV = "JAXAL_DATASET_ARRAYS"
_ARRAYS_FORMAT = "1"  # bumped when what is kept, or how, changes


class DatasetUnavailableError(RuntimeError):
  """A dataset is not prepared and could not be prepared (no download, no manual files)."""


def builder_name(name: str) -> str:
  """The TFDS builder name behind a jaxal dataset name."""
  if name.startswith(PREFIX):
    tail = name[len(PREFIX) :]
    if not tail:
      raise ValueError(f"dataset {name!r} names no TFDS builder; write e.g. 'tfds:emnist/letters'")
    # "tfds:NAME:CONFIG" is TFDS's "NAME/CONFIG".
    return tail.replace(":", "/", 1) if "/" not in tail else tail
  return TFDS_NAMES[name]


def import_tfds() -> Any:
  """``tensorflow_datasets``, or an ImportError that says how to install it."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
      f"real datasets (mnist, fashion_mnist, cifar10, ...) are read through "
      f"tensorflow-datasets, which is not installed: {INSTALL_HINT} "
      f"(the bundled 'digits' needs nothing). Original error: {e}"
    ) from e
  return tfds


def _expected_files(builder: Any) -> list[str]:
  infos = getattr(builder, "url_infos", None) or {}
  return sorted({info.filename or os.path.basename(url) for url, info in infos.items()})


def _manual_help(name: str, builder: Any) -> str:
  files = _expected_files(builder)
  listing = (
    f" holding the original files ({', '.join(files)})"
    if files
    else " holding the dataset's original files (see the TFDS catalog page of "
    f"{builder.name!r} for their names)"
  )
  return (
    f"to prepare {name!r} offline, pass manual_dir=FOLDER (jaxal run --manual-dir FOLDER){listing}; "
    "TFDS uses them instead of downloading"
  )


def prepare(
  name: str, *, data_dir: str | None = None, manual_dir: str | None = None, download: bool = True
) -> Any:
  """The prepared TFDS builder of ``name``, preparing it first if needed.

  Args:
    name: a jaxal dataset name (``mnist``, ``fashion_mnist``, ``cifar10``,
      ``svhn_cropped``, ...) or ``"tfds:<builder>"``.
    data_dir: where TFDS keeps prepared datasets; None is TFDS's default
      (``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
    manual_dir: a folder holding the dataset's original files (as the TFDS
      builder would download them); used instead of the network through
      ``tfds.download.DownloadConfig(manual_dir=...)``.
    download: when False, never touch the network: an unprepared dataset
      without ``manual_dir`` is an error at once.

  Returns:
    The ``tfds.core.DatasetBuilder``, prepared in the ``array_record`` format.

  Raises:
    ImportError: tensorflow-datasets (or, to prepare, TensorFlow) is missing.
    DatasetUnavailableError: not prepared and it could not be prepared; the
      message says how to use ``manual_dir``.
  """
  tfds = import_tfds()
  bname = builder_name(name)
  try:
    # Whatever format it was prepared in (e.g. tfrecord by tfds.load), a prepared dataset is used.
    builder = tfds.builder(bname, data_dir=data_dir)
    if builder.is_prepared():
      return builder
    builder = tfds.builder(bname, data_dir=data_dir, file_format="array_record")
  except Exception as e:  # tfds raises its own DatasetNotFoundError and friends
    raise ValueError(f"tensorflow-datasets cannot build {bname!r} for dataset {name!r}: {e}") from e
  if manual_dir is not None:
    manual_dir = os.path.abspath(os.path.expanduser(os.fspath(manual_dir)))
    if not os.path.isdir(manual_dir):
      raise DatasetUnavailableError(
        f"manual_dir {manual_dir!r} for dataset {name!r} is not a folder; "
        + _manual_help(name, builder)
      )
    missing = [
      f for f in _expected_files(builder) if not os.path.exists(os.path.join(manual_dir, f))
    ]
    if missing:
      raise DatasetUnavailableError(
        f"manual_dir {manual_dir!r} lacks {', '.join(missing)} for dataset {name!r}; "
        + _manual_help(name, builder)
      )
  elif not download:
    raise DatasetUnavailableError(
      f"dataset {name!r} is not prepared in {str(builder.data_dir)!r} and downloading is "
      f"off; {_manual_help(name, builder)}, or pass data_dir=FOLDER where it is prepared"
    )
  try:
    builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
    )
  except ImportError as e:
    raise ImportError(
      f"preparing {name!r} runs TFDS's builder, which needs TensorFlow: {INSTALL_HINT} "
      f"(reading a prepared dataset afterwards does not). Original error: {e}"
    ) from e
  except Exception as e:  # network errors come from requests, urllib, OSError, ...
    raise DatasetUnavailableError(
      f"could not prepare dataset {name!r} in {str(builder.data_dir)!r} "
      f"({type(e).__name__}: {str(e)[:300]}); {_manual_help(name, builder)}"
    ) from e
  return builder


def _keys(builder: Any) -> tuple[str, str]:
  keys = builder.info.supervised_keys
  if not keys or len(keys) != 2 or not all(isinstance(k, str) for k in keys):
    raise ValueError(
      f"TFDS dataset {builder.name!r} has no (image, label) supervised keys "
      f"(got {keys!r}); jaxal reads image classification datasets"
    )
  return keys[0], keys[1]


def num_classes(builder: Any) -> int:
  """Number of classes of the builder's label feature."""
  _, label_key = _keys(builder)
  return int(builder.info.features[label_key].num_classes)


def read(builder: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
  """A prepared split as ``(images uint8 [N, H, W, C], labels int32 [N])``.

  Reads through ``builder.as_data_source`` (array_record; no TensorFlow). A
  dataset prepared earlier in another format (tfrecord) is read through
  ``tfds.as_numpy(builder.as_dataset(...))`` instead, which needs TensorFlow.

  The decoded arrays are then kept in ``<version folder>/jaxal-arrays/`` (when it can be
  written), under a key of the split, the builder's name and version, and the names, sizes
  and times of the prepared files: a later read of the same split loads them instead of
  decoding again, and a dataset prepared anew is decoded anew. ``JAXAL_DATASET_ARRAYS=0``
  turns this off.
  """
  image_key, label_key = _keys(builder)
  path = _arrays_path(builder, split, image_key, label_key)
  if path is not None:
    kept = _load_arrays(path)
    if kept is not None:
      return kept
  images, labels = _decode(builder, split, image_key, label_key)
  if path is not None:
    _keep_arrays(path, images, labels)
  return images, labels


def _arrays_on() -> bool:
  return os.environ.get(ARRAYS_ENV, "1").strip().lower() not in ("0", "off", "false", "no")


def _arrays_path(builder: Any, split: str, image_key: str, label_key: str) -> str | None:
  """Where the decoded split is kept, or None (turned off, or no prepared files to key on:
  e.g. ``tfds.testing.mock_data``)."""
  if not _arrays_on():
    return None
  try:
    folder = os.fspath(builder.data_path)
    entries = sorted(e for e in os.listdir(folder) if e != ARRAYS_FOLDER)
    stats = [os.stat(os.path.join(folder, e)) for e in entries]
  except (AttributeError, TypeError, OSError):
    return None
  if not any(e.endswith("dataset_info.json") for e in entries):
    return None
  split_id = hashlib.sha256(repr((builder.name, split)).encode()).hexdigest()[:16]
  h = hashlib.sha256()
  h.update(repr((_ARRAYS_FORMAT, builder.name, str(builder.version), split)).encode())
  h.update(repr((image_key, label_key, np.__version__.split(".")[0])).encode())
  for entry, st in zip(entries, stats):
    h.update(f"{entry}:{st.st_size}:{st.st_mtime_ns};".encode())
  return os.path.join(folder, ARRAYS_FOLDER, f"{split_id}-{h.hexdigest()[:32]}.npz")


def _load_arrays(path: str) -> tuple[np.ndarray, np.ndarray] | None:
  """The kept ``(images, labels)`` at ``path``, or None when absent or unreadable."""
  try:
    with np.load(path, allow_pickle=False) as kept:
      images, labels = kept["images"], kept["labels"]
  except (OSError, ValueError, KeyError, EOFError):
    return None
  if labels.dtype != np.int32 or labels.ndim != 1 or images.ndim < 2:
    return None
  if images.shape[0] != labels.shape[0] or images.shape[0] == 0:
    return None
  return images, labels


def _keep_arrays(path: str, images: np.ndarray, labels: np.ndarray) -> None:
  """Writes the decoded split atomically, removing what was kept of the same split under
  another key (files since prepared anew); a folder that cannot be written keeps nothing."""
  folder, entry = os.path.split(path)
  tmp = f"{path}.{os.getpid()}.tmp"
  try:
    os.makedirs(folder, exist_ok=True)
    with open(tmp, "wb") as f:
      np.savez(f, images=images, labels=labels)
    os.replace(tmp, path)
    split_id = entry.split("-", 1)[0]
    for old in os.listdir(folder):
      if old.startswith(split_id + "-") and old.endswith(".npz") and old != entry:
        with contextlib.suppress(OSError):
          os.remove(os.path.join(folder, old))
  except OSError:
    with contextlib.suppress(OSError):
      os.remove(tmp)


def _decode(builder: Any, split: str, image_key: str, label_key: str):
  """``(images, labels)`` of a split decoded through TFDS."""
  try:
    source = builder.as_data_source(split=split)
  except NotImplementedError:
    # Prepared as tfrecord by someone else: random access is not possible.
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    try:
      batch = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
    except ImportError as e:
      raise ImportError(
        f"{builder.name!r} in {str(builder.data_dir)!r} was prepared as tfrecord, which needs "
        f"TensorFlow to read: {INSTALL_HINT}, or prepare it again in another data_dir"
      ) from e
    return np.asarray(batch[image_key]), np.asarray(batch[label_key]).astype(np.int32)
  n = len(source)
  if n == 0:
    raise ValueError(f"split {split!r} of {builder.name!r} is empty")
  first = np.asarray(source[0][image_key])
  images = np.empty((n, *first.shape), first.dtype)
  labels = np.empty((n,), np.int32)
  for start in range(0, n, _CHUNK):
    stop = min(n, start + _CHUNK)
    keys = list(range(start, stop))
    try:
      items = source.__getitems__(keys)  # batched: 2-3x faster than one by one
    except TypeError:
      # tfds.testing.mock_data's source implements only __getitem__ correctly.
      items = [source[i] for i in keys]
    images[start:stop] = np.stack([np.asarray(it[image_key]) for it in items])
    labels[start:stop] = np.asarray([it[label_key] for it in items], np.int32)
  return images, labels


def to_float_images(images: np.ndarray) -> np.ndarray:
  """uint8 images ``[N, H, W, C]`` (or ``[N, H, W]``) as float32 in ``[0, 1]``, NHWC."""
  if images.ndim == 3:
    images = images[..., None]
  if images.ndim != 4:
    raise ValueError(f"expected images of shape [num, height, width, channels], got {images.shape}")
  if images.dtype == np.uint8:
    return images.astype(np.float32) / np.float32(255.0)
  out = images.astype(np.float32)
  if out.size and (out.min() < 0.0 or out.max() > 1.0):
    raise ValueError(
      f"images of dtype {images.dtype} are not in [0, 1] (range {out.min()}..{out.max()})"
    )
  return out
