"""Diversity selection: k-center greedy (Coreset), k-means and k-means sampling.

Every selector returns ``[k]`` int32 indices into the pool: unique, in range,
never an already-labeled point. ``k`` is static (it fixes the output shape);
the labeled set is a mask, so one compile serves every round of a pool.

All distances come from :mod:`jaxal._src.distances` (chunked, dense or
factorised points); each selection loop runs inside ``jax.lax`` with no host
round trip per pick.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxal._src import checks
from jaxal._src import distances
from jaxal._src import sharding
from jaxal._src import seeding


def _check_positive_int(value, name: str) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
    raise ValueError(f"{name} must be a positive int, got {value!r}")
  return int(value)


def _as_f32(x: distances.Points) -> distances.Points:
  return jax.tree.map(lambda t: t.astype(jnp.float32), x)


# ---------------------------------------------------------------------------
# k-center greedy (Coreset).


@functools.partial(jax.jit, static_argnames=("k", "chunk_size", "row_chunk_size", "ps"))
def _k_center_greedy(x, labeled_mask, key, k, chunk_size, row_chunk_size, ps=None):
  x = _as_f32(x)
  n = distances.num_points(x)
  xn = distances.sq_norms(x)
  # Nearest-labeled-centre distances: one chunked pass, O(N * num_labeled * dim);
  # +inf everywhere when nothing is labeled (the while loop then does no work).
  min_d, _ = distances.min_sq_dist_masked(x, x, labeled_mask, chunk_size=chunk_size,
                                          row_chunk_size=row_chunk_size, x_sq_norms=xn,
                                          y_sq_norms=xn, ps=ps)
  any_labeled = jnp.any(labeled_mask)
  first = jax.random.randint(key, (), 0, n, dtype=jnp.int32)

  def body(t, carry):
    min_d, taken, out = carry
    score = jnp.where(taken, -jnp.inf, min_d)
    j = jnp.argmax(score).astype(jnp.int32)  # first maximum: ties go to the lower index
    j = jnp.where((t == 0) & ~any_labeled, first, j)
    # One matrix-vector product per pick: O(N) memory, N * dim reads.
    d = distances.sq_dist(x, distances.take(x, j, ps), xn, distances.take(xn, j, ps))
    return jnp.minimum(min_d, d), taken.at[j].set(True), out.at[t].set(j)

  init = (min_d, labeled_mask, jnp.zeros((k,), jnp.int32))
  return jax.lax.fori_loop(0, k, body, init)[2]


def k_center_greedy(x: distances.Points | ArrayLike, k: int, *,
                    labeled_mask: ArrayLike | None = None, key: jax.Array | None = None,
                    chunk_size: int = 1024, row_chunk_size: int = 8192) -> jax.Array:
  r"""Coreset's farthest-first traversal: ``k`` unlabeled points, each the farthest from the rest.

  With :math:`C` the labeled points plus the points picked so far, each step
  picks the unlabeled point

  .. math::
    \arg\max_{i \notin C} \; \min_{c \in C} \|x_i - x_c\|_2,

  a 2-approximation of the k-center problem (Gonzalez, 1985), as Sener &
  Savarese (2018) use it. Distances start from each point's nearest labeled
  point; with an empty labeled set the first pick is a uniformly random point
  drawn with ``key``. Ties go to the lower index.

  Cost: one chunked pass for the labeled set (``O(N * num_labeled * dim)``,
  memory ``O(row_chunk_size * chunk_size)``), then one matrix-vector product
  per pick inside a ``jax.lax.fori_loop`` (``N * dim`` reads, ``O(N)``
  memory), so the loop runs at the memory-bandwidth floor and ``N = 10^6``
  fits in bounded memory. A :class:`GradEmbedding` is handled in factorised
  form, ``[N, K * d]`` is never built.

  Args:
    x: ``[num_points, dim]`` embeddings, or a :class:`GradEmbedding`.
    k: how many to pick, ``1 <= k <=`` the number of unlabeled points.
    labeled_mask: optional ``[num_points]`` bool, True where already labeled.
    key: a ``jax.random.key``; required when the labeled set is empty (it
      draws the first point), ignored otherwise.
    chunk_size: labeled points per chunk in the first pass (memory only).
    row_chunk_size: pool rows per block in the first pass (memory only).

  Returns:
    ``[k]`` int32 indices in the order they were picked: unique, in range,
    never labeled.

  Raises:
    ValueError: ``k`` larger than the unlabeled count, non-finite ``x``, a
      missing ``key`` with an empty labeled set.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxal import selection
    >>> x = jnp.array([[0.0], [1.0], [2.0], [10.0]])
    >>> labeled = jnp.array([True, False, False, False])
    >>> selection.k_center_greedy(x, 2, labeled_mask=labeled)
    Array([3, 2], dtype=int32)

  References:
    Sener & Savarese, Active Learning for Convolutional Neural Networks: A
    Core-Set Approach, ICLR 2018.
    Gonzalez, Clustering to minimize the maximum intercluster distance, 1985.
  """
  x, labeled_mask, k = distances.check_selection(x, k, labeled_mask)
  chunk_size = _check_positive_int(chunk_size, "chunk_size")
  row_chunk_size = _check_positive_int(row_chunk_size, "row_chunk_size")
  if key is None:
    if not checks.is_concrete(labeled_mask) or not bool(jnp.any(labeled_mask)):
      raise ValueError(
          "key is required when the labeled set is empty (or labeled_mask is traced): "
          "k-center greedy then starts from a random point; pass key=jax.random.key(seed)"
      )
    key = jax.random.key(0)  # unused: the labeled set fixes the first pick
  else:
    checks.check_key(key)
  distances.check_finite_points(x, "x")
  ps = sharding.pool_sharding((x, labeled_mask), "x and labeled_mask")
  x, labeled_mask = sharding.place(x, ps), sharding.replicate(labeled_mask, ps)
  return _k_center_greedy(x, labeled_mask, key, k=k, chunk_size=chunk_size,
                          row_chunk_size=row_chunk_size, ps=ps)


# ---------------------------------------------------------------------------
# k-means (Lloyd's iterations from k-means++ seeds).


class KMeansResult(NamedTuple):
  """The outcome of :func:`kmeans`: the run of lowest inertia over ``n_init``."""

  centres: jax.Array  # shape=[k, dim], float32
  assignments: jax.Array  # shape=[num_points], int32: nearest centre (-1 outside the mask)
  inertia: jax.Array  # shape=(), float32: sum of squared distances to the nearest centre
  num_iterations: jax.Array  # shape=(), int32: Lloyd iterations of that run


def _lloyd(x, active, centres, max_iter, tol, chunk_size, row_chunk_size):
  """Lloyd's iterations from ``centres`` over the points where ``active`` is True.

  An iteration assigns every point to its nearest centre (ties to the lower
  index), moves each centre to the mean of its points, and re-seeds every empty
  cluster at a distinct point far from its centre: the ``r``-th empty cluster
  (in index order) takes the ``r``-th farthest active point. It stops after
  ``max_iter`` iterations or once the centres moved by at most ``tol`` (sum of
  squared shifts). Returns ``(centres, assignments, inertia, iterations)``
  with assignments and inertia recomputed for the final centres.
  """
  k = centres.shape[0]
  w = active.astype(jnp.float32)
  xn = jnp.sum(x * x, axis=1)

  def assign(c):
    return distances.min_sq_dist_masked(x, c, chunk_size=chunk_size,
                                        row_chunk_size=row_chunk_size, x_sq_norms=xn)

  def cond(s):
    it, _, shift = s
    return (it < max_iter) & (shift > tol)

  def body(s):
    it, c, _ = s
    d, a = assign(c)
    sums = jax.ops.segment_sum(x * w[:, None], a, num_segments=k)
    counts = jax.ops.segment_sum(w, a, num_segments=k)
    new = sums / jnp.maximum(counts, 1.0)[:, None]
    empty = counts <= 0
    far = jax.lax.top_k(jnp.where(active, d, -jnp.inf), k)[1]
    rank = jnp.cumsum(empty.astype(jnp.int32)) - 1
    new = jnp.where(empty[:, None], x[far[jnp.maximum(rank, 0)]], new)
    return it + 1, new, jnp.sum((new - c) ** 2)

  it, c, _ = jax.lax.while_loop(cond, body, (jnp.int32(0), centres, jnp.float32(jnp.inf)))
  d, a = assign(c)
  inertia = jnp.sum(jnp.where(active, d, 0.0))
  return c, jnp.where(active, a, -1), inertia, it


def _kmeans_runs(keys, x, active, k, max_iter, tol, chunk_size, row_chunk_size):
  """One k-means run per key (vmapped): a :class:`KMeansResult` with a leading ``[n_init]`` axis."""
  x = x.astype(jnp.float32)
  w = active.astype(jnp.float32)
  num = jnp.maximum(jnp.sum(w), 1.0)
  mean = jnp.sum(x * w[:, None], axis=0) / num
  variance = jnp.sum(((x - mean[None, :]) ** 2) * w[:, None], axis=0) / num
  tol_abs = tol * jnp.mean(variance)  # scikit-learn's relative tolerance

  def one(key_i):
    seeds = seeding.kmeans_pp(key_i, x, k, labeled_mask=~active, first="random")
    return _lloyd(x, active, x[seeds], max_iter, tol_abs, chunk_size, row_chunk_size)

  return KMeansResult(*jax.vmap(one)(keys))


@functools.partial(jax.jit, static_argnames=("k", "n_init", "max_iter", "chunk_size",
                                             "row_chunk_size"))
def _kmeans(key, x, active, k, n_init, max_iter, tol, chunk_size, row_chunk_size):
  runs = _kmeans_runs(jax.random.split(key, n_init), x, active, k, max_iter, tol, chunk_size,
                      row_chunk_size)
  best = jnp.argmin(runs.inertia)  # ties: the first init
  return jax.tree.map(lambda t: t[best], runs)


def _check_kmeans_args(n_init, max_iter, tol, chunk_size, row_chunk_size):
  n_init = _check_positive_int(n_init, "n_init")
  max_iter = _check_positive_int(max_iter, "max_iter")
  if isinstance(tol, bool) or not isinstance(tol, (int, float, np.floating)) or not tol >= 0:
    raise ValueError(f"tol must be a float >= 0, got {tol!r}")
  return (n_init, max_iter, float(tol), _check_positive_int(chunk_size, "chunk_size"),
          _check_positive_int(row_chunk_size, "row_chunk_size"))


def kmeans(key: jax.Array, x: ArrayLike, k: int, *, n_init: int = 3, max_iter: int = 100,
           tol: float = 1e-4, chunk_size: int = 1024, row_chunk_size: int = 8192) -> KMeansResult:
  r"""k-means clustering: Lloyd's iterations from k-means++ seeds, best of ``n_init`` runs.

  Minimises the inertia :math:`\sum_i \min_j \|x_i - c_j\|^2`. Each run seeds
  with :func:`jaxal.selection.kmeans_pp` (``first="random"``) and iterates
  assign / update until the centres move by at most ``tol`` times the mean
  per-feature variance of ``x`` (scikit-learn's convention) or ``max_iter``
  iterations; an empty cluster is re-seeded at the point farthest from its
  centre. The ``n_init`` runs are vmapped over split keys and the run of
  lowest inertia is returned. Assignment is chunked
  (:func:`distances.min_sq_dist_masked`), memory ``O(n_init * N)`` beyond ``x``.

  Args:
    key: a ``jax.random.key``.
    x: ``[num_points, dim]`` points.
    k: number of clusters, ``1 <= k <= num_points``.
    n_init: independent seedings (vmapped).
    max_iter: most Lloyd iterations per run.
    tol: relative tolerance on the centre shift; 0 iterates to a fixed point.
    chunk_size: centres per distance chunk (memory only).
    row_chunk_size: points per distance block (memory only).

  Returns:
    :class:`KMeansResult` with ``centres [k, dim]``, ``assignments
    [num_points]`` int32, ``inertia`` and ``num_iterations``.

  References:
    Lloyd, Least squares quantization in PCM, 1982.
    Arthur & Vassilvitskii, k-means++: the advantages of careful seeding, SODA 2007.
  """
  checks.check_key(key)
  x = checks.check_float_array(x, "x", 2, "[num_points, dim]")
  n = x.shape[0]
  if n == 0:
    raise ValueError("x must hold at least one point, got 0")
  k = checks.check_budget(k, n)
  args = _check_kmeans_args(n_init, max_iter, tol, chunk_size, row_chunk_size)
  distances.check_finite_points(x, "x")
  n_init, max_iter, tol, chunk_size, row_chunk_size = args
  return _kmeans(key, x, jnp.ones((n,), bool), k=k, n_init=n_init, max_iter=max_iter,
                 tol=jnp.float32(tol), chunk_size=chunk_size, row_chunk_size=row_chunk_size)


# ---------------------------------------------------------------------------
# k-means sampling.


def _match_centres(x, available, centres, chunk_size, row_chunk_size):
  """The nearest available point of each centre, without duplicates.

  Greedy by distance: repeatedly take the unresolved centre whose nearest
  available point is closest (ties: lower centre, then lower point index),
  give it that point and mark the point used. A centre whose nearest point was
  just taken gets its nearest point recomputed (one chunked pass, only on the
  steps where such a collision happens).
  """
  k = centres.shape[0]
  xn = jnp.sum(x * x, axis=1)

  def nearest(avail):
    return distances.min_sq_dist_masked(centres, x, avail, chunk_size=chunk_size,
                                        row_chunk_size=row_chunk_size, y_sq_norms=xn)

  d, p = nearest(available)

  def body(t, s):
    d, p, avail, resolved, out = s
    j = jnp.argmin(jnp.where(resolved, jnp.inf, d))
    q = p[j]
    out = out.at[j].set(q)
    resolved = resolved.at[j].set(True)
    avail = avail.at[q].set(False)
    collided = jnp.any(~resolved & (p == q))
    d, p = jax.lax.cond(collided, nearest, lambda _: (d, p), avail)
    return d, p, avail, resolved, out

  init = (d, p, available, jnp.zeros((k,), bool), jnp.zeros((k,), jnp.int32))
  return jax.lax.fori_loop(0, k, body, init)[4]


@functools.partial(jax.jit, static_argnames=("k", "n_init", "max_iter", "chunk_size",
                                             "row_chunk_size"))
def _kmeans_sampling(key, x, labeled_mask, k, n_init, max_iter, tol, chunk_size, row_chunk_size):
  x = x.astype(jnp.float32)
  active = ~labeled_mask
  res = _kmeans(key, x, active, k, n_init, max_iter, tol, chunk_size, row_chunk_size)
  return _match_centres(x, active, res.centres, chunk_size, row_chunk_size)


def kmeans_sampling(key: jax.Array, x: ArrayLike, k: int, *,
                    labeled_mask: ArrayLike | None = None, n_init: int = 3,
                    max_iter: int = 100, tol: float = 1e-4, chunk_size: int = 1024,
                    row_chunk_size: int = 8192) -> jax.Array:
  """k-means sampling: cluster the unlabeled points into ``k``, take the point nearest each centre.

  Runs :func:`kmeans` on the unlabeled points only (labeled points neither
  seed nor pull the centres, as in DISTIL's ``KMeansSampling``), then gives
  each centre its nearest unlabeled point. When two centres share a nearest
  point, collisions are resolved greedily by distance: the closest
  (centre, point) pair is fixed first and the other centre takes its next
  nearest free point, so the ``k`` indices are distinct.

  Args:
    key: a ``jax.random.key``.
    x: ``[num_points, dim]`` embeddings.
    k: how many to pick, ``1 <= k <=`` the number of unlabeled points.
    labeled_mask: optional ``[num_points]`` bool, True where already labeled.
    n_init, max_iter, tol, chunk_size, row_chunk_size: as in :func:`kmeans`.

  Returns:
    ``[k]`` int32 indices, entry ``j`` for centre ``j``: unique, in range,
    never labeled.

  References:
    DISTIL's KMeansSampling (decile-team/distil); Lloyd, 1982.
  """
  checks.check_key(key)
  x = checks.check_float_array(x, "x", 2, "[num_points, dim]")
  n = x.shape[0]
  if n == 0:
    raise ValueError("x must hold at least one point, got 0")
  labeled_mask = checks.check_labeled_mask(labeled_mask, n)
  k = checks.check_budget(k, n, labeled_mask)
  args = _check_kmeans_args(n_init, max_iter, tol, chunk_size, row_chunk_size)
  distances.check_finite_points(x, "x")
  n_init, max_iter, tol, chunk_size, row_chunk_size = args
  return _kmeans_sampling(key, x, labeled_mask, k=k, n_init=n_init, max_iter=max_iter,
                          tol=jnp.float32(tol), chunk_size=chunk_size,
                          row_chunk_size=row_chunk_size)
