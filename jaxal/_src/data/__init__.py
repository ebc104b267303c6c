"""Datasets: the bundled UCI digits (no download needed)."""

from __future__ import annotations

import importlib.resources
from typing import NamedTuple

import numpy as np

DIGITS_SHA256 = "3cd775a345ecb15adc04f14b2d7394d83acc035d1b2a5d0f32fc34c9d2fcd0c4"


class Dataset(NamedTuple):
  """A classification dataset as NumPy arrays, ready for the loop.

  ``x_*`` are float32 in ``[0, 1]`` with shape ``[num, *image_shape]``;
  ``y_*`` are int32 class labels ``[num]``.
  """

  name: str
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int


def _digits_raw() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  with importlib.resources.files("jaxal._src.data").joinpath("digits.npz").open("rb") as f:
    with np.load(f) as z:
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
  images, labels, is_test = _digits_raw()
  x = images.astype(np.float32) / 16.0
  y = labels.astype(np.int32)
  return Dataset("digits", x[~is_test], y[~is_test], x[is_test], y[is_test], 10)


LOADERS = {"digits": load_digits}


def load_dataset(name: str) -> Dataset:
  """A dataset by name (``digits``); the error lists the valid names."""
  from jaxal._src import checks

  checks.check_one_of(name, LOADERS, "dataset")
  return LOADERS[name]()
