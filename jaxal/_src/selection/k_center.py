"""k-center greedy (Coreset): farthest-first traversal from the labeled set.

Returns ``[k]`` int32 indices into the pool: unique, in range, never an
already-labeled point. ``k`` is static (it fixes the output shape); the labeled
set is a mask, so one compile serves every round of a pool. Distances come from
:mod:`jaxal._src.distances` (chunked, dense or factorised points); the loop
runs inside ``jax.lax`` with no host round trip per pick.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxal._src import cached_ops
from jaxal._src import checks
from jaxal._src import distances
from jaxal._src import executables
from jaxal._src import sharding

# Pool rows gathered per step of a pick's update (the candidates the triangle inequality keeps).
_GATHER = 128
# Picks made without the bound after one whose bound still left it a whole pass (then it is
# tried again).
_UNBOUNDED_PICKS = 8
# A pick whose candidates are more than 1/_DENSE_DIV of the pool streams it whole: gathered
# rows are read several times slower than one pass over the pool (benchmarks/k_center.py's
# MNIST-feature rows, where about two thirds of the rows are candidates, show the difference).
_DENSE_DIV = 4
# Pool rows per block of the first pass: a [2048, 1024] block of distances (8 MiB) stays in
# cache where an [8192, 1024] one (32 MiB) does not. The blocking changes no distance, so no
# pick.
ROW_CHUNK_SIZE = 2048


def _unit_scale(t: jax.Array) -> jax.Array:
  """The power of two ``s`` (shape ``()``) that brings every row norm of ``t [N, d]`` to ``<= 1``.

  Distances are computed on ``s * t`` (scaled where rows are read, never as a
  copy of the pool). A power of two is exact in floating point, so every
  distance is the unscaled one times a constant and the picks do not change;
  entries near 1e20 (whose squares overflow float32) then work as well as
  entries near 1.
  """
  powers = lambda v: jnp.where(v > 0, jnp.exp2(-jnp.ceil(jnp.log2(jnp.where(v > 0, v, 1.0)))), 1.0)
  s1 = powers(jnp.max(jnp.abs(t)))
  return s1 * powers(jnp.sqrt(jnp.max(jnp.sum(jnp.square(t * s1), axis=-1))))


def _scaled(rows: distances.Points, scale, power: int = 1) -> distances.Points:
  """``rows`` (float32) times ``scale ** power``, leaf by leaf (a GradEmbedding has two)."""
  return jax.tree.map(lambda t, s: t.astype(jnp.float32) * s**power, rows, scale)


def _nearest_labeled(x, scale, xn, order, count, chunk_size, row_chunk_size):
  """``(min_d [N], nearest [N] int32)``: each point's nearest labeled point, on scaled rows.

  ``order [N]``: the labeled rows first, in index order; ``count`` of them.
  ``nearest`` is a position in ``order`` (ties to the lower position, so to the
  lower index). As :func:`distances.min_sq_dist_masked`: rows in blocks of
  ``row_chunk_size``, labeled rows gathered ``chunk_size`` at a time, blocks
  scaled as they are read.
  """
  n = distances.num_points(x)
  chunk = max(1, min(chunk_size, n))
  rows = max(1, min(row_chunk_size, n))

  def block(b, carry):
    best_all, arg_all = carry
    start = jnp.minimum(b * rows, n - rows)
    xb = _scaled(
      jax.tree.map(lambda t: jax.lax.dynamic_slice_in_dim(t, start, rows, axis=0), x), scale
    )
    xbn = jax.lax.dynamic_slice_in_dim(xn, start, rows)

    def body(s):
      c, best, arg = s
      pos = c * chunk + jnp.arange(chunk, dtype=jnp.int32)
      cols = order[jnp.minimum(pos, n - 1)]
      d = distances.sq_dist(xb, _scaled(distances.take(x, cols), scale), xbn, xn[cols])
      d = jnp.where((pos < count)[None, :], d, jnp.inf)
      j = jnp.argmin(d, axis=1)
      dj = jnp.take_along_axis(d, j[:, None], axis=1)[:, 0]
      better = dj < best
      return c + 1, jnp.where(better, dj, best), jnp.where(better, c * chunk + j, arg)

    init = (jnp.int32(0), jnp.full((rows,), jnp.inf, jnp.float32), jnp.zeros((rows,), jnp.int32))
    _, best, arg = jax.lax.while_loop(lambda s: s[0] * chunk < count, body, init)
    return (
      jax.lax.dynamic_update_slice_in_dim(best_all, best, start, axis=0),
      jax.lax.dynamic_update_slice_in_dim(arg_all, arg, start, axis=0),
    )

  init = (jnp.full((n,), jnp.inf, jnp.float32), jnp.zeros((n,), jnp.int32))
  return jax.lax.fori_loop(0, -(-n // rows), block, init)


def _dim(x: distances.Points) -> int:
  return sum(leaf.shape[-1] for leaf in jax.tree.leaves(x))


@executables.jit(
  static_argnames=("k", "chunk_size", "row_chunk_size", "ps", "flagged"),
  compiler_options=executables.ELEMENTAL_EMITTERS,
)
def k_center_greedy_core(
  first, x, k, labeled_mask, chunk_size, row_chunk_size, ps=None, flagged=False
):
  """:func:`k_center_greedy` on validated, placed points; ``first`` (int32, shape ``()``) the
  first pick when nothing is labeled (:func:`first_pick`), unused otherwise.

  ``flagged``: return ``(picks, ok)``, ``ok`` the finiteness flags of ``x``'s leaves
  (:func:`jaxal._src.checks.all_finite`) computed in the same compiled call, for
  :func:`jaxal._src.checks.check_finite`'s ``ok=`` (non-finite points give unspecified picks,
  so the caller raises). Otherwise the picks alone, for finite points.
  """
  idx = _k_center(first, x, k, labeled_mask, chunk_size, row_chunk_size, ps)[0]
  return (idx, checks.all_finite(x)) if flagged else idx


def _k_center(first, x, k, labeled_mask, chunk_size, row_chunk_size, ps=None):
  """``(picks [k] int32, pool rows read by the picks [] int32)``; ``first`` the first pick
  when nothing is labeled.

  Each point keeps its squared distance ``min_d`` to, and the list position of,
  its nearest centre ``c`` (centres: the labeled points in index order, then the
  picks). A new centre ``j`` can only bring point ``i`` nearer when
  ``d(j, c) < 2 sqrt(min_d_i)`` (triangle inequality: ``d(i, j) >= d(j, c) -
  d(i, c)``), so a pick computes ``j``'s distances to the centres (a short
  list), keeps the points the bound cannot rule out (with a margin for float32
  rounding) and gathers only those rows, or streams the whole pool when they are more
  than a quarter of it. The skipped points' ``min_d`` would not have changed: the picks
  are those of the full pass, in the same order. Where a bound kept more than a quarter
  of the pool (so the pick streamed it whole and the bound saved nothing; spread points,
  where it rules out almost nothing), the next ``_UNBOUNDED_PICKS`` picks make the full
  pass without computing it.
  """
  n = distances.num_points(x)
  scale = jax.tree.map(lambda t: _unit_scale(t.astype(jnp.float32)), x)
  xn = distances.sq_norms(_scaled(x, scale))  # fused: no scaled copy of the pool
  # Nearest-labeled-centre distances: one chunked pass, O(N * num_labeled * dim);
  # +inf everywhere when nothing is labeled (the while loop then does no work).
  if ps is None:
    num_labeled = jnp.sum(labeled_mask, dtype=jnp.int32)
    # The centre list: the labeled rows in index order (one stable sort), then the picks.
    centres = jnp.argsort(~labeled_mask, stable=True).astype(jnp.int32)
    min_d, assign = _nearest_labeled(x, scale, xn, centres, num_labeled, chunk_size, row_chunk_size)
  else:  # sharded: the library's pass, on a scaled copy of each device's rows
    xs = _scaled(x, scale)
    min_d, _ = distances.min_sq_dist_masked(
      xs, xs, labeled_mask, chunk_size=chunk_size, x_sq_norms=xn, y_sq_norms=xn, ps=ps
    )
  any_labeled = jnp.any(labeled_mask)
  first = jnp.asarray(first, jnp.int32)

  def choose(t, min_d, taken):
    score = jnp.where(taken, -jnp.inf, min_d)
    j = jnp.argmax(score).astype(jnp.int32)  # first maximum: ties go to the lower index
    return jnp.where((t == 0) & ~any_labeled, first, j)

  if ps is not None:  # sharded pool: every pick reads every row (one product per device)

    def full_body(t, carry):
      min_d, taken, out = carry
      j = choose(t, min_d, taken)
      # x . (s² x_j) is (s x) . (s x_j) exactly: the product reads the pool unscaled.
      xj = _scaled(distances.take(x, j, ps), scale, 2)
      d = jnp.maximum(xn + distances.take(xn, j, ps) - 2.0 * distances.inner(x, xj), 0.0)
      return jnp.minimum(min_d, d), taken.at[j].set(True), out.at[t].set(j)

    init = (min_d, labeled_mask, jnp.zeros((k,), jnp.int32))
    return jax.lax.fori_loop(0, k, full_body, init)[2], jnp.float32(n * k)

  # Float32 error of one expanded squared distance between rows of norm <= 1.
  tol = jnp.float32(4 * (_dim(x) + 4) * jnp.finfo(jnp.float32).eps)
  g = min(_GATHER, n)

  def sq_dist_rows(idx, j):
    """Squared distances from pool rows ``idx [g]`` to pool row ``j``."""
    return distances.sq_dist(
      _scaled(distances.take(x, idx), scale), _scaled(distances.take(x, j), scale), xn[idx], xn[j]
    )

  def gathered(count, fn, init):
    """``fn(state, positions, valid)`` over positions ``0 .. count - 1`` in steps of ``g``."""

    def body(s):
      c, state = s
      pos = c * g + jnp.arange(g, dtype=jnp.int32)
      return c + 1, fn(state, jnp.minimum(pos, n - 1), pos < count)

    return jax.lax.while_loop(lambda s: s[0] * g < count, body, (jnp.int32(0), init))[1]

  def bounded(state):
    """The points the bound cannot rule out, and their count (reads ``slot`` centre rows)."""
    min_d, assign, taken, centres, j, slot = state

    # d(j, c) for every centre c so far (labeled + picked): a short list.
    def centre_step(dc, pos, valid):
      d = sq_dist_rows(centres[pos], j)
      return dc.at[jnp.where(valid, pos, n)].set(d, mode="drop")

    dc = gathered(slot, centre_step, jnp.zeros((n,), jnp.float32))
    # Skip i unless d(j, c_i) < 2 r_i can hold: sqrt(dc - tol) < sqrt(r²+tol) + sqrt(r²+2tol).
    d_c = jnp.where(jnp.isinf(min_d), 0.0, dc[assign])
    lhs = jnp.sqrt(jnp.maximum(d_c - tol, 0.0))
    may = lhs < jnp.sqrt(min_d + tol) + jnp.sqrt(min_d + 2.0 * tol)
    cand = may & ~taken
    return cand, jnp.sum(cand, dtype=jnp.int32)

  def unbounded(state):
    """Every untaken point (the full pass, whose picks the bound keeps)."""
    taken = state[2]
    return ~taken, jnp.int32(n)

  def body(t, carry):
    min_d, assign, taken, centres, out, reads, check_at = carry
    j = choose(t, min_d, taken)
    slot = num_labeled + t  # j's position in the centre list
    centres = centres.at[slot].set(j)
    # The bound costs a pass over the centres; where it last left a pick the whole pass (it
    # saved nothing), the next picks read the whole pool without it.
    check = t >= check_at
    cand, count = jax.lax.cond(check, bounded, unbounded, (min_d, assign, taken, centres, j, slot))

    def sparse(state):  # gather the candidates, g rows at a time
      # The p-th candidate (in index order) is the first row whose running count passes p:
      # a binary search per gathered position, instead of scattering all n rows into a list.
      running = jnp.cumsum(cand, dtype=jnp.int32)

      def update(state, pos, valid):
        min_d, assign = state
        idx = jnp.minimum(jnp.searchsorted(running, pos + 1), n - 1).astype(jnp.int32)
        d = sq_dist_rows(idx, j)
        better = valid & (d < min_d[idx])
        where = jnp.where(better, idx, n)
        return min_d.at[where].set(d, mode="drop"), assign.at[where].set(slot, mode="drop")

      return gathered(count, update, state)

    def dense(state):  # many rows are candidates: one streaming pass beats gathering them
      min_d, assign = state
      # x . (s² x_j) is (s x) . (s x_j) exactly: the product reads the pool unscaled.
      xj = _scaled(distances.take(x, j), scale, 2)
      d = jnp.maximum(xn + xn[j] - 2.0 * distances.inner(x, xj), 0.0)
      better = cand & (d < min_d)
      return jnp.where(better, d, min_d), jnp.where(better, slot, assign)

    use_dense = count > n // _DENSE_DIV
    min_d, assign = jax.lax.cond(use_dense, dense, sparse, (min_d, assign))
    rows_read = jnp.where(use_dense, n, count) + jnp.where(check, slot, 0)
    check_at = jnp.where(check & use_dense, t + _UNBOUNDED_PICKS, check_at)
    taken = taken.at[j].set(True)
    return (
      min_d,
      assign,
      taken,
      centres,
      out.at[t].set(j),
      reads + rows_read.astype(jnp.float32),
      check_at,
    )

  init = (
    min_d,
    assign,
    labeled_mask,
    centres,
    jnp.zeros((k,), jnp.int32),
    jnp.float32(0),
    jnp.int32(0),
  )
  out = jax.lax.fori_loop(0, k, body, init)
  return out[4], out[5]


@checks.spelled_as_key_or_none(
  "k_center_greedy(key, x, k, *, labeled_mask=None, chunk_size=1024, row_chunk_size=2048)"
)
def k_center_greedy(
  key: jax.Array | None,
  x: distances.Points | ArrayLike,
  k: int,
  *,
  labeled_mask: ArrayLike | None = None,
  chunk_size: int = 1024,
  row_chunk_size: int = ROW_CHUNK_SIZE,
) -> jax.Array:
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
  fits in bounded memory. A pick reads only the points the triangle inequality
  cannot rule out (on clustered points a small part of the pool); the picks are
  those of the full pass. A :class:`GradEmbedding` is handled in factorised
  form, ``[N, K * d]`` is never built.

  Args:
    key: a ``jax.random.key``, or None when the labeled set is not empty: it
      only draws the first point when nothing is labeled.
    x: ``[num_points, dim]`` embeddings, or a :class:`GradEmbedding`.
    k: how many to pick, ``1 <= k <=`` the number of unlabeled points.
    labeled_mask: optional ``[num_points]`` bool, True where already labeled.
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
    >>> selection.k_center_greedy(None, x, 2, labeled_mask=labeled)
    Array([3, 2], dtype=int32)

  References:
    Sener & Savarese, Active Learning for Convolutional Neural Networks: A
    Core-Set Approach, ICLR 2018.
    Gonzalez, Clustering to minimize the maximum intercluster distance, 1985.
  """
  x, labeled_mask, k = distances.check_selection(x, k, labeled_mask)
  chunk_size = checks.check_positive_int(chunk_size, "chunk_size")
  row_chunk_size = checks.check_positive_int(row_chunk_size, "row_chunk_size")
  if key is None:
    if not checks.is_concrete(labeled_mask) or not cached_ops.any_bool(labeled_mask):
      raise ValueError(
        "key is required when the labeled set is empty (or labeled_mask is traced): "
        "k-center greedy then starts from a random point; pass jax.random.key(seed) first"
      )
  else:
    checks.check_key(key)
  return select_k_center(key, x, k, labeled_mask, chunk_size, row_chunk_size)


