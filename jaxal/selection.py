"""Batch selection: ``[k]`` int32 indices, unique, in range, never labeled."""

from jaxal._src.selection.bait import bait
from jaxal._src.selection.k_center import k_center_greedy
from jaxal._src.selection.kmeans import KMeansResult
from jaxal._src.selection.kmeans import kmeans
from jaxal._src.selection.kmeans import kmeans_sampling
from jaxal._src.selection.kmeans_pp import kmeans_pp
from jaxal._src.selection.omp import OMPResult
from jaxal._src.selection.omp import fixed_weight_matching
from jaxal._src.selection.omp import omp
from jaxal._src.selection.random import random
from jaxal._src.selection.top_k import top_k

__all__ = (
  "KMeansResult",
  "OMPResult",
  "bait",
  "fixed_weight_matching",
  "k_center_greedy",
  "kmeans",
  "kmeans_pp",
  "kmeans_sampling",
  "omp",
  "random",
  "top_k",
)
