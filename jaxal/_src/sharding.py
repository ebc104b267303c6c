"""Pools sharded along N: the two operations GSPMD would otherwise gather.

jaxal runs on JAX's own SPMD machinery. Elementwise work, matrix-vector
products and ``argmax``/``min`` reductions over a pool sharded along its first
axis partition by themselves under ``jax.jit`` (GSPMD gathers at most one
partial result per device). Two operations do not: ``jax.lax.top_k`` over the
sharded axis all-gathers its input, and fetching one row by a traced index
(``x[i]``) all-gathers the whole pool. This module gives both a
``jax.shard_map`` form that moves only ``O(k * devices)`` values, and a plain
form for unsharded pools; callers pass the :class:`PoolSharding` (a static,
hashable value, or None) that :func:`pool_sharding` reads off their input.
"""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import AxisType
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P


class PoolSharding(NamedTuple):
  """A pool sharded along axis 0 over mesh axis ``axis`` of ``mesh``."""

  mesh: Mesh
  axis: str

  @property
  def num_shards(self) -> int:
    return self.mesh.shape[self.axis]


def pool_sharding(x: Any, name: str = "x", pool_axis: int = 0) -> PoolSharding | None:
  """The pool sharding of ``x``, or None when it lives whole on each device.

  ``pool_axis`` is the axis of every array of ``x`` that runs over the pool
  (1 for MC log-probabilities ``[num_samples, num_points, num_classes]``).

  Raises:
    ValueError: when ``x`` is sharded along another axis than ``pool_axis``,
      over several mesh axes at once, or when the mesh size does not divide
      the pool axis.
  """
  leaves = [leaf for leaf in jax.tree.leaves(x) if hasattr(leaf, "shape")]
  found: PoolSharding | None = None
  for leaf in leaves:
    sharding = getattr(leaf, "sharding", None)
    if not isinstance(sharding, NamedSharding) or sharding.mesh.size == 1:
      continue
    spec = tuple(sharding.spec) + (None,) * (leaf.ndim - len(sharding.spec))
    sharded_dims = [d for d, s in enumerate(spec) if s is not None]
    if not sharded_dims:
      continue
    if sharded_dims != [pool_axis]:
      where = "its first axis" if pool_axis == 0 else f"axis {pool_axis}"
      raise ValueError(
        f"{name} must be sharded along {where} (the pool axis) only, got shape "
        f"{leaf.shape} with PartitionSpec {sharding.spec}"
      )
    axis = spec[pool_axis]
    if isinstance(axis, tuple):
      if len(axis) != 1:
        raise ValueError(
          f"{name} must be sharded over one mesh axis (a 1-D device mesh), got PartitionSpec "
          f"{sharding.spec}"
        )
      axis = axis[0]
    # Selection runs under GSPMD: an Explicit-typed mesh becomes the same
    # devices with Auto axes (see `place`).
    mesh = sharding.mesh
    if any(t != AxisType.Auto for t in mesh.axis_types):
      mesh = Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * len(mesh.axis_names))
    ps = PoolSharding(mesh, axis)
    if leaf.shape[pool_axis] % ps.num_shards:
      raise ValueError(
        f"{name} has {leaf.shape[pool_axis]} points, which the {ps.num_shards} devices of mesh axis "
        f"{axis!r} do not divide; pad the pool to a multiple of {ps.num_shards} (mask the "
        "padding as labeled)"
      )
    if found is not None and found != ps:
      raise ValueError(f"the arrays of {name} are sharded over different meshes or axes")
    found = ps
  return found


def single_device(x: Any) -> Any:
  """``x`` with each leaf laid out over a one-device mesh moved to that device, unsharded.

  ``jax.make_mesh`` on a one-device machine gives a mesh of size 1; an array placed on it with
  a ``NamedSharding`` keeps the mesh axis in its type under explicit sharding, and operations
  over the pool axis (``cumsum``, ``nonzero``) then refuse it. :func:`pool_sharding` treats such
  an array as unsharded; this gives it the plain layout to match (free: it stays on its device).
  Call it on concrete arrays, outside ``jit``.
  """

  def move(leaf: Any) -> Any:
    s = getattr(leaf, "sharding", None)
    if isinstance(leaf, jax.Array) and isinstance(s, NamedSharding) and s.mesh.size == 1:
      return jax.device_put(leaf, jax.sharding.SingleDeviceSharding(s.mesh.devices.flat[0]))
    return leaf

  return jax.tree.map(move, x)


def take(x: jax.Array, i: jax.Array, ps: PoolSharding | None) -> jax.Array:
  """Rows ``i`` (a traced index or ``[m]`` indices) of ``x [N, ...]`` without gathering ``x``.

  Sharded, each device contributes the rows it holds and a ``psum`` adds
  them up: ``O(m * row)`` values move, never the pool.
  """
  if ps is None:
    return x[i]

  def local(xl, i):
    n_local = xl.shape[0]
    offset = jax.lax.axis_index(ps.axis).astype(i.dtype) * n_local
    j = i - offset
    inside = (j >= 0) & (j < n_local)
    rows = xl[jnp.clip(j, 0, n_local - 1)]
    inside = inside.reshape(inside.shape + (1,) * (rows.ndim - inside.ndim))
    return jax.lax.psum(jnp.where(inside, rows, jnp.zeros_like(rows)), ps.axis)

  spec = P(ps.axis, *([None] * (x.ndim - 1)))
  i = jnp.asarray(i)
  return jax.shard_map(local, mesh=ps.mesh, in_specs=(spec, P()), out_specs=P())(x, i)


