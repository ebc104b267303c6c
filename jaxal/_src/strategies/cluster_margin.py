"""Cluster-Margin: the lowest-margin points, spread round robin over agglomerative clusters.

The clustering is computed once (:func:`cluster_margin_clusters`: average
linkage on a sparse kNN graph of the pool's embeddings,
:mod:`jaxal._src.selection.agglomerative`) and reused every round, as the
paper: pass its result as ``clusters=``. Without it, the strategy clusters
the features it sees and keeps the result in a small cache keyed on those
features (a fixed ``embed`` then clusters once; the penultimate features of a
retrained model change every round, and so does the clustering).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxal._src import cached_ops
from jaxal._src import checks
from jaxal._src import executables
from jaxal._src import scores
from jaxal._src.selection import agglomerative as agglomerative_lib
from jaxal._src.selection import top_k
from jaxal._src.strategies.base import Strategy
from jaxal._src.strategies.base import check_acquire_args
from jaxal._src.strategies.base import predict_checked

_FEATURES_PURPOSE = "clustering needs finite features"

CACHE_SIZE = 4


def cluster_margin_clusters(
  features: ArrayLike,
  *,
  distance_threshold: float | None = None,
  num_neighbors: int = 16,
  max_rounds: int = 10_000,
  check_finite: bool = True,
) -> jax.Array:
  """Cluster-Margin's clustering of the pool: average linkage on a sparse kNN graph, once.

  Merges clusters while their average linkage (mean edge distance between
  them on the ``num_neighbors``-NN graph) is at most ``distance_threshold``;
  exact average linkage when ``num_neighbors = num_points - 1``. Memory
  ``O(N * num_neighbors)``.

  Args:
    features: ``[num_points, dim]`` embeddings of the whole pool.
    distance_threshold: the merge threshold ε; None: the median distance from
      a point to its nearest neighbour.
    num_neighbors: neighbours per point in the graph.
    max_rounds: most rounds of mutual-nearest-cluster merges.
    check_finite: NaN or inf in ``features`` is an error, named as ``x`` (flag fused
      into the compiled call); False for callers that checked already.

  Returns:
    ``[num_points]`` int32 cluster labels in ``[0, num_clusters)``, to pass as
    :func:`cluster_margin`'s ``clusters``.

  Raises:
    ValueError, TypeError: bad shapes, non-finite features, options out of range.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxal import strategies
    >>> x = jnp.array([[0.0], [0.2], [0.3], [5.0], [5.1], [9.0]])
    >>> strategies.cluster_margin_clusters(x, distance_threshold=1.0, num_neighbors=2).tolist()
    [0, 0, 0, 1, 1, 2]
  """
  return agglomerative_lib.agglomerative(
    features,
    distance_threshold=distance_threshold,
    num_neighbors=num_neighbors,
    max_rounds=max_rounds,
    check_finite=check_finite,
  )


@executables.jit(
  static_argnames=("budget", "margin_batch"), compiler_options=executables.ELEMENTAL_EMITTERS
)
def cluster_margin_core(key, margin_scores, clusters, labeled, *, budget, margin_batch):
  """``[budget]`` int32: the ``margin_batch`` lowest margins, round robin over their clusters."""
  n = clusters.shape[0]
  cand = top_k.select_top_k(margin_scores, margin_batch, labeled)  # [margin_batch]
  c = clusters[cand]
  count = jax.ops.segment_sum(jnp.ones((margin_batch,), jnp.int32), c, num_segments=n)
  size = count[c]  # candidates in the same cluster
  pri = jax.random.uniform(key, (margin_batch,))
  m = jnp.arange(margin_batch, dtype=jnp.int32)
  # Rank within the cluster (random order), and the cluster's order (smallest first).
  by = jnp.lexsort((pri, c))
  pos = jnp.zeros((margin_batch,), jnp.int32).at[by].set(m)
  first = jax.ops.segment_min(pos, c, num_segments=n)
  t = pos - first[c]
  pick = jnp.lexsort((c, size, t))
  return cand[pick[:budget]].astype(jnp.int32)


def check_clusters(clusters: Any, n: int) -> jax.Array:
  """``clusters`` as ``[n]`` int32 labels in ``[0, n)``."""
  c = jnp.asarray(clusters)
  if c.shape != (n,):
    raise ValueError(f"clusters must have shape ({n},) (one label per pool point), got {c.shape}")
  if not jnp.issubdtype(c.dtype, jnp.integer):
    raise TypeError(f"clusters must be integer labels, got dtype {c.dtype}")
  if checks.is_concrete(c) and n and (int(jnp.min(c)) < 0 or int(jnp.max(c)) >= n):
    raise ValueError(
      f"clusters must lie in [0, {n}), got values in [{int(jnp.min(c))}, {int(jnp.max(c))}]"
    )
  return c.astype(jnp.int32)


def cluster_margin(
  *,
  clusters: ArrayLike | None = None,
  margin_batch: int | None = None,
  margin_factor: int = 10,
  distance_threshold: float | None = None,
  num_neighbors: int = 16,
  embed: Callable[[jax.Array], jax.Array] | None = None,
  batch_size: int = 256,
) -> Strategy:
  """Cluster-Margin: the ``margin_batch`` lowest-margin points, round robin over their clusters.

  Each round takes the ``margin_batch`` unlabeled points of smallest margin
  (:func:`jaxal.scores.margin`; default ``margin_factor × budget``, at most the
  unlabeled count), groups them by their cluster, orders the groups by size
  (smallest first) and takes one random point from each group in turn until
  ``budget`` are chosen, as the paper's round-robin sampling.

  Args:
    clusters: ``[num_points]`` int labels from :func:`cluster_margin_clusters`
      (computed once, reused every round); None clusters the features seen,
      cached on them.
    margin_batch: candidates per round (``>= budget``); None: ``margin_factor × budget``.
    margin_factor: the default ratio of candidates to budget (the paper's 10).
    distance_threshold: ε of the clustering (when ``clusters`` is None).
    num_neighbors: graph neighbours of the clustering (when ``clusters`` is None).
    embed: ``embed(pool) -> [num_points, dim]`` for the clustering, or None
      for the model's penultimate features.
    batch_size: forward batch size.

  Returns:
    A :class:`Strategy` named ``"cluster_margin"``.

  Raises:
    TypeError, ValueError: an option of the wrong type or out of range; at
      acquire time, ``clusters`` of the wrong shape or a ``margin_batch`` below the budget.

  References:
    Citovsky et al., Batch Active Learning at Scale, NeurIPS 2021.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxal import models, strategies
    >>> logits = jnp.array([[0.1, 0.0], [0.2, 0.0], [5.0, 0.0], [0.0, 0.05], [3.0, 0.0]])
    >>> model = models.from_apply_fn(lambda p, x, key: (x, x))  # the pool holds its logits
    >>> s = strategies.cluster_margin(clusters=jnp.array([0, 0, 1, 1, 2]), margin_batch=3)
    >>> # Candidates 3, 0, 1 (the lowest margins); 3 is alone in its cluster, so it comes first.
    >>> s.acquire(jax.random.key(0), model, None, logits, None, 2).tolist()
    [3, 1]
  """
  margin_factor = checks.check_positive_int(margin_factor, "margin_factor")
  if margin_batch is not None:
    margin_batch = checks.check_positive_int(margin_batch, "margin_batch")
  if distance_threshold is not None:
    checks.check_float(distance_threshold, "distance_threshold", low=0.0)
  num_neighbors = checks.check_positive_int(num_neighbors, "num_neighbors")
  if embed is not None and not callable(embed):
    raise TypeError(
      f"embed must be None or a function pool -> features, got {type(embed).__name__}"
    )
  batch_size = checks.check_positive_int(batch_size, "batch_size")
  fixed = None if clusters is None else jnp.asarray(clusters)
  cache: OrderedDict[str, jax.Array] = OrderedDict()

  def clusters_of(feats):
    h = hashlib.sha256(np.asarray(jax.device_get(feats)).tobytes()).hexdigest()
    h += str(feats.shape)
    if h not in cache:
      cache[h] = cluster_margin_clusters(
        feats,
        distance_threshold=distance_threshold,
        num_neighbors=min(num_neighbors, feats.shape[0] - 1),
        check_finite=False,  # acquire checked the features
      )
      while len(cache) > CACHE_SIZE:
        cache.popitem(last=False)
    return cache[h]

  def acquire(key, model, params, pool, labeled_mask, budget):
    mask, budget = check_acquire_args(key, pool, labeled_mask, budget)
    n = pool.shape[0]
    need_feats = fixed is None and embed is None
    preds = predict_checked(
      model, params, pool, batch_size, features=need_feats, purpose=_FEATURES_PURPOSE
    )
    left = n - cached_ops.count_int(mask)
    mb = min(margin_factor * budget, left) if margin_batch is None else margin_batch
    if mb < budget or mb > left:
      raise ValueError(
        f"margin_batch must be in [budget, unlabeled points] = [{budget}, {left}], got {mb}"
      )
    if fixed is not None:
      c = check_clusters(fixed, n)
    else:
      if embed is None:
        feats = preds.features  # checked finite by predict_checked
      else:
        feats = checks.check_float_array(
          embed(pool), "features of the pool", 2, "[num_points, dim]"
        )
        checks.check_finite(feats, "features of the pool", purpose=_FEATURES_PURPOSE)
      c = clusters_of(feats.astype(jnp.float32)) if n > 1 else jnp.zeros((n,), jnp.int32)
    return cluster_margin_core(
      key, scores.margin(preds.logits), c, mask, budget=budget, margin_batch=mb
    )

  return Strategy("cluster_margin", acquire)
