"""Datasets as NumPy arrays: the bundled UCI digits and TFDS image datasets."""

from jaxal._src.data import Dataset
from jaxal._src.data import DatasetUnavailableError
from jaxal._src.data import load
from jaxal._src.data import load_dataset
from jaxal._src.data import load_digits
from jaxal._src.data import names

__all__ = (
  "Dataset",
  "DatasetUnavailableError",
  "load",
  "load_dataset",
  "load_digits",
  "names",
)
