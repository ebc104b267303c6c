"""The bundled digits dataset: content, split, checksum."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from jaxal import datasets
from jaxal._src import data as data_lib


def test_digits_file_content_and_checksum():
  images, labels, is_test = data_lib._digits_raw()
  assert images.shape == (1797, 8, 8) and images.dtype == np.uint8
  assert images.min() == 0 and images.max() == 16
  assert labels.shape == (1797,)
  np.testing.assert_array_equal(np.bincount(labels), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])
  digest = hashlib.sha256(images.tobytes() + labels.tobytes() + is_test.tobytes()).hexdigest()
  assert digest == data_lib.DIGITS_SHA256


def test_load_digits_split():
  ds = datasets.load_digits()
  assert ds.name == "digits" and ds.num_classes == 10
  assert ds.x_train.shape == (1347, 8, 8) and ds.x_test.shape == (450, 8, 8)
  assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
  assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
  # Stratified: every class has a quarter (rounded) of its images in test.
  counts = np.bincount(ds.y_test, minlength=10)
  np.testing.assert_array_equal(counts, np.round(0.25 * np.array([178, 182, 177, 183, 181, 182, 181, 179, 174, 180])))


def test_unknown_dataset_lists_valid_names():
  with pytest.raises(ValueError, match="unknown dataset 'imagenet'; valid names are: digits"):
    datasets.load_dataset("imagenet")
