r"""Exact k nearest neighbours by blocked matmul and a running top-k, in bounded memory.

The squared distances :math:`\|a\|^2 - 2 a \cdot b + \|b\|^2` are computed one
``[row_block, col_block]`` tile at a time; each tile is merged into the rows'
running top-k (``jax.lax.top_k`` over the ``k`` kept so far and the tile's
columns). Memory is ``O(N * k + row_block * (col_block + k))`` beyond the
points: never an ``N x M`` matrix. Both loops are ``jax.lax.fori_loop``, so a
shape compiles once. Points are divided by the largest norm before the
products (and the squared distances multiplied back), so magnitudes near the
float32 range do not overflow.

:func:`blocked_top_k` is the generic core (any tile score to maximise); the
k-nearest-neighbour kernel of :mod:`jaxal.submodular` and the low-budget
strategies build on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxal._src import checks
from jaxal._src import executables

GROUP_RULES = ("same", "different")


class Neighbors(NamedTuple):
  """The k nearest neighbours of each query point, nearest first.

  A query with fewer than ``k`` admissible points (groups, self-exclusion)
  has its missing entries at distance ``inf`` with index ``-1``, at the end.

  Attributes:
    sq_distances: ``[num_queries, k]`` float32 squared Euclidean distances, ascending.
    indices: ``[num_queries, k]`` int32 indices into the points searched (ties: lower index first).
  """

  sq_distances: jax.Array  # shape=[num_queries, k], float32
  indices: jax.Array  # shape=[num_queries, k], int32


def blocked_top_k(
  score_fn: Callable[..., jax.Array],
  xs: Any,
  ys: Any,
  k: int,
  *,
  row_block: int,
  col_block: int,
  exclude_self: bool = False,
  x_groups: jax.Array | None = None,
  y_groups: jax.Array | None = None,
  group_rule: str = "same",
) -> tuple[jax.Array, jax.Array]:
  """The ``k`` largest ``score_fn`` entries of each row, computed in tiles (traceable).

  ``score_fn(xb, yb, rows, cols)`` gets row blocks of the pytrees ``xs``
  (leading axis ``N``) and ``ys`` (leading axis ``M``) and the global row and
  column ids, and returns the ``[rows, cols]`` scores. Excluded pairs
  (``exclude_self``: column ``i`` of row ``i``; groups: pairs that break
  ``group_rule``) score ``-inf`` and come back with index ``-1``. Ties go to
  the lower column index, as one ``top_k`` over a whole row would.

  Args:
    score_fn: the tile score, higher first.
    xs: pytree of ``[N, ...]`` arrays, the queries.
    ys: pytree of ``[M, ...]`` arrays, the points searched.
    k: entries kept per row, ``k <= M``.
    row_block: rows per tile.
    col_block: columns per tile.
    exclude_self: drop column ``i`` from row ``i``.
    x_groups: ``[N]`` int group ids of the rows, or None.
    y_groups: ``[M]`` int group ids of the columns (with ``x_groups``).
    group_rule: ``"same"`` keeps pairs of equal groups, ``"different"`` of different ones.

  Returns:
    ``(values [N, k], indices [N, k] int32)``, values descending.
  """
  n = jax.tree.leaves(xs)[0].shape[0]
  m = jax.tree.leaves(ys)[0].shape[0]
  rows = min(row_block, n)
  cols = min(col_block, m)
  neg = jnp.float32(-jnp.inf)

  def slice_rows(tree, start, size):
    return jax.tree.map(lambda t: jax.lax.dynamic_slice_in_dim(t, start, size), tree)

  def row_body(b, out):
    vals, idx = out
    start = jnp.minimum(b * rows, n - rows)
    xb = slice_rows(xs, start, rows)
    r = start + jnp.arange(rows, dtype=jnp.int32)
    xg = None if x_groups is None else jax.lax.dynamic_slice_in_dim(x_groups, start, rows)

    def col_body(c, run):
      rv, ri = run
      cstart = jnp.minimum(c * cols, m - cols)
      yb = slice_rows(ys, cstart, cols)
      cid = cstart + jnp.arange(cols, dtype=jnp.int32)
      s = score_fn(xb, yb, r, cid).astype(jnp.float32)
      # The last tile is shifted back to stay in range: its columns seen before are dropped.
      bad = jnp.broadcast_to((cid < c * cols)[None, :], s.shape)
      if exclude_self:
        bad = bad | (r[:, None] == cid[None, :])
      if x_groups is not None:
        yg = jax.lax.dynamic_slice_in_dim(y_groups, cstart, cols)
        same = xg[:, None] == yg[None, :]
        bad = bad | (~same if group_rule == "same" else same)
      s = jnp.where(bad, neg, s)
      # The kept entries first: they hold the lower column ids, so ties keep them, and their
      # high values make top_k's heap settle at once. A position past them is a column of
      # this tile, read off arithmetically (no [rows, k + cols] index array is written).
      nv, pos = jax.lax.top_k(jnp.concatenate([rv, s], axis=1), k)
      kept = jnp.take_along_axis(ri, jnp.minimum(pos, k - 1), axis=1)
      return nv, jnp.where(pos < k, kept, cstart + (pos - k).astype(jnp.int32))

    init = (jnp.full((rows, k), neg), jnp.full((rows, k), -1, jnp.int32))
    rv, ri = jax.lax.fori_loop(0, -(-m // cols), col_body, init)
    ri = jnp.where(rv == neg, -1, ri)
    return (
      jax.lax.dynamic_update_slice_in_dim(vals, rv, start, axis=0),
      jax.lax.dynamic_update_slice_in_dim(idx, ri, start, axis=0),
    )

  init = (jnp.full((n, k), neg), jnp.full((n, k), -1, jnp.int32))
  return jax.lax.fori_loop(0, -(-n // rows), row_body, init)


def pow2_at_least(v: jax.Array) -> jax.Array:
  """The smallest power of two ``>= v`` for ``v > 0``, else 1 (dividing by it is exact)."""
  return jnp.where(v > 0, jnp.exp2(jnp.ceil(jnp.log2(jnp.where(v > 0, v, 1.0)))), 1.0)


def scaled_points(x: jax.Array, y: jax.Array) -> tuple[Any, Any, jax.Array]:
  """``((x / s, ‖x / s‖²), (y / s, ‖y / s‖²), s)``, ``s`` a power of two at least the largest norm.

  A power of two keeps the division exact; dividing by the largest entry first
  keeps the norms themselves from overflowing.
  """
  x = x.astype(jnp.float32)
  y = y.astype(jnp.float32)
  big = pow2_at_least(
    jnp.maximum(jnp.max(jnp.abs(x), initial=0.0), jnp.max(jnp.abs(y), initial=0.0))
  )
  x, y = x / big, y / big
  s = pow2_at_least(
    jnp.sqrt(jnp.maximum(jnp.max(jnp.sum(x * x, axis=1)), jnp.max(jnp.sum(y * y, axis=1))))
  )
  x, y = x / s, y / s
  return (x, jnp.sum(x * x, axis=1)), (y, jnp.sum(y * y, axis=1)), big * s


def neg_sq_dist(xb: Any, yb: Any, rows: jax.Array, cols: jax.Array) -> jax.Array:
  """``-‖a − b‖²`` of a tile of :func:`scaled_points` (a :func:`blocked_top_k` score)."""
  (a, an), (b, bn) = xb, yb
  return -jnp.maximum(an[:, None] + bn[None, :] - 2.0 * (a @ b.T), 0.0)


def pos_sq_dist(xb: Any, yb: Any, rows: jax.Array, cols: jax.Array) -> jax.Array:
  """``+‖a − b‖²`` of a tile (the farthest points first)."""
  return -neg_sq_dist(xb, yb, rows, cols)


@executables.jit(
  static_argnames=("k", "exclude_self", "row_block", "col_block", "group_rule", "flagged")
)
def knn_core(
  x,
  y,
  k,
  x_groups,
  y_groups,
  *,
  exclude_self,
  row_block,
  col_block,
  group_rule="same",
  flagged=False,
):
  """:func:`knn` on validated arrays (``y`` given; groups both None or both given).

  ``flagged``: return ``(neighbours, [ok_x, ok_y])``, the finiteness flags of ``x`` and ``y``
  (:func:`jaxal._src.checks.all_finite`) computed in the same compiled call, for the caller
  to raise on (non-finite points give unspecified neighbours; the loops are bounded).
  """
  ok = checks.all_finite((x, y)) if flagged else None
  xs, ys, s = scaled_points(x, y)
  v, i = blocked_top_k(
    neg_sq_dist,
    xs,
    ys,
    k,
    row_block=row_block,
    col_block=col_block,
    exclude_self=exclude_self,
    x_groups=x_groups,
    y_groups=y_groups,
    group_rule=group_rule,
  )
  d = jnp.where(i < 0, jnp.inf, (-v * s) * s)  # v * s first: no overflow of s²
  return (Neighbors(d, i), ok) if flagged else Neighbors(d, i)


def check_groups(groups: Any, n: int, name: str) -> jax.Array:
  """``groups`` as a ``[n]`` int32 array."""
  g = jnp.asarray(groups)
  if g.shape != (n,):
    raise ValueError(f"{name} must have shape ({n},), got {g.shape}")
  if not jnp.issubdtype(g.dtype, jnp.integer):
    raise TypeError(f"{name} must be integers, got dtype {g.dtype}")
  return g.astype(jnp.int32)


def knn(
  x: ArrayLike,
  k: int,
  *,
  y: ArrayLike | None = None,
  exclude_self: bool = False,
  x_groups: ArrayLike | None = None,
  y_groups: ArrayLike | None = None,
  row_block: int = 1024,
  col_block: int = 4096,
  check_finite: bool = True,
) -> Neighbors:
  r"""Exact ``k`` nearest neighbours (squared Euclidean) of every row of ``x`` among ``y``.

  Tiles of :math:`\|a\|^2 - 2 a \cdot b + \|b\|^2` (one matmul each) are
  merged into a running top-k per row, so memory is
  ``O(N * k + row_block * (col_block + k))`` beyond the points, never
  ``N x M``: ``N = 10^6`` with ``k = 64`` keeps 512 MB of results. Both loops
  are ``jax.lax`` loops (one compile per shape). The points are scaled by
  their largest norm before the products, so large magnitudes do not
  overflow float32.

  Args:
    x: ``[num_queries, dim]`` query points.
    k: neighbours per query, ``1 <= k <= num_points`` (``num_points - 1`` with ``exclude_self``).
    y: ``[num_points, dim]`` points searched; default ``x`` itself.
    exclude_self: never return index ``i`` for query ``i`` (a point is not its own neighbour).
    x_groups: ``[num_queries]`` int group ids: only points of the query's group
      (``y_groups``) count as neighbours; queries with fewer than ``k`` get
      ``inf`` / ``-1`` at the end.
    y_groups: ``[num_points]`` int group ids; default ``x_groups`` when ``y`` is None.
    row_block: queries per tile (memory only).
    col_block: points per tile (memory only).
    check_finite: NaN or inf in ``x`` or ``y`` is an error (flags fused into the
      compiled call); False for callers that checked already (non-finite points
      then give unspecified neighbours).

  Returns:
    :class:`Neighbors` with ``sq_distances [num_queries, k]`` ascending and
    ``indices [num_queries, k]`` int32.

  Raises:
    ValueError: shapes that do not match, ``k`` out of range, non-finite points.
    TypeError: non-float points or non-integer groups.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxal import neighbors
    >>> x = jnp.array([[0.0], [1.0], [3.0], [7.0]])
    >>> nb = neighbors.knn(x, 2, exclude_self=True)
    >>> nb.indices.tolist()
    [[1, 2], [0, 2], [1, 0], [2, 1]]
    >>> nb.sq_distances[0].tolist()
    [1.0, 9.0]
  """
  x = checks.check_float_array(x, "x", 2, "[num_queries, dim]")
  if y is None:
    y_arr = x
  else:
    y_arr = checks.check_float_array(y, "y", 2, "[num_points, dim]")
    if y_arr.shape[1] != x.shape[1]:
      raise ValueError(
        f"x and y must have the same dim, got x of shape {x.shape} and y of shape {y_arr.shape}"
      )
  exclude_self = checks.check_bool(exclude_self, "exclude_self")
  m = y_arr.shape[0]
  if exclude_self and y is not None and y_arr.shape[0] != x.shape[0]:
    raise ValueError(
      "exclude_self needs one point per query (y of the shape of x), got x of shape "
      f"{x.shape} and y of shape {y_arr.shape}"
    )
  high = m - 1 if exclude_self else m
  k = checks.check_positive_int(
    k,
    "k",
    high=high,
    what=f"the points searched, shape {y_arr.shape}"
    + (", less the query itself" if exclude_self else ""),
  )
  if (x_groups is None) != (y_groups is None) and y is not None:
    raise ValueError("x_groups and y_groups must be given together when y is given")
  xg = yg = None
  if x_groups is not None:
    xg = check_groups(x_groups, x.shape[0], "x_groups")
    yg = xg if y_groups is None else check_groups(y_groups, m, "y_groups")
  elif y_groups is not None:
    raise ValueError("y_groups needs x_groups")
  row_block = checks.check_positive_int(row_block, "row_block")
  col_block = checks.check_positive_int(col_block, "col_block")
  opts = dict(exclude_self=exclude_self, row_block=row_block, col_block=col_block)
  if not checks.check_bool(check_finite, "check_finite"):
    return knn_core(x, y_arr, k, xg, yg, **opts)
  # The finiteness flags come from the same compiled call: no separate pass over the points.
  nb, (ok_x, ok_y) = knn_core(x, y_arr, k, xg, yg, **opts, flagged=True)
  purpose = "nearest neighbours need finite points"
  checks.check_finite(x, "x", purpose=purpose, ok=ok_x)
  if y is not None:
    checks.check_finite(y_arr, "y", purpose=purpose, ok=ok_y)
  return nb
