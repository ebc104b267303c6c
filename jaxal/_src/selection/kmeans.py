"""k-means (Lloyd's iterations from k-means++ seeds) and k-means sampling.

:func:`kmeans_sampling` returns ``[k]`` int32 indices into the pool: unique, in
range, never an already-labeled point. ``k`` is static (it fixes the output
shape); the labeled set is a mask, so one compile serves every round of a pool.
Assignments use the chunked distances of :mod:`jaxal._src.distances`; every
loop runs inside ``jax.lax`` with no host round trip.
"""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxal._src import checks
from jaxal._src import distances
from jaxal._src import executables
from jaxal._src.selection import kmeans_pp as kmeans_pp_lib

# ---------------------------------------------------------------------------
# k-means (Lloyd's iterations from k-means++ seeds).


class KMeansResult(NamedTuple):
  """The outcome of :func:`kmeans`: the run of lowest inertia over ``n_init``.

  Attributes:
    centres: ``[k, dim]`` float32 cluster centres.
    assignments: ``[num_points]`` int32, each point's nearest centre (-1 outside the mask).
    inertia: ``[]`` float32, the sum of squared distances to the nearest centre.
    num_iterations: ``[]`` int32, the Lloyd iterations of that run.
  """

  centres: jax.Array  # shape=[k, dim], float32
  assignments: jax.Array  # shape=[num_points], int32: nearest centre (-1 outside the mask)
  inertia: jax.Array  # shape=(), float32: sum of squared distances to the nearest centre
  num_iterations: jax.Array  # shape=(), int32: Lloyd iterations of that run


def lloyd(x, active, centres, max_iter, tol, chunk_size, row_chunk_size):
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
    return distances.min_sq_dist_masked(
      x, c, chunk_size=chunk_size, row_chunk_size=row_chunk_size, x_sq_norms=xn
    )

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


def kmeans_runs(keys, x, active, k, max_iter, tol, chunk_size, row_chunk_size):
  """One k-means run per key (vmapped): a :class:`KMeansResult` with a leading ``[n_init]`` axis."""
  x = x.astype(jnp.float32)
  w = active.astype(jnp.float32)
  num = jnp.maximum(jnp.sum(w), 1.0)
  mean = jnp.sum(x * w[:, None], axis=0) / num
  variance = jnp.sum(((x - mean[None, :]) ** 2) * w[:, None], axis=0) / num
  tol_abs = tol * jnp.mean(variance)  # scikit-learn's relative tolerance

  def one(key_i):
    seeds = kmeans_pp_lib.kmeans_pp_core(
      key_i, x, k, ~active, first="random", chunk_size=min(2048, x.shape[0])
    )
    return lloyd(x, active, x[seeds], max_iter, tol_abs, chunk_size, row_chunk_size)

  return KMeansResult(*jax.vmap(one)(keys))


_STATIC = ("k", "n_init", "max_iter", "chunk_size", "row_chunk_size", "flagged")


@executables.jit(static_argnames=_STATIC)
def kmeans_core(
  key, x, k, active, n_init, max_iter, tol, chunk_size, row_chunk_size, flagged=False
):
  """:func:`kmeans` on validated points ``x``, over the points where ``active`` is True.

  The runs work on ``x / max|x|`` (:func:`distances.rescale`), so no finite
  input overflows a distance; centres and inertia are returned in ``x``'s units.
  ``flagged``: return ``(result, ok)``, ``ok`` the finiteness flag of ``x`` computed in the
  same compiled call (non-finite points give an unspecified result, so the caller raises).
  """
  xs, scale = distances.rescale(x)
  res = _best_run(key, xs, k, active, n_init, max_iter, tol, chunk_size, row_chunk_size)
  res = res._replace(centres=res.centres * scale, inertia=res.inertia * scale * scale)
  return (res, checks.all_finite(x)[0]) if flagged else res


def _best_run(key, xs, k, active, n_init, max_iter, tol, chunk_size, row_chunk_size):
  runs = kmeans_runs(
    jax.random.split(key, n_init), xs, active, k, max_iter, tol, chunk_size, row_chunk_size
  )
  best = jnp.argmin(runs.inertia)  # ties: the first init
  return jax.tree.map(lambda t: t[best], runs)


def check_dense_selection(x: Any, k: Any, labeled_mask: Any) -> tuple[jax.Array, jax.Array, int]:
  """``(x, labeled_mask, k)`` validated for k-means: dense ``[num_points, dim]`` float points."""
  x = checks.check_float_array(x, "x", 2, "[num_points, dim]")
  n = x.shape[0]
  if n == 0:
    raise ValueError("x must hold at least one point, got 0")
  labeled_mask = checks.check_labeled_mask(labeled_mask, n)
  return x, labeled_mask, checks.check_budget(k, n, labeled_mask)


def check_kmeans_args(n_init, max_iter, tol, chunk_size, row_chunk_size):
  """The options of :func:`kmeans`, validated, in the order of the arguments."""
  return (
    checks.check_positive_int(n_init, "n_init"),
    checks.check_positive_int(max_iter, "max_iter"),
    checks.check_float(tol, "tol", low=0.0),
    checks.check_positive_int(chunk_size, "chunk_size"),
    checks.check_positive_int(row_chunk_size, "row_chunk_size"),
  )


