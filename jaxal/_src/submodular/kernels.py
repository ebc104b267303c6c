r"""Similarity kernels over a ground set, dense or sparse, and how the set functions read them.

The kernel is a dense ``[N, N]`` array (:func:`similarity_kernel`, or your
own), or a :class:`SparseKernel` that keeps each row's ``num_neighbors`` largest
similarities (:func:`knn_kernel`): candidate ``j`` then covers only its nearest
neighbours, ``O(N * num_neighbors)`` memory for large ground sets. Both are
built in row chunks from features. A candidate's gain reads one row of the
kernel (contiguous: ``N`` floats dense, ``num_neighbors`` sparse), so lazy and
stochastic greedy touch only the rows they evaluate.

:func:`similarity_kernel` of features sharded along N over a 1-D device mesh
builds its rows where they live, passing the feature blocks around the
devices (a ring of ``collective_permute``), so the features are never
gathered: the result's rows are sharded the same way.
"""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
from jax.typing import ArrayLike

from jaxal._src import checks
from jaxal._src import distances
from jaxal._src import executables
from jaxal._src import neighbors
from jaxal._src import sharding

METRICS = ("cosine", "rbf")


class SparseKernel(NamedTuple):
  """A similarity kernel that keeps each row's largest entries; all others are 0.

  ``S[j, indices[j, l]] = values[j, l]``: row ``j`` lists the points most
  similar to ``j`` (itself included), the elements candidate ``j`` covers.
  Indices within a row are distinct. ``S`` is in general not symmetric.

  Attributes:
    values: ``[num_points, num_neighbors]`` float32, the kept similarities of each row.
    indices: ``[num_points, num_neighbors]`` int32, the column of each kept similarity.
  """

  values: jax.Array  # shape=[num_points, num_neighbors], float32
  indices: jax.Array  # shape=[num_points, num_neighbors], int32


Kernel = Any  # jax.Array [N, N] | SparseKernel


# ---------------------------------------------------------------------------
# Kernels.


def check_metric(metric: str, gamma: Any) -> float | None:
  """``metric`` one of :data:`METRICS`; ``gamma`` None or a number > 0, for ``"rbf"`` only.

  Args:
    metric: the similarity.
    gamma: the RBF bandwidth, or None.

  Returns:
    ``gamma`` as a Python float (None stays None).

  Raises:
    ValueError: an unknown metric, a ``gamma`` for cosine, or ``gamma <= 0``.
    TypeError: ``gamma`` is not a number.
  """
  checks.check_one_of(metric, METRICS, "metric")
  if gamma is None:
    return None
  if metric != "rbf":
    raise ValueError(f"gamma is only used by metric='rbf', got metric={metric!r}")
  return checks.check_float(gamma, "gamma", low=0.0, low_open=True)


def _similarity_prep(x, metric, gamma):
  # Divided by max |x| first (cosine and the default RBF bandwidth do not change),
  # so no finite input overflows a norm or a distance; a given gamma is taken
  # into the same units (and capped at the largest float, so 0 * gamma stays 0).
  x, scale = distances.rescale(x)
  if metric == "cosine":
    norms = jnp.sqrt(jnp.sum(x * x, axis=1, keepdims=True))
    return x / jnp.maximum(norms, 1e-12), jnp.float32(0.0)
  if gamma is None:
    # 1 / (mean squared distance between two points), in O(N * dim).
    mean_sq = 2.0 * (jnp.mean(jnp.sum(x * x, axis=1)) - jnp.sum(jnp.mean(x, axis=0) ** 2))
    g = jnp.where(mean_sq > 0, 1.0 / jnp.maximum(mean_sq, 1e-30), 1.0)
  else:
    g = jnp.minimum(jnp.float32(gamma) * scale * scale, jnp.finfo(jnp.float32).max)
  return x, g.astype(jnp.float32)


def _similarity_rows(xb, x, start, metric, g):
  """``[rows, N]`` similarities of the rows ``start + arange(rows)`` to every point."""
  rows = xb.shape[0]
  if metric == "cosine":
    s = (1.0 + jnp.clip(xb @ x.T, -1.0, 1.0)) * 0.5
  else:
    s = jnp.exp(-g * distances.sq_dist(xb, x))
  r = start + jnp.arange(rows)
  return jnp.where(r[:, None] == jnp.arange(x.shape[0])[None, :], 1.0, s)


