r"""Average-linkage agglomerative clustering over a sparse kNN graph, in bounded memory.

The linkage of two clusters is the mean distance over the graph's edges
between them (over every pair of points when the graph is complete: classical
average linkage):

.. math:: L(A, B) = \frac{\sum_{(i, j) \in E,\, i \in A,\, j \in B} \|x_i - x_j\|}
   {|\{(i, j) \in E : i \in A, j \in B\}|},

clusters without an edge between them never merge, and merging stops at
``distance_threshold`` (every merge of linkage ``<= distance_threshold``, as a
dendrogram cut at that height). This linkage is reducible (the linkage of a
merged cluster to a third lies between its parts'), so merging every pair of
mutual nearest clusters at once, round after round (reciprocal agglomerative
clustering), gives the same clusters as the sequential algorithm. A round is
one sort of the ``O(N * num_neighbors)`` edges by their clusters' ids, a
``jax.lax.while_loop`` until no pair merges: memory ``O(N * num_neighbors)``,
never ``N x N``.

References:
  Sumengen et al., Scaling Hierarchical Agglomerative Clustering to
  Billion-sized Datasets, 2021 (reciprocal agglomerative clustering).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxal._src import checks
from jaxal._src import executables
from jaxal._src import neighbors


def graph_edges(nb: neighbors.Neighbors) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """The undirected edges of a kNN graph, each once per direction: ``(u, v, dist, valid)``.

  An edge kept by both of its ends' lists appears once (per direction); padding is not valid.
  """
  n, k = nb.indices.shape
  u = jnp.repeat(jnp.arange(n, dtype=jnp.int32), k)
  v = nb.indices.ravel()
  d = jnp.sqrt(nb.sq_distances.ravel())
  ok = v >= 0
  lo, hi = jnp.minimum(u, v), jnp.maximum(u, v)
  lo = jnp.where(ok, lo, n)
  hi = jnp.where(ok, hi, n)
  order = jnp.lexsort((hi, lo))
  lo, hi, d, ok = lo[order], hi[order], d[order], ok[order]
  dup = jnp.concatenate([jnp.zeros((1,), bool), (lo[1:] == lo[:-1]) & (hi[1:] == hi[:-1])])
  ok = ok & ~dup
  return (
    jnp.concatenate([lo, hi]),
    jnp.concatenate([hi, lo]),
    jnp.concatenate([d, d]),
    jnp.concatenate([ok, ok]),
  )


def rac(u, v, d, valid, n, threshold, max_rounds):
  """Reciprocal agglomerative clustering: ``([n] cluster representative of each point, rounds)``."""
  big = jnp.int32(n)
  ids = jnp.arange(n, dtype=jnp.int32)
  e = u.shape[0]

  def body(state):
    cid, _, it = state
    cu, cv = cid[jnp.clip(u, 0, n - 1)], cid[jnp.clip(v, 0, n - 1)]
    ok = valid & (cu != cv)
    cu = jnp.where(ok, cu, big)
    cv = jnp.where(ok, cv, big)
    order = jnp.lexsort((cv, cu))
    cu, cv, dd, ok = cu[order], cv[order], d[order], ok[order]
    head = jnp.concatenate([jnp.ones((1,), bool), (cu[1:] != cu[:-1]) | (cv[1:] != cv[:-1])])
    gid = jnp.cumsum(head.astype(jnp.int32)) - 1
    sums = jax.ops.segment_sum(jnp.where(ok, dd, 0.0), gid, num_segments=e)
    cnts = jax.ops.segment_sum(ok.astype(jnp.float32), gid, num_segments=e)
    link = jnp.where(ok, sums[gid] / jnp.maximum(cnts[gid], 1.0), jnp.inf)
    seg = jnp.where(ok, cu, n)  # segment n collects the invalid edges
    best_link = jax.ops.segment_min(link, seg, num_segments=n + 1)[:n]
    is_best = ok & (link == best_link[jnp.minimum(seg, n - 1)])
    best = jax.ops.segment_min(jnp.where(is_best, cv, big), seg, num_segments=n + 1)[:n]
    partner = best[jnp.minimum(best, n - 1)]
    mutual = (best < big) & (partner == ids) & (best_link <= threshold)
    rep = jnp.where(mutual, jnp.minimum(ids, best), ids)
    return rep[cid], jnp.any(mutual), it + 1

  def cond(state):
    _, changed, it = state
    return changed & (it < max_rounds)

  cid, _, it = jax.lax.while_loop(cond, body, (ids, jnp.bool_(True), jnp.int32(0)))
  return cid, it


@executables.jit(static_argnames=("max_rounds",))
def agglomerative_graph(nb, threshold, *, max_rounds):
  """:func:`agglomerative_core` on a given kNN graph ``nb`` (``[N, k]``, no self-edges)."""
  n = nb.indices.shape[0]
  u, v, d, ok = graph_edges(nb)
  # Default threshold (NaN in): the median distance to the nearest neighbour.
  t = jnp.where(jnp.isnan(threshold), jnp.median(jnp.sqrt(nb.sq_distances[:, 0])), threshold)
  cid, rounds = rac(u, v, d, ok, n, t, max_rounds)
  is_rep = cid == jnp.arange(n, dtype=jnp.int32)
  dense = jnp.cumsum(is_rep.astype(jnp.int32)) - 1
  return dense[cid], jnp.sum(is_rep.astype(jnp.int32)), t, rounds


@executables.jit(
  static_argnames=("num_neighbors", "max_rounds", "row_block", "col_block", "flagged"),
  compiler_options=executables.ELEMENTAL_EMITTERS,
)
def agglomerative_core(
  x, threshold, *, num_neighbors, max_rounds, row_block, col_block, flagged=False
):
  """``(labels [N] int32 in [0, C), num_clusters, threshold used, rounds)`` for finite ``x``.

  ``flagged``: the same tuple with ``ok`` appended, the finiteness flag of ``x``
  (:func:`jaxal._src.checks.all_finite`) computed in the same compiled call, for the
  caller to raise on (non-finite points give unspecified clusters; the merge loop
  stops after ``max_rounds``).
  """
  nb = neighbors.knn_core(
    x, x, num_neighbors, None, None, exclude_self=True, row_block=row_block, col_block=col_block
  )
  out = agglomerative_graph(nb, threshold, max_rounds=max_rounds)
  return (*out, checks.all_finite(x)[0]) if flagged else out


def agglomerative(
  x: ArrayLike,
  *,
  distance_threshold: float | None = None,
  num_neighbors: int = 16,
  max_rounds: int = 10_000,
  row_block: int = 1024,
  col_block: int = 4096,
  check_finite: bool = True,
) -> jax.Array:
  """Average-linkage agglomerative clusters of ``x`` on its kNN graph (see the module).

  Args:
    x: ``[num_points, dim]`` points.
    distance_threshold: merge while the average linkage is ``<=`` this; None:
      the median distance from a point to its nearest neighbour.
    num_neighbors: neighbours per point in the graph (``num_points - 1``: the
      complete graph, classical average linkage).
    max_rounds: most merge rounds.
    row_block: queries per kNN tile (memory only).
    col_block: points per kNN tile (memory only).
    check_finite: NaN or inf in ``x`` is an error (flag fused into the compiled
      call); False for callers that checked already.

  Returns:
    ``[num_points]`` int32 cluster labels in ``[0, num_clusters)``, numbered
    by each cluster's lowest point index.
  """
  x = checks.check_float_array(x, "x", 2, "[num_points, dim]")
  n = x.shape[0]
  if n < 2:
    raise ValueError(f"x must hold at least 2 points, got shape {x.shape}")
  num_neighbors = checks.check_positive_int(
    num_neighbors, "num_neighbors", high=n - 1, what=f"the other points of x, shape {x.shape}"
  )
  t: Any = jnp.float32(jnp.nan)
  if distance_threshold is not None:
    t = jnp.float32(checks.check_float(distance_threshold, "distance_threshold", low=0.0))
  max_rounds = checks.check_positive_int(max_rounds, "max_rounds")
  row_block = checks.check_positive_int(row_block, "row_block")
  col_block = checks.check_positive_int(col_block, "col_block")
  check_finite = checks.check_bool(check_finite, "check_finite")
  out = agglomerative_core(
    x.astype(jnp.float32),
    t,
    num_neighbors=num_neighbors,
    max_rounds=max_rounds,
    row_block=row_block,
    col_block=col_block,
    flagged=check_finite,
  )
  if check_finite:  # the flag came from the same compiled call: no separate pass over x
    checks.check_finite(x, "x", purpose="clustering needs finite points", ok=out[-1])
  return out[0]
