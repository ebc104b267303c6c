"""Exact k nearest neighbours in bounded memory: blocked matmul and a running top-k."""

from jaxal._src.neighbors import Neighbors
from jaxal._src.neighbors import knn

__all__ = (
  "Neighbors",
  "knn",
)
