"""Squared Euclidean distances over dense and factorised point sets.

Points are either a dense ``[num_points, dim]`` array or a :class:`GradEmbedding`
``a ⊗ z`` (``a: [num_points, num_classes]``, ``z: [num_points, feat_dim]``),
which stands for the ``[num_points, num_classes * feat_dim]`` matrix of
per-example outer products without ever building it. For the factorised form

.. math::
  \\langle a \\otimes z, b \\otimes w \\rangle = (a \\cdot b)(z \\cdot w), \\qquad
  \\|a \\otimes z - b \\otimes w\\|^2 = \\|a\\|^2\\|z\\|^2 + \\|b\\|^2\\|w\\|^2 - 2(a \\cdot b)(z \\cdot w).

All distances are clamped at 0 (the expansion can round to -1e-7). Functions
that compare many points with many centres are chunked over the centres so
memory stays ``O(num_points * chunk_size)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxal._src import checks
from jaxal._src import sharding
from jaxal._src.embeddings.grad_embedding import GradEmbedding

Points = jax.Array | GradEmbedding


def check_points(x, name: str = "x") -> Points:
  """Validates a dense ``[num_points, dim]`` array or a :class:`GradEmbedding`."""
  if isinstance(x, GradEmbedding):
    a = checks.check_float_array(x.a, f"{name}.a", 2, "[num_points, num_classes]")
    z = checks.check_float_array(x.z, f"{name}.z", 2, "[num_points, feat_dim]")
    checks.check_same_n(f"{name}.a", a, f"{name}.z", z)
    return GradEmbedding(a, z)
  return checks.check_float_array(x, name, 2, "[num_points, dim]")


def check_selection(x, k, labeled_mask, name: str = "x") -> tuple[Points, jax.Array, int]:
  """The common preamble of point selectors: ``(points, labeled_mask, k)`` validated."""
  x = check_points(x, name)
  n = num_points(x)
  if n == 0:
    raise ValueError(f"{name} must hold at least one point, got 0")
  labeled_mask = checks.check_labeled_mask(labeled_mask, n)
  k = checks.check_budget(k, n, labeled_mask)
  return x, labeled_mask, k


def max_abs(t: jax.Array) -> jax.Array:
  """``max |t|`` in float32, 1 where ``t`` is all zeros (a safe divisor)."""
  m = jnp.max(jnp.abs(t.astype(jnp.float32))) if t.size else jnp.float32(0.0)
  return jnp.where(m > 0, m, 1.0).astype(jnp.float32)


def rescale(x: Points) -> tuple[Points, jax.Array]:
  """``(x / s, s)``: the points divided by their largest magnitude, and that scale.

  Distances between finite points can overflow float32 long before the points
  do (``(1e20)² = inf``). Every entry of the rescaled points lies in ``[-1, 1]``,
  so their squared norms and distances are at most ``4 * dim`` (``4 * K * d``
  for a :class:`GradEmbedding`, whose factors are rescaled separately).
  Squared distances of ``x`` are ``s²`` times those of ``x / s``: the D² law,
  nearest centres and farthest points do not change.

  Args:
    x: ``[num_points, dim]`` points or a :class:`GradEmbedding`, finite.

  Returns:
    ``(points, s)`` with ``s`` a float32 scalar ``> 0``, ``x == s * points``.
  """
  if isinstance(x, GradEmbedding):
    sa, sz = max_abs(x.a), max_abs(x.z)
    a = x.a.astype(jnp.float32) / sa
    z = x.z.astype(jnp.float32) / sz
    return GradEmbedding(a, z), sa * sz
  s = max_abs(x)
  return x.astype(jnp.float32) / s, s


def num_points(x: Points) -> int:
  return x.num_points if isinstance(x, GradEmbedding) else x.shape[0]


def sq_norms(x: Points) -> jax.Array:
  """``[num_points]`` squared norms."""
  if isinstance(x, GradEmbedding):
    return x.sq_norms()
  return jnp.sum(x * x, axis=-1)


def take(x: Points, idx: jax.Array, ps: sharding.PoolSharding | None = None) -> Points:
  """Rows ``idx`` (a scalar index gives a single point).

  With ``ps`` (a pool sharded along N), the rows are fetched without
  gathering the pool (:func:`jaxal._src.sharding.take`).
  """
  return jax.tree.map(lambda t: sharding.take(t, idx, ps), x)


def inner(x: Points, y: Points) -> jax.Array:
  """Inner products between the rows of ``x`` ``[N, ...]`` and ``y`` ``[M, ...]`` → ``[N, M]``.

  A single point ``y`` (rank one less) gives ``[N]``.
  """
  if isinstance(x, GradEmbedding):
    if not isinstance(y, GradEmbedding):
      raise TypeError("inner: x is a GradEmbedding, so y must be one too")
    return jnp.matmul(x.a, y.a.T) * jnp.matmul(x.z, y.z.T)
  return jnp.matmul(x, y.T)


def sq_dist(
  x: Points, y: Points, x_sq_norms: jax.Array | None = None, y_sq_norms: jax.Array | None = None
) -> jax.Array:
  """Squared distances, ``[N, M]`` (or ``[N]`` for a single point ``y``), clamped at 0."""
  xn = sq_norms(x) if x_sq_norms is None else x_sq_norms
  yn = sq_norms(y) if y_sq_norms is None else y_sq_norms
  ip = inner(x, y)
  d = xn[:, None] + yn[None, :] - 2.0 * ip if ip.ndim == 2 else xn + yn - 2.0 * ip
  return jnp.maximum(d, 0.0)


def _pad_rows(y: Points, multiple: int) -> tuple[Points, int]:
  m = num_points(y)
  pad = (-m) % multiple
  if pad == 0:
    return y, m
  if isinstance(y, GradEmbedding):
    return GradEmbedding(jnp.pad(y.a, ((0, pad), (0, 0))), jnp.pad(y.z, ((0, pad), (0, 0)))), m
  return jnp.pad(y, ((0, pad), (0, 0))), m


def min_sq_dist(
  x: Points, y: Points, *, chunk_size: int = 1024, x_sq_norms: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
  """For each row of ``x``, the squared distance to, and index of, its nearest row of ``y``.

  Chunked over ``y`` with ``jax.lax.scan``: memory ``O(N * chunk_size)``.

  Args:
    x: ``[N, ...]`` points.
    y: ``[M, ...]`` centres, ``M >= 1``.
    chunk_size: centres per chunk.
    x_sq_norms: optional precomputed ``sq_norms(x)``.

  Returns:
    ``(dist [N] float32, index [N] int32)``; ties go to the lower centre index.
  """
  xn = sq_norms(x) if x_sq_norms is None else x_sq_norms
  m = num_points(y)
  chunk = min(chunk_size, m)
  y_pad, m = _pad_rows(y, chunk)
  num_chunks = num_points(y_pad) // chunk
  yn = sq_norms(y_pad)

  def chunk_rows(t, c):
    return jax.lax.dynamic_slice_in_dim(t, c * chunk, chunk, axis=0)

  def body(carry, c):
    best, arg = carry
    yc = jax.tree.map(lambda t: chunk_rows(t, c), y_pad)
    d = sq_dist(x, yc, xn, chunk_rows(yn, c))
    col = c * chunk + jnp.arange(chunk)
    d = jnp.where(col[None, :] < m, d, jnp.inf)
    j = jnp.argmin(d, axis=1)
    dj = jnp.take_along_axis(d, j[:, None], axis=1)[:, 0]
    better = dj < best
    return (jnp.where(better, dj, best), jnp.where(better, col[j], arg)), None

  n = xn.shape[0]
  init = (jnp.full((n,), jnp.inf, jnp.float32), jnp.zeros((n,), jnp.int32))
  (best, arg), _ = jax.lax.scan(body, init, jnp.arange(num_chunks))
  return best, arg.astype(jnp.int32)


def _row_block(x: Points, start: jax.Array, size: int) -> Points:
  return jax.tree.map(lambda t: jax.lax.dynamic_slice_in_dim(t, start, size, axis=0), x)


def min_sq_dist_masked(
  x: Points,
  y: Points,
  y_mask: jax.Array | None = None,
  *,
  chunk_size: int = 1024,
  row_chunk_size: int = 8192,
  x_sq_norms: jax.Array | None = None,
  y_sq_norms: jax.Array | None = None,
  ps: sharding.PoolSharding | None = None,
) -> tuple[jax.Array, jax.Array]:
  """For each row of ``x``, the nearest row of ``y`` among those where ``y_mask`` is True.

  Chunked over both sides, so memory stays ``O(row_chunk_size * chunk_size)``
  beyond the inputs and the ``[N]`` outputs, whatever ``N`` and ``M``: rows of
  ``x`` go in blocks of ``row_chunk_size`` (``jax.lax.fori_loop``; the last
  block is shifted back to stay in bounds, so there is no padded copy of
  ``x``), and the selected rows of ``y`` are gathered ``chunk_size`` at a time
  in a ``jax.lax.while_loop`` that stops after the last selected row. Work is
  therefore ``O(N * count * dim)`` with ``count`` the number of True entries
  of ``y_mask``, not ``O(N * M * dim)``: k-center greedy uses it for the
  distances to a labeled set that changes size every round, with one compile.

  Args:
    x: ``[N, ...]`` points.
    y: ``[M, ...]`` candidate centres (same kind as ``x``: dense or
      :class:`GradEmbedding`).
    y_mask: optional ``[M]`` bool, the centres to use; None uses every row.
    chunk_size: centres per chunk.
    row_chunk_size: rows of ``x`` per block.
    x_sq_norms: optional precomputed ``sq_norms(x)``.
    y_sq_norms: optional precomputed ``sq_norms(y)``.
    ps: the pool sharding of ``y`` (and ``x``), or None. Sharded, the rows of
      ``x`` are not blocked (each device holds its own rows already) and the
      selected rows of ``y`` are fetched without gathering ``y``.

  Returns:
    ``(dist [N] float32, index [N] int32)``: the squared distance to the
    nearest selected row of ``y`` and its index into ``y``; ties go to the
    lower index. Where no row is selected, ``dist`` is ``+inf`` and ``index``
    is 0.
  """
  n, m = num_points(x), num_points(y)
  xn = sq_norms(x) if x_sq_norms is None else x_sq_norms
  yn = sq_norms(y) if y_sq_norms is None else y_sq_norms
  if y_mask is None:
    order = jnp.arange(m, dtype=jnp.int32)
    count = jnp.asarray(m, jnp.int32)
  else:
    order = jnp.nonzero(y_mask, size=m, fill_value=0)[0].astype(jnp.int32)
    count = jnp.sum(y_mask, dtype=jnp.int32)
  chunk = max(1, min(chunk_size, m))
  rows = n if ps is not None else max(1, min(row_chunk_size, n))
  num_blocks = -(-n // rows)

  def block(b, carry):
    best_all, arg_all = carry
    start = jnp.minimum(b * rows, n - rows)
    xb = _row_block(x, start, rows)
    xbn = jax.lax.dynamic_slice_in_dim(xn, start, rows)

    def cond(s):
      return s[0] * chunk < count

    def body(s):
      c, best, arg = s
      pos = c * chunk + jnp.arange(chunk, dtype=jnp.int32)
      cols = order[jnp.minimum(pos, m - 1)]
      d = sq_dist(xb, take(y, cols, ps), xbn, take(yn, cols, ps)).astype(jnp.float32)
      d = jnp.where((pos < count)[None, :], d, jnp.inf)
      j = jnp.argmin(d, axis=1)
      dj = jnp.take_along_axis(d, j[:, None], axis=1)[:, 0]
      better = dj < best
      return c + 1, jnp.where(better, dj, best), jnp.where(better, cols[j], arg)

    init = (jnp.int32(0), jnp.full((rows,), jnp.inf, jnp.float32), jnp.zeros((rows,), jnp.int32))
    _, best, arg = jax.lax.while_loop(cond, body, init)
    return (
      jax.lax.dynamic_update_slice_in_dim(best_all, best, start, axis=0),
      jax.lax.dynamic_update_slice_in_dim(arg_all, arg, start, axis=0),
    )

  init = (jnp.full((n,), jnp.inf, jnp.float32), jnp.zeros((n,), jnp.int32))
  return jax.lax.fori_loop(0, num_blocks, block, init)