def select_k_center(
  key: jax.Array,
  x: distances.Points,
  k: int,
  labeled_mask: jax.Array,
  chunk_size: int = 1024,
  row_chunk_size: int = ROW_CHUNK_SIZE,
  check_finite: bool = True,
) -> jax.Array:
  """:func:`k_center_greedy` on arguments a caller has validated, except ``x``'s values.

  The caller (a strategy, once, at its entry) has checked ``key`` (a typed key;
  any key or None when some point is labeled), ``labeled_mask`` and ``k``; ``x`` is
  checked for finiteness here, since the caller computed it, unless
  ``check_finite`` is False (a caller that checked it with its own flags).

  Args:
    key: a typed key of shape ``()`` (or None when some point is labeled).
    x: ``[num_points, dim]`` float points, or a :class:`GradEmbedding`.
    k: a Python int, ``1 <= k <=`` the number of unlabeled points.
    labeled_mask: ``[num_points]`` bool.
    chunk_size: labeled points per chunk in the first pass.
    row_chunk_size: pool rows per block in the first pass.
    check_finite: a bool; False skips the finiteness check of ``x``.

  Returns:
    ``[k]`` int32 indices in the order they were picked.
  """
  original = x
  x, labeled_mask = sharding.single_device((x, labeled_mask))
  ps = sharding.pool_sharding((x, labeled_mask), "x and labeled_mask")
  x, labeled_mask = sharding.place(x, ps), sharding.replicate(labeled_mask, ps)
  first = first_pick(key, labeled_mask)
  if not check_finite:
    return k_center_greedy_core(first, x, k, labeled_mask, chunk_size, row_chunk_size, ps)
  # The finiteness flags come from the same compiled call: no separate pass over the pool.
  idx, ok = k_center_greedy_core(
    first, x, k, labeled_mask, chunk_size, row_chunk_size, ps, flagged=True
  )
  checks.check_finite(original, "x", purpose="selection needs finite points", ok=ok)
  return idx


def first_pick(key: jax.Array | None, labeled_mask: jax.Array) -> jax.Array:
  """The first pick of k-center greedy with an empty labeled set: ``jax.random.randint(key,
  (), 0, N)`` (int32, shape ``()``).

  When some point is labeled the labeled set fixes the first pick and no number is drawn (a
  host read of the mask: the random draw is a program of its own, about 0.1 s to compile in a
  fresh process); the value returned is then 0, which the core ignores.
  """
  if key is None or (checks.is_concrete(labeled_mask) and cached_ops.any_bool(labeled_mask)):
    return jax.device_put(np.zeros((), np.int32))
  return _random_index(key, labeled_mask.shape[0])


@executables.jit(static_argnames=("n",))
def _random_index(key: jax.Array, n: int) -> jax.Array:
  return jax.random.randint(key, (), 0, n, dtype=jnp.int32)
