"""Pools larger than memory: selection streamed from a NumPy memmap in fixed-size chunks."""

from jaxal._src.streaming import check_pool
from jaxal._src.streaming import chunks
from jaxal._src.streaming import k_center_greedy
from jaxal._src.streaming import kmeans_pp
from jaxal._src.streaming import top_k

__all__ = (
  "check_pool",
  "chunks",
  "k_center_greedy",
  "kmeans_pp",
  "top_k",
)
