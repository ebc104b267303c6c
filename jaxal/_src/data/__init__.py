"""Datasets as NumPy arrays: the bundled UCI digits and TFDS image datasets.

``digits`` is bundled with the package (no download, no extra dependency).
``mnist``, ``fashion_mnist``, ``cifar10``, ``svhn_cropped`` (and any TFDS image
builder as ``"tfds:<name>"``) go through tensorflow-datasets' registered
builders, imported lazily (``pip install 'jaxal[datasets]'``).
"""

from __future__ import annotations

import hashlib
import importlib.resources
from typing import NamedTuple

import numpy as np

from jaxal._src import checks
from jaxal._src.data import tfds_loader
from jaxal._src.data.tfds_loader import DatasetUnavailableError as DatasetUnavailableError

DIGITS_SHA256 = "3cd775a345ecb15adc04f14b2d7394d83acc035d1b2a5d0f32fc34c9d2fcd0c4"


class Dataset(NamedTuple):
  """A classification dataset as NumPy arrays, ready for the loop.

  ``x_*`` are float32 in ``[0, 1]`` with shape ``[num, *image_shape]``;
  ``y_*`` are int32 class labels ``[num]``.

  Attributes:
    name: the dataset's name, as :func:`load_dataset` takes it.
    x_train: ``[num_train, *image_shape]`` float32 in ``[0, 1]``, the training images (the
      pool).
    y_train: ``[num_train]`` int32 class labels of ``x_train``.
    x_test: ``[num_test, *image_shape]`` float32 in ``[0, 1]``, the test images.
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


def check_name(name: str) -> str:
  """``name`` if it is a valid dataset name, else a ValueError listing the valid ones."""
  if not isinstance(name, str):
    raise TypeError(f"dataset name must be a str, got {name!r} of type {type(name).__name__}")
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
  ``tfds.data_source``, without TensorFlow or a network.

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
  name: str, *, data_dir: str | None = None, manual_dir: str | None = None, download: bool = True
) -> Dataset:
  """A dataset by name with its train (pool) and test splits; see :func:`load`.

  Args:
    name: ``digits`` (bundled), ``mnist``, ``fashion_mnist``, ``kmnist``, ``cifar10``,
      ``cifar100``, ``svhn_cropped``, or ``"tfds:<builder>"`` for any other TFDS
      image-classification builder (see :func:`load`).
    data_dir: where prepared datasets live (TFDS's default when None).
    manual_dir: a folder holding the dataset's original files, used instead of downloading.
    download: when False, an unprepared dataset without ``manual_dir`` is an error at once
      instead of a download attempt.

  Returns:
    A :class:`Dataset` with both splits: images float32 in ``[0, 1]``, labels int32.

  Raises:
    ValueError: for an unknown name; the message lists the valid ones.
  """
  check_name(name)
  download = checks.check_bool(download, "download")
  if name in LOADERS:
    return LOADERS[name]()
  builder = tfds_loader.prepare(name, data_dir=data_dir, manual_dir=manual_dir, download=download)
  x_train, y_train = tfds_loader.read(builder, "train")
  x_test, y_test = tfds_loader.read(builder, "test")
  return Dataset(
    name,
    tfds_loader.to_float_images(x_train),
    y_train,
    tfds_loader.to_float_images(x_test),
    y_test,
    tfds_loader.num_classes(builder),
  )


def fingerprint(ds: Dataset) -> str:
  """sha256 of a dataset's arrays (shapes, dtypes and bytes): what an experiment ran on."""
  h = hashlib.sha256()
  for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
    a = np.ascontiguousarray(a)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(memoryview(a).cast("B"))
  return h.hexdigest()
