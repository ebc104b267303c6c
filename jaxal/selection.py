"""Batch selection: ``[k]`` int32 indices, unique, in range, never labeled."""

from jaxal._src.seeding import kmeans_pp
from jaxal._src.selection import random
from jaxal._src.selection import top_k

__all__ = (
    "kmeans_pp",
    "random",
    "top_k",
)
