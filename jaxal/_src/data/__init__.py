"""Datasets as NumPy arrays: the bundled UCI digits, a user's own arrays and files, TFDS.

``digits`` is bundled with the package (no download, no extra dependency).
A researcher's own data comes in as arrays (:func:`from_arrays`), a ``.npz``
file (:func:`from_npz`) or a CSV/TSV table (:func:`from_csv`); a dataset name
ending in ``.npz``, ``.csv`` or ``.tsv`` is read as such a file.
``mnist``, ``fashion_mnist``, ``cifar10``, ``svhn_cropped`` (and any TFDS
builder as ``"tfds:<name>[:<config>]"``, image or tabular) go through
tensorflow-datasets' registered builders, imported lazily
(``pip install 'jaxal[datasets]'``).
"""

from __future__ import annotations

import csv
import hashlib
import importlib.resources
import os
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import numpy as np

from jaxal._src import checks
from jaxal._src.data import tfds_loader
from jaxal._src.data.tfds_loader import DatasetUnavailableError as DatasetUnavailableError

DIGITS_SHA256 = "3cd775a345ecb15adc04f14b2d7394d83acc035d1b2a5d0f32fc34c9d2fcd0c4"


class Dataset(NamedTuple):
  """A classification dataset as NumPy arrays, ready for the loop.

  ``x_*`` are float32 with shape ``[num, *example_shape]`` (images in ``[0, 1]``,
  tabular features standardised on the training split); ``y_*`` are int32 class
  labels ``[num]``.

  Attributes:
    name: the dataset's name, as :func:`load_dataset` takes it.
    x_train: ``[num_train, *example_shape]`` float32, the training examples (the pool).
    y_train: ``[num_train]`` int32 class labels of ``x_train``.
    x_test: ``[num_test, *example_shape]`` float32, the test examples.
    y_test: ``[num_test]`` int32 class labels of ``x_test``.
    num_classes: the number of classes; labels lie in ``0 .. num_classes - 1``.
  """

  name: str
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int