def take_along(x: jax.Array, i: jax.Array, ps: PoolSharding | None, *, axis: int) -> jax.Array:
  """``jnp.take(x, i, axis)`` for a traced scalar ``i``, ``x`` sharded along ``axis``.

  As :func:`take` for a pool axis other than 0 (for example the points of
  ``[num_samples, num_points, num_classes]`` log-probabilities): each device
  contributes the slice it holds, a ``psum`` adds them up, and only the
  slice's values move.
  """
  if ps is None:
    return jnp.take(x, i, axis=axis)

  def local(xl, i):
    n_local = xl.shape[axis]
    offset = jax.lax.axis_index(ps.axis).astype(i.dtype) * n_local
    j = i - offset
    inside = (j >= 0) & (j < n_local)
    vals = jax.lax.dynamic_index_in_dim(xl, jnp.clip(j, 0, n_local - 1), axis, keepdims=False)
    return jax.lax.psum(jnp.where(inside, vals, jnp.zeros_like(vals)), ps.axis)

  spec = P(*([None] * axis), ps.axis, *([None] * (x.ndim - axis - 1)))
  i = jnp.asarray(i)
  if i.ndim:
    raise ValueError(f"take_along fetches one index, got indices of shape {i.shape}")
  return jax.shard_map(local, mesh=ps.mesh, in_specs=(spec, P()), out_specs=P())(x, i)


def take_range(x: jax.Array, start: jax.Array, size: int, ps: PoolSharding | None) -> jax.Array:
  """``x[start:start + size]`` of a 1-D pool-sharded ``x`` (a traced ``start``),
  zeros past the end, moving ``size`` values instead of the whole array.

  Unsharded it is ``jax.lax.dynamic_slice_in_dim``: the caller keeps the range
  in bounds (padding ``x`` once, not per call).
  """
  if ps is None:
    return jax.lax.dynamic_slice_in_dim(x, start, size)

  def local(xl, start):
    n_local = xl.shape[0]
    offset = jax.lax.axis_index(ps.axis).astype(start.dtype) * n_local
    j = start - offset + jnp.arange(size, dtype=start.dtype)
    inside = (j >= 0) & (j < n_local)
    vals = xl[jnp.clip(j, 0, n_local - 1)]
    return jax.lax.psum(jnp.where(inside, vals, jnp.zeros_like(vals)), ps.axis)

  return jax.shard_map(local, mesh=ps.mesh, in_specs=(P(ps.axis), P()), out_specs=P())(
    x, jnp.asarray(start)
  )


def top_k(values: jax.Array, k: int, ps: PoolSharding | None) -> tuple[jax.Array, jax.Array]:
  """``jax.lax.top_k`` over a 1-D pool-sharded ``values``: ``(values [k], indices [k])``.

  Ties go to the lower index, exactly as ``jax.lax.top_k`` on the whole array:
  each shard keeps its own top ``min(k, n_local)`` (lower local index first),
  the candidates are gathered in shard order, and a final ``top_k`` over them
  keeps the first of equal values.
  """
  if ps is None:
    vals, idx = jax.lax.top_k(values, k)
    return vals, idx.astype(jnp.int32)

  def local(vl):
    n_local = vl.shape[0]
    kl = min(k, n_local)
    v, j = jax.lax.top_k(vl, kl)
    j = j.astype(jnp.int32) + jax.lax.axis_index(ps.axis).astype(jnp.int32) * n_local
    v = jax.lax.all_gather(v, ps.axis, tiled=True)
    j = jax.lax.all_gather(j, ps.axis, tiled=True)
    best, pos = jax.lax.top_k(v, k)
    return best, j[pos]

  return jax.shard_map(
    local, mesh=ps.mesh, in_specs=P(ps.axis), out_specs=(P(), P()), check_vma=False
  )(values)


def replicate(x: jax.Array, ps: PoolSharding | None) -> jax.Array:
  """``x`` (small per-point metadata such as a mask) copied whole to every device.

  Called outside ``jit``, on arrays of a few bytes per point: the pool itself
  stays sharded.
  """
  if ps is None:
    return x
  return jax.device_put(x, NamedSharding(ps.mesh, P()))


def place(x: Any, ps: PoolSharding | None, pool_axis: int = 0) -> Any:
  """Every array of ``x`` sharded along ``pool_axis`` over ``ps`` (Auto mesh axes).

  Arrays on a mesh with Explicit axes are re-typed onto the same devices with
  the same layout, so the jitted selection cores run under GSPMD whatever
  mesh the caller built.
  """
  if ps is None:
    return x

  def put(t):
    spec = P(*([None] * pool_axis), ps.axis, *([None] * (t.ndim - pool_axis - 1)))
    return jax.device_put(t, NamedSharding(ps.mesh, spec))

  return jax.tree.map(put, x)
