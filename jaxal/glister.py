"""GLISTER-active: greedy one-step bilevel selection with a validation set."""

from jaxal._src.glister import REGULARIZERS
from jaxal._src.glister import Validation
from jaxal._src.glister import glister

__all__ = (
  "REGULARIZERS",
  "Validation",
  "glister",
)