@executables.jit(static_argnames=("metric", "chunk_size"))
def _similarity_kernel(x, metric, gamma, chunk_size):
  return _similarity_kernel_rows(x, metric, gamma, chunk_size), checks.all_finite(x)[0]


def _similarity_kernel_rows(x, metric, gamma, chunk_size):
  x, g = _similarity_prep(x, metric, gamma)
  n = x.shape[0]
  rows = min(chunk_size, n)

  def body(b, out):
    start = jnp.minimum(b * rows, n - rows)
    xb = jax.lax.dynamic_slice_in_dim(x, start, rows)
    return jax.lax.dynamic_update_slice_in_dim(
      out, _similarity_rows(xb, x, start, metric, g), start, axis=0
    )

  return jax.lax.fori_loop(0, -(-n // rows), body, jnp.zeros((n, n), jnp.float32))


@executables.jit(static_argnames=("metric", "chunk_size", "ps", "flagged"))
def similarity_kernel_sharded(
  x: jax.Array,
  metric: str,
  gamma: float | None,
  chunk_size: int,
  ps: sharding.PoolSharding,
  flagged: bool = False,
) -> Any:
  """The kernel of ``x`` sharded along N: rows sharded the same way, ``x`` never gathered.

  Each device fills its ``[N / devices, N]`` rows one column block at a time:
  it holds one device's feature block, computes that block of columns in row
  chunks, and passes the block on to its neighbour (``ppermute``), so after
  ``devices`` steps it has seen every block and ``O(N / devices * dim)``
  features moved per step. The jitted core of :func:`similarity_kernel` for
  sharded ``x`` (arguments already checked).

  Args:
    x: ``[num_points, dim]`` features, sharded along N as ``ps`` says.
    metric: ``"cosine"`` or ``"rbf"``.
    gamma: RBF bandwidth, or None for the default.
    chunk_size: rows computed at once.
    ps: the pool sharding of ``x``.
    flagged: also return the finiteness flag of ``x``, computed in the same call.

  Returns:
    ``[num_points, num_points]`` float32, rows sharded along N (and the flag, with
    ``flagged``).
  """
  ok = checks.all_finite(x)[0] if flagged else None
  x, g = _similarity_prep(x, metric, gamma)
  d = ps.num_shards
  n = x.shape[0]

  def local(xl, g):
    nl = xl.shape[0]
    me = jax.lax.axis_index(ps.axis)
    rows = min(chunk_size, nl)

    def step(s, carry):
      out, xb = carry  # xb: the feature block of device (me + s) % d
      src = (me + s) % d

      def body(b, out):
        start = jnp.minimum(b * rows, nl - rows)
        xr = jax.lax.dynamic_slice_in_dim(xl, start, rows)
        if metric == "cosine":
          blk = (1.0 + jnp.clip(xr @ xb.T, -1.0, 1.0)) * 0.5
        else:
          blk = jnp.exp(-g * distances.sq_dist(xr, xb))
        r = me * nl + start + jnp.arange(rows)
        c = src * nl + jnp.arange(nl)
        blk = jnp.where(r[:, None] == c[None, :], 1.0, blk)
        return jax.lax.dynamic_update_slice(out, blk, (start, src * nl))

      out = jax.lax.fori_loop(0, -(-nl // rows), body, out)
      xb = jax.lax.ppermute(xb, ps.axis, [(i, (i - 1) % d) for i in range(d)])
      return out, xb

    return jax.lax.fori_loop(0, d, step, (jnp.zeros((nl, n), jnp.float32), xl))[0]

  kernel = jax.shard_map(
    local,
    mesh=ps.mesh,
    in_specs=(P(ps.axis, None), P()),
    out_specs=P(ps.axis, None),
    check_vma=False,
  )(x, g)
  return (kernel, ok) if flagged else kernel


def similarity_kernel(
  x: ArrayLike,
  *,
  metric: str = "cosine",
  gamma: float | None = None,
  chunk_size: int = 1024,
  check_finite: bool = True,
) -> jax.Array:
  r"""Dense ``[N, N]`` similarity kernel of ``x``, computed in row chunks.

  * ``"cosine"``: :math:`S_{ij} = (1 + \cos(x_i, x_j)) / 2 \in [0, 1]` (shifted so
    that every function keeps its guarantees; facility location picks the
    same points as with the raw cosine whenever every row has a positive
    maximum).
  * ``"rbf"``: :math:`S_{ij} = \exp(-\gamma \|x_i - x_j\|^2)`, with ``gamma``
    by default ``1 / mean_{i,j} ‖x_i − x_j‖²``.

  The diagonal is exactly 1. Memory ``N²`` floats for the result plus
  ``O(chunk_size * N)`` while building it. For ``x`` sharded along N over a
  1-D mesh the result's rows are sharded the same way (``N² / devices``
  floats per device) and ``x`` is never gathered.

  Args:
    x: ``[num_points, dim]`` features.
    metric: ``"cosine"`` or ``"rbf"``.
    gamma: RBF bandwidth (``metric="rbf"`` only).
    chunk_size: rows computed at once.
    check_finite: NaN or inf in ``x`` is an error (flag fused into the compiled
      call, sharded or not); False for callers that checked already (the
      kernel is then unspecified for such rows).

  Every finite ``x`` gives a finite kernel in ``[0, 1]``: the features are
  divided by their largest magnitude before any norm or distance is formed.

  Returns:
    ``[num_points, num_points]`` float32, symmetric.

  Raises:
    ValueError: NaN or inf features (naming the first offending row), an
      unknown metric, a bad ``gamma``.
    TypeError: non-float features, a non-integer ``chunk_size``.
  """
  x = checks.check_float_array(x, "x", 2, "[num_points, dim]")
  gamma = check_metric(metric, gamma)
  chunk_size = checks.check_positive_int(chunk_size, "chunk_size")
  check_finite = checks.check_bool(check_finite, "check_finite")
  ps = sharding.pool_sharding(x, "x")
  if ps is not None:
    placed = sharding.place(x, ps)
    if not check_finite:
      return similarity_kernel_sharded(placed, metric, gamma, chunk_size, ps)
    kernel, ok = similarity_kernel_sharded(placed, metric, gamma, chunk_size, ps, flagged=True)
    checks.check_finite(x, "x", purpose="similarities need finite features", ok=ok)
    return kernel
  kernel, ok = _similarity_kernel(x, metric, gamma, chunk_size)
  if check_finite:
    checks.check_finite(x, "x", purpose="similarities need finite features", ok=ok)
  return kernel


@executables.jit(static_argnames=("num_neighbors", "metric", "chunk_size", "col_chunk_size"))
def _knn_kernel(x, num_neighbors, metric, gamma, chunk_size, col_chunk_size):
  """``(SparseKernel, ok)``: ``ok`` the finiteness flag of ``x``, from the same compiled call."""
  ok = checks.all_finite(x)[0]
  x, g = _similarity_prep(x, metric, gamma)
  feats = x if metric == "cosine" else (x, jnp.sum(x * x, axis=1))

  def score(xb, yb, r, c):
    # The tile [rows, cols] of the kernel of similarity_kernel, its diagonal exactly 1.
    if metric == "cosine":
      s = (1.0 + jnp.clip(xb @ yb.T, -1.0, 1.0)) * 0.5
    else:
      (a, an), (b, bn) = xb, yb
      s = jnp.exp(-g * jnp.maximum(an[:, None] + bn[None, :] - 2.0 * (a @ b.T), 0.0))
    return jnp.where(r[:, None] == c[None, :], 1.0, s)

  vals, idx = neighbors.blocked_top_k(
    score, feats, feats, num_neighbors, row_block=chunk_size, col_block=col_chunk_size
  )
  return SparseKernel(vals, idx), ok


def knn_kernel(
  x: ArrayLike,
  num_neighbors: int,
  *,
  metric: str = "cosine",
  gamma: float | None = None,
  chunk_size: int = 512,
  col_chunk_size: int = 4096,
  check_finite: bool = True,
) -> SparseKernel:
  """Sparsified kernel: each row keeps its ``num_neighbors`` largest similarities.

  Same similarities as :func:`similarity_kernel` (each row's own point, of
  similarity 1, comes first); built in ``[chunk_size, col_chunk_size]`` tiles
  merged into a running top-k per row (:mod:`jaxal.neighbors`), in ``O(N² dim)``
  time and ``O(N * num_neighbors + chunk_size * (col_chunk_size +
  num_neighbors))`` memory, never ``N²`` nor a whole ``[chunk_size, N]`` row block.

  Args:
    x: ``[num_points, dim]`` features.
    num_neighbors: entries kept per row, ``1 <= num_neighbors <= num_points``.
    metric, gamma: as in :func:`similarity_kernel`.
    chunk_size: rows computed at once.
    col_chunk_size: columns per tile.
    check_finite: NaN or inf in ``x`` is an error (flag fused into the compiled
      call); False for callers that checked already.

  Returns:
    :class:`SparseKernel` with ``[num_points, num_neighbors]`` values and indices.

  Raises:
    ValueError: NaN or inf features (naming the first offending row), an
      unknown metric, a bad ``gamma`` or ``num_neighbors``.
  """
  x = checks.check_float_array(x, "x", 2, "[num_points, dim]")
  gamma = check_metric(metric, gamma)
  num_neighbors = checks.check_positive_int(
    num_neighbors, "num_neighbors", high=x.shape[0], what=f"the points of x, shape {x.shape}"
  )
  chunk_size = checks.check_positive_int(chunk_size, "chunk_size")
  col_chunk_size = checks.check_positive_int(col_chunk_size, "col_chunk_size")
  check_finite = checks.check_bool(check_finite, "check_finite")
  kernel, ok = _knn_kernel(x, num_neighbors, metric, gamma, chunk_size, col_chunk_size)
  if check_finite:
    checks.check_finite(x, "x", purpose="similarities need finite features", ok=ok)
  return kernel


# ---------------------------------------------------------------------------
# Kernel access, dense or sparse. All return float32 [N] vectors. Row j of S is
# what candidate j covers, so a candidate's gain reads one contiguous row (a
# dense row of N, or a sparse row of num_neighbors entries): no column gathers
# or scatters in the maximisers' inner loops.


def is_sparse(kernel: Kernel) -> bool:
  """True for a :class:`SparseKernel`, False for a dense ``[N, N]`` array."""
  return isinstance(kernel, SparseKernel)


def row(kernel: Kernel, j: jax.Array, ps: sharding.PoolSharding | None = None) -> jax.Array:
  """``S[j, :]`` (replicated; for rows sharded along N, fetched by :func:`sharding.take`)."""
  if is_sparse(kernel):
    n = kernel.values.shape[0]
    if ps is not None:
      vals, ind = sharding.take(kernel.values, j, ps), sharding.take(kernel.indices, j, ps)
      return jnp.zeros((n,), jnp.float32).at[ind].add(vals)
    return jnp.zeros((n,), jnp.float32).at[kernel.indices[j]].add(kernel.values[j])
  if ps is not None:
    return sharding.take(kernel, j, ps)
  return jax.lax.dynamic_index_in_dim(kernel, j, axis=0, keepdims=False)


def col(kernel: Kernel, j: jax.Array) -> jax.Array:
  """``S[:, j]``."""
  if is_sparse(kernel):
    return jnp.sum(jnp.where(kernel.indices == j, kernel.values, 0.0), axis=1)
  return jax.lax.dynamic_index_in_dim(kernel, j, axis=1, keepdims=False)


def diag(kernel: Kernel) -> jax.Array:
  """``S[j, j]`` for every ``j``."""
  if is_sparse(kernel):
    n = kernel.values.shape[0]
    own = kernel.indices == jnp.arange(n, dtype=jnp.int32)[:, None]
    return jnp.sum(jnp.where(own, kernel.values, 0.0), axis=1)
  return jnp.diagonal(kernel)


def matvec(kernel: Kernel, v: jax.Array) -> jax.Array:
  """``S @ v`` (``Σ_i S_ji v_i`` for every row ``j``)."""
  if is_sparse(kernel):
    return jnp.sum(kernel.values * v[kernel.indices], axis=1)
  return kernel @ v


def vecmat(kernel: Kernel, v: jax.Array) -> jax.Array:
  """``v @ S`` (``Σ_j v_j S_ji`` for every column ``i``)."""
  if is_sparse(kernel):
    n = kernel.values.shape[0]
    return jax.ops.segment_sum(
      (kernel.values * v[:, None]).ravel(), kernel.indices.ravel(), num_segments=n
    )
  return v @ kernel


def row_reduce(kernel: Kernel, fn: Any, idx: jax.Array | None = None) -> jax.Array:
  """``Σ_i fn(S_ji, i)`` for every row ``j`` (or the rows ``idx``); needs ``fn(0, i) = 0``.

  Sparse rows sum over their stored entries only (the others are 0).
  """
  if is_sparse(kernel):
    vals, ind = kernel.values, kernel.indices
    if idx is not None:
      vals, ind = vals[idx], ind[idx]
    return jnp.sum(fn(vals, ind), axis=1)
  n = kernel.shape[0]
  rows = kernel if idx is None else kernel[idx]
  return jnp.sum(fn(rows, jnp.arange(n)[None, :]), axis=1)


FINITE_PURPOSE = "similarities must be real numbers"


def check_kernel(kernel: Any, name: str = "kernel") -> tuple[Kernel, int]:
  """A dense ``[N, N]`` float kernel or a :class:`SparseKernel`; as float32.

  Shapes, dtypes and sparse indices only: the similarities' finiteness is
  checked by the caller with flags from its own compiled pass over them
  (:func:`check_kernel_finite`), so the kernel is read once.

  Args:
    kernel: the kernel as the caller passed it.
    name: the argument's name, as messages show it.

  Returns:
    ``(kernel, N)``: the kernel in float32 (int32 indices), and its number of points.

  Raises:
    ValueError: a wrong shape, indices out of range or repeated within a row.
    TypeError: a non-float kernel or non-integer indices.
  """
  if isinstance(kernel, SparseKernel):
    v = checks.check_float_array(kernel.values, f"{name}.values", 2, "[num_points, num_neighbors]")
    i = jnp.asarray(kernel.indices)
    if i.shape != v.shape:
      raise ValueError(
        f"{name}.indices must have the shape of {name}.values {v.shape}, got {i.shape}"
      )
    if not jnp.issubdtype(i.dtype, jnp.integer):
      raise TypeError(f"{name}.indices must be integers, got dtype {i.dtype}")
    n = v.shape[0]
    if checks.is_concrete(i) and i.size:
      if int(jnp.min(i)) < 0 or int(jnp.max(i)) >= n:
        raise ValueError(
          f"{name}.indices must lie in [0, {n}), got values in "
          f"[{int(jnp.min(i))}, {int(jnp.max(i))}]"
        )
      srt = jnp.sort(i, axis=1)
      dup = jnp.any(srt[:, 1:] == srt[:, :-1], axis=1)
      if bool(jnp.any(dup)):
        r = int(jnp.argmax(dup))
        raise ValueError(
          f"{name}.indices must be distinct within each row, got row {r} of shape "
          f"{tuple(i.shape)}: {i[r].tolist()}"
        )
    return SparseKernel(v.astype(jnp.float32), i.astype(jnp.int32)), n
  s = checks.check_float_array(kernel, name, 2, "[num_points, num_points]")
  if s.shape[0] != s.shape[1]:
    raise ValueError(
      f"{name} must be a square [num_points, num_points] similarity matrix, got shape {s.shape}"
    )
  return s.astype(jnp.float32), s.shape[0]


def check_kernel_finite(kernel: Kernel, ok: Any, name: str = "kernel") -> None:
  """Raises for NaN or inf similarities, given the flag ``ok`` a compiled call computed.

  Args:
    kernel: the kernel :func:`check_kernel` returned.
    ok: True when every similarity is finite (:func:`jaxal._src.checks.all_finite`
      of the values, from the caller's own jitted pass over them).
    name: the argument's name, as messages show it.
  """
  if is_sparse(kernel):
    checks.check_finite(kernel.values, f"{name}.values", purpose=FINITE_PURPOSE, ok=ok)
  else:
    checks.check_finite(kernel, name, purpose=FINITE_PURPOSE, ok=ok)
