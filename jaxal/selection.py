"""Batch selection: ``[k]`` int32 indices, unique, in range, never labeled."""

from jaxal._src.diversity import KMeansResult
from jaxal._src.diversity import k_center_greedy
from jaxal._src.diversity import kmeans
from jaxal._src.diversity import kmeans_sampling
from jaxal._src.seeding import kmeans_pp
from jaxal._src.selection import random
from jaxal._src.selection import top_k

__all__ = (
    "KMeansResult",
    "k_center_greedy",
    "kmeans",
    "kmeans_pp",
    "kmeans_sampling",
    "random",
    "top_k",
)
