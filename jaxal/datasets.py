"""Datasets as NumPy arrays: the bundled UCI digits."""

from jaxal._src.data import Dataset
from jaxal._src.data import load_dataset
from jaxal._src.data import load_digits

__all__ = (
    "Dataset",
    "load_dataset",
    "load_digits",
)
