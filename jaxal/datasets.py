"""Datasets as NumPy arrays: the bundled UCI digits, a user's own arrays and files, TFDS."""

from jaxal._src.data import Dataset
from jaxal._src.data import DatasetUnavailableError
from jaxal._src.data import from_arrays
from jaxal._src.data import from_csv
from jaxal._src.data import from_npz
from jaxal._src.data import load
from jaxal._src.data import load_dataset
from jaxal._src.data import load_digits
from jaxal._src.data import names

__all__ = (
  "Dataset",
  "DatasetUnavailableError",
  "from_arrays",
  "from_csv",
  "from_npz",
  "load",
  "load_dataset",
  "load_digits",
  "names",
)
