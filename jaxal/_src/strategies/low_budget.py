"""Low-budget strategies: TypiClust and ProbCover, on features of the pool.

Both select on an embedding of the whole pool: by default the model's
penultimate features (:func:`jaxal.models.predict` with ``features=True``),
or ``embed(pool) -> [num_points, dim]`` when given (the papers use
self-supervised features; any fixed embedding, e.g. PCA of the inputs, is
passed the same way). Nearest neighbours come from the blocked kNN of
:mod:`jaxal.neighbors`: memory ``O(N * num_neighbors)``, never ``N x N``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxal._src import cached_ops
from jaxal._src import checks
from jaxal._src import executables
from jaxal._src import neighbors
from jaxal._src.selection import kmeans as kmeans_lib
from jaxal._src.strategies.base import Strategy
from jaxal._src.strategies.base import check_acquire_args
from jaxal._src.strategies.base import predict_checked

_PURPOSE = "selection needs finite features"


def pool_features(model, params, pool, embed, batch_size, with_classes=False):
  """``embed(pool)``, or the model's penultimate features; checked ``[num_points, dim]``, finite.

  With ``with_classes``: ``(features, number of classes of the model's logits or None)``.
  """
  classes = None
  if embed is None:  # features checked finite in the forward's own compiled call
    preds = predict_checked(
      model, params, pool, batch_size, features=True, logits=False, purpose=_PURPOSE
    )
    feats, classes = preds.features, preds.logits.shape[-1]
  else:
    feats = checks.check_float_array(embed(pool), "features of the pool", 2, "[num_points, dim]")
    if feats.shape[0] != pool.shape[0]:
      raise ValueError(
        f"features of the pool must have one row per pool point ({pool.shape[0]}), "
        f"got shape {feats.shape}"
      )
    checks.check_finite(feats, "features of the pool", purpose=_PURPOSE)
  feats = feats.astype(jnp.float32)
  return (feats, classes) if with_classes else feats


def check_embed(embed: Any) -> Callable[[jax.Array], jax.Array] | None:
  """``embed`` None or a callable."""
  if embed is not None and not callable(embed):
    raise TypeError(
      f"embed must be None or a function pool -> features, got {type(embed).__name__}"
    )
  return embed


# ---------------------------------------------------------------------------
# TypiClust.


@executables.jit(
  static_argnames=("k", "n_init", "max_iter"), compiler_options=executables.ELEMENTAL_EMITTERS
)
def typiclust_clusters(key, feats, tol, *, k, n_init, max_iter):
  """k-means assignments ``[N]`` int32 of every pool point (labeled or not)."""
  n = feats.shape[0]
  km = kmeans_lib.kmeans_core(
    key, feats, k, np.ones((n,), bool), n_init, max_iter, tol, min(1024, k), 8192
  )
  return km.assignments


@executables.jit(
  static_argnames=("budget", "num_neighbors", "min_cluster_size", "row_block", "col_block"),
  compiler_options=executables.ELEMENTAL_EMITTERS,
)
def typiclust_core(
  feats, labeled, a, *, budget, num_neighbors, min_cluster_size, row_block, col_block
):
  """The TypiClust batch ``[budget]`` int32 given the cluster ``a [N]`` of every point.

  Cluster ids lie in ``[0, N)`` and need not be consecutive, so one compile serves every
  number of clusters.
  """
  n = feats.shape[0]
  c = n  # cluster ids < n; empty ids are never eligible and hold no point
  sizes = jax.ops.segment_sum(jnp.ones((n,), jnp.int32), a, num_segments=c)
  existing = jax.ops.segment_sum(labeled.astype(jnp.int32), a, num_segments=c)
  avail_counts = sizes - existing
  avail = ~labeled

  # Typicality of each unlabeled point among the unlabeled points of its cluster.
  groups = jnp.where(labeled, -1, a)
  nb = neighbors.knn_core(
    feats,
    feats,
    num_neighbors,
    groups,
    groups,
    exclude_self=True,
    row_block=row_block,
    col_block=col_block,
  )
  kc = jnp.clip(avail_counts[a] // 2, 1, num_neighbors)
  use = jnp.arange(num_neighbors)[None, :] < kc[:, None]
  dist = jnp.sqrt(nb.sq_distances)
  mean = jnp.sum(jnp.where(use, dist, 0.0), axis=1) / kc.astype(jnp.float32)
  typicality = jnp.where(jnp.isfinite(mean), 1.0 / (mean + 1e-5), 0.0)

  # Cluster order: fewest labeled points first, then the largest.
  ids = jnp.arange(c, dtype=jnp.int32)
  order = jnp.lexsort((ids, -sizes, existing))
  rho = jnp.zeros((c,), jnp.int32).at[order].set(ids)
  eligible = sizes > min_cluster_size

  # Rank of each unlabeled point within its cluster, most typical first.
  pts = jnp.arange(n, dtype=jnp.int32)
  seg = jnp.where(avail, a, c)
  by_cluster = jnp.lexsort((pts, -typicality, seg))
  pos = jnp.zeros((n,), jnp.int32).at[by_cluster].set(pts)
  starts = jnp.cumsum(avail_counts) - avail_counts
  t = pos - starts[a]

  # Round robin over the clusters in order (pass t takes each cluster's t-th most typical
  # point), eligible clusters first; labeled points never.
  pick = jnp.lexsort((pts, rho[a], t, ~eligible[a], labeled))
  return pick[:budget].astype(jnp.int32)


def check_typiclust_args(num_neighbors, min_cluster_size, max_clusters, n_init, max_iter, tol):
  """The options of :func:`typiclust`, validated, in the order of the arguments."""
  return (
    checks.check_positive_int(num_neighbors, "num_neighbors"),
    checks.check_nonnegative_int(min_cluster_size, "min_cluster_size"),
    checks.check_positive_int(max_clusters, "max_clusters"),
    checks.check_positive_int(n_init, "n_init"),
    checks.check_positive_int(max_iter, "max_iter"),
    checks.check_float(tol, "tol", low=0.0),
  )


def select_typiclust(
  key: jax.Array,
  feats: jax.Array,
  budget: int,
  labeled_mask: jax.Array,
  *,
  num_neighbors: int = 20,
  min_cluster_size: int = 5,
  max_clusters: int = 500,
  n_init: int = 1,
  max_iter: int = 100,
  tol: float = 1e-4,
  row_block: int = 1024,
  col_block: int = 4096,
) -> jax.Array:
  """TypiClust on validated ``[num_points, dim]`` finite features: ``[budget]`` int32 indices."""
  n = feats.shape[0]
  num_labeled = cached_ops.count_int(labeled_mask)
  num_clusters = min(num_labeled + budget, max_clusters, n)
  assignments = typiclust_clusters(
    key, feats, jnp.float32(tol), k=num_clusters, n_init=n_init, max_iter=max_iter
  )
  return typiclust_core(
    feats,
    labeled_mask,
    assignments,
    budget=budget,
    num_neighbors=min(num_neighbors, n - 1) if n > 1 else 1,
    min_cluster_size=min_cluster_size,
    row_block=row_block,
    col_block=col_block,
  )


def typiclust(
  *,
  num_neighbors: int = 20,
  min_cluster_size: int = 5,
  max_clusters: int = 500,
  n_init: int = 1,
  max_iter: int = 100,
  tol: float = 1e-4,
  embed: Callable[[jax.Array], jax.Array] | None = None,
  batch_size: int = 256,
) -> Strategy:
  r"""TypiClust: the most typical point of each of the largest uncovered clusters.

  The pool's features (labeled and unlabeled) are clustered by k-means
  (:func:`jaxal.selection.kmeans`) into ``min(labeled + budget,
  max_clusters)`` clusters. Clusters of at most ``min_cluster_size`` points
  are set aside; the others are ordered by their number of labeled points
  (fewest first), then by size (largest first). Each unlabeled point's
  typicality among the unlabeled points of its cluster is

  .. math:: \mathrm{Typicality}(x) = \Big(\frac{1}{k}\sum_{x_i \in \mathrm{kNN}(x)}
     \|x - x_i\|_2\Big)^{-1}, \qquad k = \min(\texttt{num\_neighbors}, n_c / 2),

  (plus ``1e-5`` in the denominator, as the reference code). The batch takes
  the most typical point of each cluster in that order, round robin when the
  budget exceeds the clusters (the next most typical point of each, by the
  typicality computed at the start of the round; the reference code
  recomputes it without the points taken), then, if every kept cluster is
  exhausted, the set-aside clusters' points the same way. Neighbours within
  clusters come from the blocked kNN (:func:`jaxal.neighbors.knn`), memory
  ``O(N * num_neighbors)``. The k-means compiles once per number of clusters, the rest
  once per (pool size, budget).

  The paper uses self-supervised (SimCLR) features; ``embed`` passes any
  fixed embedding of the pool, the penultimate features otherwise.

  Args:
    num_neighbors: ``k`` of the typicality (the paper's 20).
    min_cluster_size: clusters of at most this many points are set aside (the paper's 5).
    max_clusters: at most this many clusters (the reference code's 500).
    n_init: k-means runs (the best inertia is kept).
    max_iter: Lloyd iterations per run.
    tol: k-means tolerance (relative, as :func:`jaxal.selection.kmeans`).
    embed: ``embed(pool) -> [num_points, dim]`` features, or None for the
      model's penultimate features.
    batch_size: forward batch size.

  Returns:
    A :class:`Strategy` named ``"typiclust"``.

  Raises:
    TypeError, ValueError: an option of the wrong type or out of range.

  References:
    Hacohen, Dekel & Weinshall, Active Learning on a Budget: Opposite
    Strategies Suit High and Low Budgets, ICML 2022.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxal import strategies
    >>> pool = jnp.concatenate([jnp.zeros((8, 2)), jnp.ones((8, 2)) * 5.0])
    >>> pool = pool + jax.random.normal(jax.random.key(0), (16, 2)) * 0.1
    >>> s = strategies.typiclust(min_cluster_size=2, embed=lambda x: x)
    >>> idx = s.acquire(jax.random.key(1), None, None, pool, None, 2)
    >>> sorted((idx // 8).tolist())  # one point of each blob
    [0, 1]
  """
  opts = check_typiclust_args(num_neighbors, min_cluster_size, max_clusters, n_init, max_iter, tol)
  num_neighbors, min_cluster_size, max_clusters, n_init, max_iter, tol = opts
  embed = check_embed(embed)
  batch_size = checks.check_positive_int(batch_size, "batch_size")

  def acquire(key, model, params, pool, labeled_mask, budget):
    mask, budget = check_acquire_args(key, pool, labeled_mask, budget)
    feats = pool_features(model, params, pool, embed, batch_size)
    return select_typiclust(
      key,
      feats,
      budget,
      mask,
      num_neighbors=num_neighbors,
      min_cluster_size=min_cluster_size,
      max_clusters=max_clusters,
      n_init=n_init,
      max_iter=max_iter,
      tol=tol,
    )

  return Strategy("typiclust", acquire)


# ---------------------------------------------------------------------------
# ProbCover.


@executables.jit(static_argnames=("num_neighbors", "row_block", "col_block"))
def probcover_graph(feats, *, num_neighbors, row_block, col_block):
  """``(neighbors, radius)``: each point's ``num_neighbors`` nearest (itself first) and the
  smallest over points of the distance to the farthest point."""
  nb = neighbors.knn_core(
    feats, feats, num_neighbors, None, None, exclude_self=False, row_block=row_block,
    col_block=col_block,
  )  # fmt: skip
  xs, ys, s = neighbors.scaled_points(feats, feats)
  far, _ = neighbors.blocked_top_k(
    neighbors.pos_sq_dist, xs, ys, 1, row_block=row_block, col_block=col_block
  )
  radius = jnp.sqrt(jnp.min(far[:, 0])) * s
  return nb, radius


@executables.jit(static_argnames=("budget",))
def probcover_core(key, nb, labeled, delta, *, budget):
  """Greedy maximum coverage over the δ-ball graph ``nb`` (``[budget]`` int32, coverage)."""
  n = labeled.shape[0]
  edge = nb.sq_distances < delta * delta  # [N, K]: j covers indices[j, l]
  idx = nb.indices
  covered = jnp.zeros((n,), bool).at[idx.ravel()].max((edge & labeled[:, None]).ravel())
  priority = jax.random.uniform(key, (n,))

  def body(i, st):
    covered, chosen, picks = st
    avail = ~labeled & ~chosen
    deg = jnp.sum(edge & ~covered[idx], axis=1)
    deg = jnp.where(avail, deg, -1)
    j_deg = jnp.argmax(deg)  # ties: the lowest index, as the reference code
    j_rand = jnp.argmax(jnp.where(avail, priority, -1.0))
    j = jnp.where(deg[j_deg] > 0, j_deg, j_rand).astype(jnp.int32)
    covered = covered.at[idx[j]].max(edge[j])
    return covered, chosen.at[j].set(True), picks.at[i].set(j)

  init = (covered, jnp.zeros((n,), bool), jnp.zeros((budget,), jnp.int32))
  covered, _, picks = jax.lax.fori_loop(0, budget, body, init)
  return picks, jnp.mean(covered.astype(jnp.float32))


def check_delta(delta: Any, radius: float, nb: neighbors.Neighbors) -> float:
  """Raises for a δ whose balls would cover the whole pool (one ball around some point)."""
  if delta > radius:
    nn = np.sqrt(np.asarray(nb.sq_distances[:, 1])) if nb.sq_distances.shape[1] > 1 else None
    median = (
      f", median nearest-neighbour distance {float(np.median(nn)):.4g}" if nn is not None else ""
    )
    raise ValueError(
      f"delta={delta} is so large that one ball covers every point: some point lies within "
      f"{radius:.4g} of all the others (the smallest farthest-point distance){median}; "
      "choose a smaller delta, e.g. with probcover_delta"
    )
  return delta


def select_probcover(
  key: jax.Array,
  feats: jax.Array,
  budget: int,
  labeled_mask: jax.Array,
  *,
  delta: float,
  num_neighbors: int = 128,
  row_block: int = 1024,
  col_block: int = 4096,
) -> tuple[jax.Array, jax.Array]:
  """ProbCover on validated finite features: ``([budget] int32 indices, coverage)``."""
  n = feats.shape[0]
  nb, radius = probcover_graph(
    feats, num_neighbors=min(num_neighbors, n), row_block=row_block, col_block=col_block
  )
  check_delta(delta, float(radius), nb)
  return probcover_core(key, nb, labeled_mask, jnp.float32(delta), budget=budget)


def probcover(
  *,
  delta: float | None = None,
  num_classes: int | None = None,
  purity: float = 0.95,
  num_neighbors: int = 128,
  embed: Callable[[jax.Array], jax.Array] | None = None,
  batch_size: int = 256,
) -> Strategy:
  r"""ProbCover: greedy maximum coverage of δ-balls around the chosen points.

  The ball of a point holds every point within Euclidean distance ``< delta``
  (itself included). Points covered by the balls of the labeled set are
  removed first; then, ``budget`` times, the unlabeled point whose ball holds
  the most uncovered points is taken (ties: the lowest index, as the
  reference code) and its ball marked covered. Once every point is covered,
  the rest of the batch is drawn at random (from the key), as the paper says.

  The balls are read from a sparse kNN graph built in tiles
  (:func:`jaxal.neighbors.knn`): each point's ``num_neighbors`` nearest, of
  which those closer than ``delta`` are its ball, so memory is
  ``O(N * num_neighbors)``. A ball of more than ``num_neighbors`` points is
  truncated to its nearest ones; the result is exact whenever every ball
  holds at most ``num_neighbors`` points (choose ``delta`` with
  :func:`probcover_delta`, whose purity criterion keeps balls small).

  Args:
    delta: the ball radius, ``> 0`` and small enough that no ball covers the
      whole pool; None chooses it at each acquire by :func:`probcover_delta`
      (``purity``, k-means pseudo-labels of ``num_classes`` clusters), as the paper.
    num_classes: pseudo-label clusters when ``delta`` is None; default the
      width of the model's logits.
    purity: the purity threshold when ``delta`` is None.
    num_neighbors: neighbours kept per point (the largest ball).
    embed: ``embed(pool) -> [num_points, dim]`` features, or None for the
      model's penultimate features.
    batch_size: forward batch size.

  Returns:
    A :class:`Strategy` named ``"probcover"``.

  Raises:
    TypeError, ValueError: ``delta <= 0`` or another option out of range;
      at acquire time, a ``delta`` so large that one ball covers every point
      (the message gives the measured distances).

  References:
    Yehuda, Dekel, Hacohen & Weinshall, Active Learning Through a Covering
    Lens, NeurIPS 2022.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxal import strategies
    >>> pool = jnp.array([[0.0], [0.1], [0.2], [5.0], [5.1], [9.0]])
    >>> s = strategies.probcover(delta=0.5, embed=lambda x: x)
    >>> s.acquire(jax.random.key(0), None, None, pool, None, 3).tolist()
    [0, 3, 5]
  """
  if delta is not None:
    delta = checks.check_float(delta, "delta", low=0.0, low_open=True)
  if num_classes is not None:
    num_classes = checks.check_int(num_classes, "num_classes", low=2)
  purity = checks.check_float(purity, "purity", low=0.0, high=1.0, low_open=True)
  num_neighbors = checks.check_positive_int(num_neighbors, "num_neighbors")
  embed = check_embed(embed)
  batch_size = checks.check_positive_int(batch_size, "batch_size")

  def acquire(key, model, params, pool, labeled_mask, budget):
    mask, budget = check_acquire_args(key, pool, labeled_mask, budget)
    feats, classes = pool_features(model, params, pool, embed, batch_size, with_classes=True)
    d = delta
    if d is None:
      k = num_classes if num_classes is not None else classes
      if k is None:
        raise ValueError("probcover with delta=None and an embed needs num_classes")
      d = probcover_delta(
        feats, key=jax.random.fold_in(key, 1), num_classes=min(k, feats.shape[0]), purity=purity
      )
    return select_probcover(key, feats, budget, mask, delta=d, num_neighbors=num_neighbors)[0]

  return Strategy("probcover", acquire)


@executables.jit(static_argnames=("row_block", "col_block"))
def impure_radius(feats, labels, *, row_block, col_block):
  """``[N]`` distance from each point to the nearest point of another label (inf if none)."""
  nb = neighbors.knn_core(
    feats, feats, 1, labels, labels, exclude_self=False, row_block=row_block,
    col_block=col_block, group_rule="different",
  )  # fmt: skip
  return jnp.sqrt(nb.sq_distances[:, 0])


def probcover_delta(
  features: ArrayLike,
  labels: ArrayLike | None = None,
  *,
  key: jax.Array | None = None,
  num_classes: int | None = None,
  purity: float = 0.95,
  n_init: int = 3,
  row_block: int = 1024,
  col_block: int = 4096,
) -> float:
  r"""The largest δ whose balls are pure for at least a ``purity`` fraction of points.

  A ball :math:`B_\delta(x) = \{x' : \|x - x'\| < \delta\}` is pure when all
  its points share ``x``'s label; with :math:`r(x)` the distance from ``x``
  to the nearest point of another label, it is pure iff :math:`\delta \le
  r(x)`. So :math:`\pi(\delta) = \frac{1}{N}|\{x : r(x) \ge \delta\}|` and the
  largest δ with :math:`\pi(\delta) \ge` ``purity`` is exactly a quantile of
  ``r``: no grid. As the paper, the labels are k-means pseudo-labels
  (``num_classes`` clusters, :func:`jaxal.selection.kmeans` with ``key``)
  when none are given. ``r`` comes from the blocked kNN (no ``N x N``).

  Args:
    features: ``[num_points, dim]`` features (the ones ProbCover selects on).
    labels: ``[num_points]`` int labels, or None for k-means pseudo-labels.
    key: a ``jax.random.key`` for k-means (needed when ``labels`` is None).
    num_classes: clusters of the pseudo-labels (needed when ``labels`` is None).
    purity: the threshold α in ``(0, 1]`` (the paper's 0.95).
    n_init: k-means runs.
    row_block: queries per tile (memory only).
    col_block: points per tile (memory only).

  Returns:
    δ as a Python float.

  Raises:
    ValueError: shapes that do not match, a single label (every ball is pure),
      ``purity`` out of range, or no key / ``num_classes`` for pseudo-labels.
    TypeError: non-float features or non-integer labels.

  References:
    Yehuda, Dekel, Hacohen & Weinshall, Active Learning Through a Covering
    Lens, NeurIPS 2022 (Section 4, choosing δ).

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxal import strategies
    >>> x = jnp.array([[0.0], [1.0], [2.0], [10.0], [11.0], [12.5]])
    >>> strategies.probcover_delta(x, jnp.array([0, 0, 0, 1, 1, 1]), purity=1.0)
    8.0
  """
  x = checks.check_float_array(features, "features", 2, "[num_points, dim]")
  n = x.shape[0]
  if n < 2:
    raise ValueError(f"features must hold at least 2 points, got shape {x.shape}")
  purity = checks.check_float(purity, "purity", low=0.0, high=1.0, low_open=True)
  row_block = checks.check_positive_int(row_block, "row_block")
  col_block = checks.check_positive_int(col_block, "col_block")
  checks.check_finite(x, "features", purpose="choosing delta needs finite features")
  if labels is None:
    if key is None or num_classes is None:
      raise ValueError("probcover_delta needs labels, or a key and num_classes for k-means")
    checks.check_key(key)
    num_classes = checks.check_int(
      num_classes, "num_classes", low=2, high=n, what=f"the points of features, shape {x.shape}"
    )
    n_init = checks.check_positive_int(n_init, "n_init")
    lab = kmeans_lib.kmeans_core(
      key, x.astype(jnp.float32), num_classes, np.ones((n,), bool), n_init, 100,
      jnp.float32(1e-4), min(1024, num_classes), 8192,
    ).assignments  # fmt: skip
  else:
    lab = neighbors.check_groups(labels, n, "labels")
  r = np.sort(np.asarray(impure_radius(x, lab, row_block=row_block, col_block=col_block)))[::-1]
  need = max(1, math.ceil(purity * n - 1e-9))
  delta = float(r[need - 1])
  if not math.isfinite(delta):
    raise ValueError(
      "every point has the same label, so every ball is pure: give labels of at least two "
      "classes (or num_classes >= 2 pseudo-labels)"
    )
  return delta