def digits_raw() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The bundled file as stored: ``(images, labels, is_test)``.

  Returns:
    ``images`` uint8 ``[1797, 8, 8]`` (pixel counts 0..16), ``labels``
    ``[1797]``, ``is_test`` bool ``[1797]`` (the fixed test split).
  """
  resource = importlib.resources.files("jaxal._src.data").joinpath("digits.npz")
  with resource.open("rb") as f, np.load(f) as z:
    return z["images"], z["labels"], z["is_test"]


def load_digits() -> Dataset:
  """The UCI optical-recognition handwritten digits, bundled in the package.

  1,797 grayscale 8x8 images of the digits 0-9 (pixel counts 0..16, scaled to
  ``[0, 1]``), split once and for all into 1,347 training (the pool) and 450
  test images, stratified by class (25% of each class in test).

  Returns:
    A :class:`Dataset` with ``x_train [1347, 8, 8]``, ``x_test [450, 8, 8]``.

  References:
    Alpaydin & Kaynak, Optical Recognition of Handwritten Digits, UCI Machine
    Learning Repository, 1998 (CC BY 4.0); the 1,797-image copy distributed
    with scikit-learn.
  """
  images, labels, is_test = digits_raw()
  x = images.astype(np.float32) / 16.0
  y = labels.astype(np.int32)
  return Dataset("digits", x[~is_test], y[~is_test], x[is_test], y[is_test], 10)


LOADERS = {"digits": load_digits}


def names() -> list[str]:
  """Every dataset name :func:`load` and :func:`load_dataset` accept (plus ``"tfds:<builder>"``)."""
  return sorted([*LOADERS, *tfds_loader.TFDS_NAMES])


FILE_SUFFIXES = (".npz", ".csv", ".tsv")


def is_file_name(name: str) -> bool:
  """Whether a dataset name is a file path (it ends in ``.npz``, ``.csv`` or ``.tsv``)."""
  return isinstance(name, str) and name.lower().endswith(FILE_SUFFIXES)


def check_name(name: str) -> str:
  """``name`` if it is a valid dataset name, else a ValueError listing the valid ones."""
  if not isinstance(name, str):
    raise TypeError(f"dataset name must be a str, got {name!r} of type {type(name).__name__}")
  if is_file_name(name):
    return name
  if name.startswith(tfds_loader.PREFIX):
    tfds_loader.builder_name(name)
    return name
  return checks.check_one_of(name, names(), "dataset")


def _digits_split(split: str) -> tuple[np.ndarray, np.ndarray]:
  ds = load_digits()
  if split not in ("train", "test"):
    raise ValueError(f"unknown split {split!r} of dataset 'digits'; valid splits are: test, train")
  return (ds.x_train, ds.y_train) if split == "train" else (ds.x_test, ds.y_test)


def load(
  name: str,
  split: str,
  *,
  data_dir: str | None = None,
  manual_dir: str | None = None,
  download: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
  """One split of a dataset as NumPy arrays ready for the loop.

  Real datasets go through tensorflow-datasets' own registered builders. The
  first call prepares the dataset into ``data_dir`` (downloading it, or reading
  the original files from ``manual_dir`` through
  ``tfds.download.DownloadConfig(manual_dir=...)``; this step needs
  TensorFlow); later calls read the prepared ``array_record`` files through
  ``tfds.data_source``, without TensorFlow or a network. The first read of a split
  also keeps its decoded arrays beside the prepared files (``jaxal-arrays/`` in the
  dataset's version folder, when it can be written): later reads load them in a
  fraction of a second instead of decoding every example again (about 20 s for
  MNIST on 2 CPU cores), until the dataset is prepared anew.
  ``JAXAL_DATASET_ARRAYS=0`` turns this off.

  Args:
    name: ``digits`` (bundled), ``mnist``, ``fashion_mnist``, ``kmnist``,
      ``cifar10``, ``cifar100``, ``svhn_cropped``, or ``"tfds:<builder>"`` for
      any other TFDS image-classification builder.
    split: a TFDS split (``"train"``, ``"test"``, ``"train[:10%]"``, ...);
      ``digits`` has ``"train"`` (the 1,347-image pool) and ``"test"``.
    data_dir: where prepared datasets live (TFDS's default when None:
      ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
    manual_dir: a folder holding the dataset's original files (for MNIST the
      four ``*-idx?-ubyte.gz`` files), used instead of downloading.
    download: when False, an unprepared dataset without ``manual_dir`` is an
      error at once instead of a download attempt.

  Returns:
    ``(images, labels)``: images float32 in ``[0, 1]`` with shape
    ``[num, height, width, channels]`` (``[num, 8, 8]`` for digits), labels
    int32 ``[num]``.

  Raises:
    ValueError: unknown dataset name (the message lists the valid ones).
    ImportError: tensorflow-datasets is not installed (``pip install
      'jaxal[datasets]'``).
    DatasetUnavailableError: not prepared and it could not be prepared; the
      message says how to use ``manual_dir``.
  """
  check_name(name)
  if not isinstance(split, str):
    raise TypeError(
      f"split must be a str such as 'train' or 'test', got {split!r} of type {type(split).__name__}"
    )
  download = checks.check_bool(download, "download")
  if name == "digits":
    return _digits_split(split)
  builder = tfds_loader.prepare(name, data_dir=data_dir, manual_dir=manual_dir, download=download)
  images, labels = tfds_loader.read(builder, split)
  return tfds_loader.to_float_images(images), labels


def load_dataset(
  name: str,
  *,
  data_dir: str | None = None,
  manual_dir: str | None = None,
  download: bool = True,
  label_column: str | int | None = None,
  test_fraction: float = 0.2,
  seed: int = 0,
) -> Dataset:
  """A dataset by name with its train (pool) and test splits; see :func:`load`.

  Args:
    name: ``digits`` (bundled), ``mnist``, ``fashion_mnist``, ``kmnist``, ``cifar10``,
      ``cifar100``, ``svhn_cropped``, ``"tfds:<builder>[:<config>]"`` for any other TFDS
      classification builder (images, or a feature vector), or a path ending in ``.npz``
      (see :func:`from_npz`), ``.csv`` or ``.tsv`` (see :func:`from_csv`).
    data_dir: where prepared datasets live (TFDS's default when None).
    manual_dir: a folder holding the dataset's original files, used instead of downloading.
    download: when False, an unprepared dataset without ``manual_dir`` is an error at once
      instead of a download attempt.
    label_column: the label column of a CSV/TSV file (see :func:`from_csv`).
    test_fraction: the test share of a seeded, stratified split, for data without a test
      split (a CSV, a ``.npz`` without ``x_test``, a TFDS builder without ``"test"``).
    seed: the seed of that split.

  Returns:
    A :class:`Dataset` with both splits: float32 examples, int32 labels.

  Raises:
    ValueError: for an unknown name (the message lists the valid ones) or a file that
      cannot be read as a dataset.
    FileNotFoundError: a dataset file that does not exist.

  Example:
    >>> from jaxal import datasets
    >>> datasets.load_dataset("digits").x_train.shape
    (1347, 8, 8)
  """
  check_name(name)
  download = checks.check_bool(download, "download")
  if is_file_name(name):
    if name.lower().endswith(".npz"):
      return from_npz(name, test_fraction=test_fraction, seed=seed)
    return from_csv(name, label_column=label_column, test_fraction=test_fraction, seed=seed)
  if name in LOADERS:
    return LOADERS[name]()
  builder = tfds_loader.prepare(name, data_dir=data_dir, manual_dir=manual_dir, download=download)
  x_train, y_train = tfds_loader.read(builder, "train")
  k = tfds_loader.num_classes(builder)
  try:
    x_test, y_test = tfds_loader.read(builder, "test")
  except (ValueError, KeyError):  # no "test" split: a seeded split of "train"
    x_test = y_test = None
  tabular = x_train.ndim == 2  # a feature vector: standardised on the training split
  if not tabular:
    x_train = tfds_loader.to_float_images(x_train)
    x_test = None if x_test is None else tfds_loader.to_float_images(x_test)
  if x_test is not None and not tabular:
    return Dataset(name, x_train, y_train, x_test, y_test, k)
  return from_arrays(
    x_train,
    y_train,
    x_test,
    y_test,
    name=name,
    num_classes=k,
    standardize=tabular,
    test_fraction=test_fraction,
    seed=seed,
  )


def split_indices(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """A seeded split stratified by class: ``floor(test_fraction * n_c)`` of each class to test.

  A class with one example keeps it in the training split.

  Args:
    y: ``[num]`` int labels.
    test_fraction: the share of each class that goes to test, in ``[0, 1)``.
    seed: the split's seed (``numpy.random.default_rng``).

  Returns:
    ``(train_idx, test_idx)``, each sorted.
  """
  rng = np.random.default_rng(seed)
  test = []
  for c in np.unique(y):  # per class (data preparation, once)
    members = np.flatnonzero(y == c)
    take = int(np.floor(test_fraction * len(members)))
    test.append(rng.permutation(members)[:take])
  test_idx = np.sort(np.concatenate(test)) if test else np.zeros((0,), np.int64)
  train_mask = np.ones(len(y), bool)
  train_mask[test_idx] = False
  return np.flatnonzero(train_mask), test_idx


def _labels(y: Any, name: str, num_classes: int | None) -> np.ndarray:
  y = np.asarray(y)
  if y.ndim != 1:
    raise ValueError(f"{name} must have shape [num], got shape {y.shape}")
  if y.dtype.kind == "f":
    if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
      raise ValueError(f"{name} must hold integer class labels, got float values such as {y[:5]}")
  elif y.dtype.kind not in "iub":
    raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype}")
  y = y.astype(np.int64)
  high = num_classes if num_classes is not None else None
  if y.size and (y.min() < 0 or (high is not None and y.max() >= high)):
    raise ValueError(
      f"{name} must lie in 0 .. {'num_classes - 1' if high is None else high - 1}, "
      f"got values {int(y.min())} .. {int(y.max())}"
    )
  return y.astype(np.int32)


def from_arrays(
  x_train: Any,
  y_train: Any,
  x_test: Any = None,
  y_test: Any = None,
  *,
  name: str = "arrays",
  num_classes: int | None = None,
  standardize: bool = False,
  test_fraction: float = 0.2,
  seed: int = 0,
) -> Dataset:
  """A :class:`Dataset` from a researcher's own arrays, checked before any run starts.

  Without a test set, a seeded split stratified by class (:func:`split_indices`)
  holds out ``test_fraction`` of each class. Every class ``0 .. num_classes - 1``
  must have an example in the training split (the pool).

  Args:
    x_train: ``[num_train, ...]`` numeric examples (cast to float32; finite).
    y_train: ``[num_train]`` integer class labels in ``0 .. num_classes - 1``.
    x_test: ``[num_test, ...]`` test examples, or None to split ``x_train``.
    y_test: ``[num_test]`` test labels (given with ``x_test``).
    name: the dataset's name (saved with the results).
    num_classes: the number of classes (None: ``max(label) + 1``).
    standardize: standardise each feature to mean 0, std 1 on the training split
      (constant features are centred only), the same transform applied to test.
    test_fraction: the test share of each class when ``x_test`` is None, in ``(0, 1)``.
    seed: the seed of that split.

  Returns:
    The :class:`Dataset`.

  Raises:
    ValueError: mismatched lengths or shapes, non-finite values, labels out of range,
      a class with no training example, or an empty split.
    TypeError: non-numeric examples or labels.

  Example:
    >>> import numpy as np
    >>> from jaxal import datasets
    >>> x, y = np.arange(40.0).reshape(20, 2), np.arange(20) % 2
    >>> ds = datasets.from_arrays(x, y, test_fraction=0.25)
    >>> ds.x_train.shape, ds.x_test.shape, ds.num_classes
    ((16, 2), (4, 2), 2)
  """
  if not isinstance(name, str):
    raise TypeError(f"name must be a str, got {name!r}")
  if num_classes is not None:
    num_classes = checks.check_int(num_classes, "num_classes", low=1)
  standardize = checks.check_bool(standardize, "standardize")
  seed = checks.check_int(seed, "seed")
  if (x_test is None) != (y_test is None):
    raise ValueError("x_test and y_test must be given together (or neither, to split x_train)")

  def features(x, arg):
    x = np.asarray(x)
    if x.dtype.kind not in "fiub":
      raise TypeError(f"{arg} must be numeric, got dtype {x.dtype} and shape {x.shape}")
    if x.ndim < 2:
      raise ValueError(f"{arg} must have shape [num, ...], got shape {x.shape}")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
      raise ValueError(f"{arg} holds NaN or infinite values (shape {x.shape})")
    return x

  x_train = features(x_train, "x_train")
  y_train = _labels(y_train, "y_train", num_classes)
  if len(x_train) != len(y_train):
    raise ValueError(
      f"x_train and y_train must have the same length, got {x_train.shape} and {y_train.shape}"
    )
  if x_test is None:
    test_fraction = checks.check_float(
      test_fraction, "test_fraction", low=0.0, high=1.0, low_open=True, high_open=True
    )
    tr, te = split_indices(y_train, test_fraction, seed)
    x_train, y_train, x_test, y_test = x_train[tr], y_train[tr], x_train[te], y_train[te]
  else:
    x_test = features(x_test, "x_test")
    y_test = _labels(y_test, "y_test", num_classes)
    if len(x_test) != len(y_test):
      raise ValueError(
        f"x_test and y_test must have the same length, got {x_test.shape} and {y_test.shape}"
      )
    if x_test.shape[1:] != x_train.shape[1:]:
      raise ValueError(
        f"x_test's examples have shape {x_test.shape[1:]}, x_train's {x_train.shape[1:]}"
      )
  if len(x_train) == 0 or len(x_test) == 0:
    raise ValueError(
      f"dataset {name!r} needs examples in both splits, got {len(x_train)} training and "
      f"{len(x_test)} test examples"
    )
  k = num_classes if num_classes is not None else int(max(y_train.max(), y_test.max())) + 1
  missing = np.setdiff1d(np.arange(k), y_train)
  if missing.size:
    raise ValueError(
      f"dataset {name!r}: class(es) {missing.tolist()} of 0 .. {k - 1} have no example in the "
      "training split (the pool); every class needs one"
    )
  if standardize:
    axes = 0
    mean = x_train.mean(axes)
    std = x_train.std(axes)
    std = np.where(std > 0, std, 1.0).astype(np.float32)
    x_train = (x_train - mean) / std
    x_test = (x_test - mean) / std
  return Dataset(name, x_train, y_train, x_test, y_test, int(k))


def from_npz(path: str, *, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
  """A :class:`Dataset` from a ``.npz`` file holding ``x_train, y_train[, x_test, y_test]``.

  The arrays are used as stored (cast to float32; images are not rescaled);
  without ``x_test`` a seeded stratified split holds out ``test_fraction``
  (see :func:`from_arrays`). An optional ``num_classes`` scalar is honoured.

  Args:
    path: the ``.npz`` file (no pickled objects).
    test_fraction: the test share when the file has no test set.
    seed: the seed of that split.

  Returns:
    The :class:`Dataset`, named ``path``.

  Raises:
    FileNotFoundError: no such file.
    ValueError: the file is not a ``.npz``, lacks ``x_train`` or ``y_train``, or its arrays
      are not a dataset (see :func:`from_arrays`).

  Example:
    >>> import os, tempfile
    >>> import numpy as np
    >>> from jaxal import datasets
    >>> path = os.path.join(tempfile.mkdtemp(), "my.npz")
    >>> np.savez(path, x_train=np.ones((10, 3)), y_train=np.arange(10) % 2)
    >>> datasets.from_npz(path).x_train.shape
    (8, 3)
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"dataset file {path!r} does not exist")
  try:
    with np.load(path, allow_pickle=False) as z:
      arrays = {k: z[k] for k in z.files}
  except (OSError, ValueError) as e:
    raise ValueError(f"dataset file {path!r} is not a readable .npz ({e})") from e
  missing = [k for k in ("x_train", "y_train") if k not in arrays]
  if missing:
    raise ValueError(
      f"dataset file {path!r} lacks {', '.join(missing)}; it holds {sorted(arrays)}, and a "
      "dataset .npz holds x_train, y_train and optionally x_test, y_test"
    )
  k = arrays.get("num_classes")
  return from_arrays(
    arrays["x_train"],
    arrays["y_train"],
    arrays.get("x_test"),
    arrays.get("y_test"),
    name=path,
    num_classes=None if k is None else int(k),
    test_fraction=test_fraction,
    seed=seed,
  )


def from_csv(
  path: str,
  *,
  label_column: str | int | None = None,
  delimiter: str | None = None,
  test_fraction: float = 0.2,
  seed: int = 0,
) -> Dataset:
  """A :class:`Dataset` from a CSV or TSV table with a header row: one example per row.

  The label column (by header name or 0-based index; default the last column)
  may hold any values: the sorted distinct values become classes
  ``0 .. num_classes - 1``. Every other column must be numeric; features are
  standardised on the training split. A seeded stratified split holds out
  ``test_fraction`` of each class for test.

  Args:
    path: the ``.csv`` / ``.tsv`` file.
    label_column: the label column's name or index (None: the last column).
    delimiter: the field separator (None: tab for ``.tsv``, comma otherwise).
    test_fraction: the test share of each class.
    seed: the seed of the split.

  Returns:
    The :class:`Dataset` (``x`` float32 ``[num, num_features]``), named ``path``.

  Raises:
    FileNotFoundError: no such file.
    ValueError: no such label column, a non-numeric or empty feature cell (the message
      names the row and column), rows of different lengths, or too few rows.

  Example:
    >>> import os, pathlib, tempfile
    >>> from jaxal import datasets
    >>> path = os.path.join(tempfile.mkdtemp(), "my.csv")
    >>> rows = ["a,b,kind"] + [f"{i},{i % 3},{'xy'[i % 2]}" for i in range(10)]
    >>> _ = pathlib.Path(path).write_text("\\n".join(rows))
    >>> ds = datasets.from_csv(path, label_column="kind")
    >>> ds.x_train.shape, ds.num_classes
    ((8, 2), 2)
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"dataset file {path!r} does not exist")
  if delimiter is None:
    delimiter = "\t" if path.lower().endswith(".tsv") else ","
  with open(path, newline="") as f:
    rows = [r for r in csv.reader(f, delimiter=delimiter) if r]
  if len(rows) < 3:
    raise ValueError(f"dataset file {path!r} needs a header row and at least two data rows")
  header = [h.strip() for h in rows[0]]
  body = rows[1:]
  for i, r in enumerate(body):
    if len(r) != len(header):
      raise ValueError(
        f"dataset file {path!r}: row {i + 2} has {len(r)} fields, the header {len(header)}"
      )
  if label_column is None:
    col = len(header) - 1
  elif isinstance(label_column, str) and label_column in header:
    col = header.index(label_column)
  elif (isinstance(label_column, str) and label_column.lstrip("-").isdigit()) or (
    isinstance(label_column, (int, np.integer)) and not isinstance(label_column, bool)
  ):
    col = int(label_column)
  else:
    raise ValueError(
      f"dataset file {path!r} has no label column {label_column!r}; its columns are {header}"
    )
  if not -len(header) <= col < len(header):
    raise ValueError(
      f"label column index {col} is out of range for {path!r}, which has {len(header)} "
      f"columns {header}"
    )
  col %= len(header)
  if len(header) < 2:
    raise ValueError(f"dataset file {path!r} has no feature column besides the label")
  raw_labels = [r[col].strip() for r in body]
  try:
    values: Sequence[Any] = [float(v) for v in raw_labels]
  except ValueError:
    values = raw_labels
  classes = sorted(set(values))
  index = {c: i for i, c in enumerate(classes)}
  y = np.asarray([index[v] for v in values], np.int32)
  feats = [j for j in range(len(header)) if j != col]
  x = np.empty((len(body), len(feats)), np.float32)
  for i, r in enumerate(body):  # parsing text, once per file
    for jj, j in enumerate(feats):
      try:
        x[i, jj] = float(r[j])
      except ValueError:
        raise ValueError(
          f"dataset file {path!r}: column {header[j]!r} (row {i + 2}) holds {r[j]!r}, which "
          "is not a number; every column but the label must be numeric"
        ) from None
  return from_arrays(
    x,
    y,
    name=path,
    num_classes=len(classes),
    standardize=True,
    test_fraction=test_fraction,
    seed=seed,
  )


def fingerprint(ds: Dataset) -> str:
  """sha256 of a dataset's arrays (shapes, dtypes and bytes): what an experiment ran on."""
  h = hashlib.sha256()
  for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
    a = np.ascontiguousarray(a)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(memoryview(a).cast("B"))
  return h.hexdigest()