def kmeans(
  key: jax.Array,
  x: ArrayLike,
  k: int,
  *,
  n_init: int = 3,
  max_iter: int = 100,
  tol: float = 1e-4,
  chunk_size: int = 1024,
  row_chunk_size: int = 8192,
) -> KMeansResult:
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
  x, _, k = check_dense_selection(x, k, None)
  args = check_kmeans_args(n_init, max_iter, tol, chunk_size, row_chunk_size)
  n_init, max_iter, tol, chunk_size, row_chunk_size = args
  active = jnp.ones((x.shape[0],), bool)
  res, ok = kmeans_core(
    key, x, k, active, n_init, max_iter, jnp.float32(tol), chunk_size, row_chunk_size, flagged=True
  )
  # The finiteness flag came from the same compiled call: no separate pass over the points.
  checks.check_finite(x, "x", purpose="selection needs finite points", ok=ok)
  return res


# ---------------------------------------------------------------------------
# k-means sampling.


def match_centres(x, available, centres, chunk_size, row_chunk_size):
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
    return distances.min_sq_dist_masked(
      centres, x, avail, chunk_size=chunk_size, row_chunk_size=row_chunk_size, y_sq_norms=xn
    )

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


@executables.jit(static_argnames=_STATIC, compiler_options=executables.ELEMENTAL_EMITTERS)
def kmeans_sampling_core(
  key, x, k, labeled_mask, n_init, max_iter, tol, chunk_size, row_chunk_size, flagged=False
):
  """:func:`kmeans_sampling` on validated points ``x`` and a float32 ``tol``.

  ``flagged``: return ``(indices, ok)`` as :func:`kmeans_core` does.
  """
  xs = distances.rescale(x)[0]  # entries in [-1, 1]: no finite input overflows a distance
  active = ~labeled_mask
  res = _best_run(key, xs, k, active, n_init, max_iter, tol, chunk_size, row_chunk_size)
  idx = match_centres(xs, active, res.centres, chunk_size, row_chunk_size)
  return (idx, checks.all_finite(x)[0]) if flagged else idx


def kmeans_sampling(
  key: jax.Array,
  x: ArrayLike,
  k: int,
  *,
  labeled_mask: ArrayLike | None = None,
  n_init: int = 3,
  max_iter: int = 100,
  tol: float = 1e-4,
  chunk_size: int = 1024,
  row_chunk_size: int = 8192,
  check_finite: bool = True,
) -> jax.Array:
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
    check_finite: NaN or inf in ``x`` is an error (flag fused into the compiled call);
      False for callers that checked already. Every finite ``x`` is valid:
      distances are computed on ``x`` divided by its largest magnitude.

  Returns:
    ``[k]`` int32 indices, entry ``j`` for centre ``j``: unique, in range,
    never labeled.

  Raises:
    ValueError: NaN or inf points (naming the first offending row), ``k``
      larger than the unlabeled count, options out of range.
    TypeError: a legacy key, non-float points, a non-bool mask.

  References:
    DISTIL's KMeansSampling (decile-team/distil); Lloyd, 1982.
  """
  checks.check_key(key)
  x, labeled_mask, k = check_dense_selection(x, k, labeled_mask)
  args = check_kmeans_args(n_init, max_iter, tol, chunk_size, row_chunk_size)
  check_finite = checks.check_bool(check_finite, "check_finite")
  return select_kmeans_sampling(key, x, k, labeled_mask, *args, check_finite=check_finite)


def select_kmeans_sampling(
  key: jax.Array,
  x: jax.Array,
  k: int,
  labeled_mask: jax.Array,
  n_init: int = 3,
  max_iter: int = 100,
  tol: float = 1e-4,
  chunk_size: int = 1024,
  row_chunk_size: int = 8192,
  check_finite: bool = True,
) -> jax.Array:
  """:func:`kmeans_sampling` on arguments a caller has validated, except ``x``'s values.

  The caller (a strategy, once, at its entry) has checked ``key``,
  ``labeled_mask``, ``k`` and the options (:func:`check_kmeans_args`); ``x``
  is checked for finiteness here, since the caller computed it.

  Args:
    key: a typed key of shape ``()``.
    x: ``[num_points, dim]`` float points.
    k: a Python int, ``1 <= k <=`` the number of unlabeled points.
    labeled_mask: ``[num_points]`` bool.
    n_init: runs of Lloyd's iterations.
    max_iter: iterations per run.
    tol: the relative inertia change that stops a run.
    chunk_size: centres per chunk.
    row_chunk_size: pool rows per block.
    check_finite: a bool; False skips the finiteness check of ``x``.

  Returns:
    ``[k]`` int32 indices, entry ``j`` for centre ``j``.
  """
  args = (key, x, k, labeled_mask, n_init, max_iter, jnp.float32(tol), chunk_size, row_chunk_size)
  if not check_finite:
    return kmeans_sampling_core(*args)
  # The finiteness flag comes from the same compiled call: no separate pass over the pool.
  idx, ok = kmeans_sampling_core(*args, flagged=True)
  checks.check_finite(x, "x", purpose="selection needs finite points", ok=ok)
  return idx
