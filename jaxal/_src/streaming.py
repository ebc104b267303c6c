"""Pools larger than memory: scoring and selection streamed from disk in chunks.

The pool is a NumPy array or ``np.memmap`` ``[num_points, ...]`` that stays on
disk; only one fixed-size chunk is on the device at a time, so memory is
``O(chunk_size * dim + num_points)`` (the per-point running minimum distances
of the greedy selectors are the one ``[num_points]`` array kept whole). Every
chunk has the same padded shape, so each jitted step compiles once.

Results are the same as the in-memory functions' for the same key: the same
top-k (ties to the lower index), the same k-center order.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from collections.abc import Iterator
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxal._src import checks
from jaxal._src import distances


def check_pool(x: np.ndarray, name: str = "x", dtype=np.float32) -> np.ndarray:
  """A NumPy array or memmap ``[num_points, ...]`` of ``dtype``.

  Args:
    x: the pool, a NumPy array or ``np.memmap`` ``[num_points, ...]``.
    name: the argument's name in the error messages.
    dtype: the dtype ``x`` must have.

  Returns:
    ``x`` itself, ``[num_points, ...]`` of ``dtype``, once checked.

  Raises:
    TypeError: ``x`` is not a NumPy array, or has another dtype.
    ValueError: ``x`` has no points.
  """
  if not isinstance(x, np.ndarray):
    raise TypeError(
      f"{name} must be a NumPy array or np.memmap kept on disk, got {type(x).__name__}; "
      "for arrays already on the device use the in-memory functions"
    )
  if x.ndim < 1 or x.shape[0] == 0:
    raise ValueError(
      f"{name} must have shape [num_points, ...] with num_points >= 1, got {x.shape}"
    )
  if x.dtype != np.dtype(dtype):
    raise TypeError(
      f"{name} must have dtype {np.dtype(dtype).name}, got {x.dtype} (shape {x.shape}); open the "
      f"memmap with dtype=np.{np.dtype(dtype).name} or convert the file"
    )
  return x


def chunks(x: np.ndarray, chunk_size: int) -> Iterator[tuple[int, int, jax.Array]]:
  """``(start, valid, chunk)`` with ``chunk`` a ``[chunk_size, ...]`` device array.

  The last chunk is zero-padded; ``valid`` says how many rows are real. The
  next chunk is read from disk while the device works on the current one
  (JAX dispatch is asynchronous).

  Args:
    x: the pool, a NumPy array or ``np.memmap`` ``[num_points, ...]``.
    chunk_size: rows per chunk.

  Yields:
    ``(start, valid, chunk)``: the index of the chunk's first row, how many of its rows are
    real, and the ``[chunk_size, ...]`` device array (dtype of ``x``).
  """
  n = x.shape[0]
  for start in range(0, n, chunk_size):
    block = np.asarray(x[start : start + chunk_size])
    valid = block.shape[0]
    if valid < chunk_size:
      block = np.concatenate([block, np.zeros((chunk_size - valid, *x.shape[1:]), x.dtype)])
    yield start, valid, jax.device_put(block)


@functools.partial(jax.jit, static_argnames=("score_fn", "k"))
def _merge_step(score_fn, k, best_v, best_i, chunk, start, valid, labeled_chunk):
  s = score_fn(chunk).astype(jnp.float32)
  lowest = jnp.finfo(jnp.float32).min
  s = jnp.where(jnp.isnan(s) | jnp.isneginf(s), lowest, s)
  pos = jnp.arange(chunk.shape[0], dtype=jnp.int32)
  s = jnp.where((pos >= valid) | labeled_chunk, -jnp.inf, s)
  # Running candidates first: they hold lower indices, so ties keep them.
  v = jnp.concatenate([best_v, s])
  i = jnp.concatenate([best_i, start + pos])
  top_v, top_pos = jax.lax.top_k(v, k)
  return top_v, i[top_pos]


def top_k(
  score_fn: Callable[[jax.Array], jax.Array],
  x: np.ndarray,
  k: int,
  *,
  labeled_mask: np.ndarray | None = None,
  chunk_size: int = 65536,
) -> jax.Array:
  """The ``k`` highest-scoring unlabeled points of a pool on disk.

  Each chunk is scored and merged into a running top ``k``: memory is
  ``O(chunk_size * dim + k)``. Equal to ``selection.top_k(score_fn(x), k,
  labeled_mask=labeled_mask)`` (ties to the lower index).

  Args:
    score_fn: ``[chunk, ...] -> [chunk]`` scores, higher = pick first; a
      module-level function or other stable callable (it is a static jit
      argument), for example a closure over a model's parameters built once.
    x: ``[num_points, ...]`` float32 NumPy array or ``np.memmap``.
    k: how many to pick.
    labeled_mask: optional ``[num_points]`` bool NumPy array.
    chunk_size: rows per device chunk.

  Returns:
    ``[k]`` int32 indices, best first.
  """
  x = check_pool(x)
  n = x.shape[0]
  chunk_size = checks.check_positive_int(chunk_size, "chunk_size")
  mask = np.zeros(n, bool) if labeled_mask is None else np.asarray(labeled_mask)
  checks.check_labeled_mask(mask, n)
  k = checks.check_budget(k, n, mask)
  best_v = jnp.full((k,), -jnp.inf, jnp.float32)
  best_i = jnp.full((k,), n, jnp.int32)
  for start, valid, chunk in chunks(x, chunk_size):
    lab = np.ones(chunk_size, bool)
    lab[:valid] = mask[start : start + valid]
    best_v, best_i = _merge_step(
      score_fn, k, best_v, best_i, chunk, jnp.int32(start), jnp.int32(valid), jnp.asarray(lab)
    )
  return best_i


# ---------------------------------------------------------------------------
# Greedy selectors streamed chunk by chunk. The per-point running minimum
# distances live on the device as [num_chunks, chunk_size]; each pass streams
# the pool once, updates them, and carries the running best candidate (value,
# index and its row) across chunks, so the next centre is known on the device
# at the end of the pass: the host only reads chunks, it never waits on a pick.


class _Best(NamedTuple):
  value: jax.Array  # shape=(), float32
  index: jax.Array  # shape=(), int32
  row: jax.Array  # shape=[dim], float32


def _no_best(dim: int) -> _Best:
  return _Best(jnp.float32(-jnp.inf), jnp.int32(-1), jnp.zeros((dim,), jnp.float32))


def _merge_best(best: _Best, score: jax.Array, chunk: jax.Array, start: jax.Array) -> _Best:
  j = jnp.argmax(score)  # first maximum: ties to the lower index
  v = score[j]
  better = v > best.value  # strict: earlier chunks (lower indices) keep ties
  return _Best(
    jnp.where(better, v, best.value),
    jnp.where(better, start + j.astype(jnp.int32), best.index),
    jnp.where(better, chunk[j], best.row),
  )


@functools.partial(jax.jit, donate_argnums=(0,))
def _kc_init_chunk(min_d, taken, c, chunk, labeled_rows, labeled_valid, best):
  """First pass: distances to the nearest labeled point, and the first pick."""
  cn = jnp.sum(chunk * chunk, -1)
  d = distances.sq_dist(chunk, labeled_rows, cn)
  d = jnp.min(jnp.where(labeled_valid[None, :], d, jnp.inf), axis=1)
  min_d = min_d.at[c].set(d)
  score = jnp.where(taken[c], -jnp.inf, d)
  return min_d, _merge_best(best, score, chunk, c * chunk.shape[0])


@functools.partial(jax.jit, donate_argnums=(0,))
def _kc_chunk(min_d, taken, c, chunk, centre, best):
  """One chunk of a pass: fold in the newest centre, track the farthest point."""
  cn = jnp.sum(chunk * chunk, -1)
  d = distances.sq_dist(chunk, centre, cn, jnp.sum(centre * centre))
  m = jnp.minimum(min_d[c], d)
  min_d = min_d.at[c].set(m)
  score = jnp.where(taken[c], -jnp.inf, m)
  return min_d, _merge_best(best, score, chunk, c * chunk.shape[0])


@jax.jit
def _mark(taken, index):
  size = taken.shape[1]
  return taken.at[index // size, index % size].set(True)


def _taken_grid(mask: np.ndarray, num_chunks: int, chunk_size: int) -> jax.Array:
  grid = np.ones(num_chunks * chunk_size, bool)  # padding rows count as taken
  grid[: mask.shape[0]] = mask
  return jnp.asarray(grid.reshape(num_chunks, chunk_size))


@checks.spelled_as_key_or_none(
  "streaming.k_center_greedy(key, x, k, *, labeled_mask=None, chunk_size=65536)"
)
def k_center_greedy(
  key: jax.Array | None,
  x: np.ndarray,
  k: int,
  *,
  labeled_mask: np.ndarray | None = None,
  chunk_size: int = 65536,
) -> jax.Array:
  """Coreset's farthest-first traversal over a pool on disk, chunk by chunk.

  The same picks, in the same order, as :func:`jaxal.selection.k_center_greedy`
  on the whole array: each pick is one pass over the pool, and the running
  nearest-centre distances ``[num_points]`` are the only pool-sized state.

  Args:
    key: a ``jax.random.key``, or None when the labeled set is not empty (it
      only draws the first point when nothing is labeled).
    x: ``[num_points, dim]`` float32 NumPy array or ``np.memmap``.
    k: how many to pick.
    labeled_mask: optional ``[num_points]`` bool NumPy array. The labeled rows
      are read into memory once (``num_labeled * dim`` floats).
    chunk_size: rows per device chunk.

  Returns:
    ``[k]`` int32 indices in the order they were picked.
  """
  x = check_pool(x)
  if x.ndim != 2:
    raise ValueError(f"x must have shape [num_points, dim], got {x.shape}")
  n, dim = x.shape
  chunk_size = min(checks.check_positive_int(chunk_size, "chunk_size"), n)
  mask = np.zeros(n, bool) if labeled_mask is None else np.asarray(labeled_mask)
  checks.check_labeled_mask(mask, n)
  k = checks.check_budget(k, n, mask)
  labeled = np.flatnonzero(mask)
  if labeled.size == 0:
    if key is None:
      raise ValueError(
        "key is required when the labeled set is empty: pass jax.random.key(seed) first"
      )
    checks.check_key(key)
  num_chunks = -(-n // chunk_size)
  taken = _taken_grid(mask, num_chunks, chunk_size)
  min_d = jnp.full((num_chunks, chunk_size), jnp.inf, jnp.float32)
  if labeled.size:
    rows = np.asarray(x[labeled])
    pad = -labeled.size % 256  # a few shapes only, not one per labeled count
    labeled_rows = jnp.asarray(np.concatenate([rows, np.zeros((pad, dim), np.float32)]))
    labeled_valid = jnp.arange(labeled_rows.shape[0]) < labeled.size
    best = _no_best(dim)
    for start, _, chunk in chunks(x, chunk_size):
      min_d, best = _kc_init_chunk(
        min_d, taken, jnp.int32(start // chunk_size), chunk, labeled_rows, labeled_valid, best
      )
  else:
    # As the in-memory function: a uniformly random first point.
    first = int(jax.random.randint(key, (), 0, n, dtype=jnp.int32))
    best = _Best(jnp.float32(0), jnp.int32(first), jnp.asarray(np.asarray(x[first], np.float32)))
  picks = []
  for t in range(k):
    picks.append(best.index)
    taken = _mark(taken, best.index)
    if t == k - 1:
      break
    centre, best = best.row, _no_best(dim)
    for start, _, chunk in chunks(x, chunk_size):
      min_d, best = _kc_chunk(min_d, taken, jnp.int32(start // chunk_size), chunk, centre, best)
  return jnp.stack(picks).astype(jnp.int32)


@functools.partial(jax.jit, donate_argnums=(0,), static_argnames=("first_pass",))
def _pp_chunk(min_d, taken, c, chunk, centre, key_t, best, uniform_best, first_pass):
  """One chunk of a k-means++ pass: fold in the newest centre, then Gumbel-max
  sampling of the next one ∝ D² (and, as a fallback, uniformly), with noise
  keyed by (pass, global index) so the draw does not depend on the chunking."""
  size = chunk.shape[0]
  cn = jnp.sum(chunk * chunk, -1)
  if first_pass:
    m = min_d[c]
  else:
    m = jnp.minimum(min_d[c], distances.sq_dist(chunk, centre, cn, jnp.sum(centre * centre)))
  min_d = min_d.at[c].set(m)
  idx = c * size + jnp.arange(size, dtype=jnp.int32)
  g = jax.vmap(lambda i: jax.random.gumbel(jax.random.fold_in(key_t, i)))(idx)
  free = ~taken[c]
  with_mass = free & (m > 0) & jnp.isfinite(m)
  score = jnp.where(with_mass, jnp.log(jnp.where(with_mass, m, 1.0)) + g, -jnp.inf)
  uniform = jnp.where(free, g, -jnp.inf)
  return (
    min_d,
    _merge_best(best, score, chunk, c * size),
    _merge_best(uniform_best, uniform, chunk, c * size),
  )


def kmeans_pp(
  key: jax.Array,
  x: np.ndarray,
  k: int,
  *,
  labeled_mask: np.ndarray | None = None,
  first: str = "max_norm",
  chunk_size: int = 65536,
) -> jax.Array:
  """k-means++ (exact D² law) over a pool on disk, one pass per centre.

  Each pass folds the newest centre into the running ``[num_points]`` D² and
  draws the next centre by Gumbel-max over ``log D² + g`` (uniform over the
  remaining points when every D² is 0), the noise keyed by pass and global
  index: the same key gives the same centres for every ``chunk_size``. The
  law is the one of :func:`jaxal.selection.kmeans_pp` (which draws by a
  different, rejection-based route, so the two do not give the same indices).
  Labeled points are never centres and do not count as centres.

  Args:
    key: a ``jax.random.key``.
    x: ``[num_points, dim]`` float32 NumPy array or ``np.memmap``.
    k: how many centres.
    labeled_mask: optional ``[num_points]`` bool NumPy array.
    first: ``"max_norm"`` (the unlabeled point of largest norm) or ``"random"``.
    chunk_size: rows per device chunk.

  Returns:
    ``[k]`` int32 indices in the order they were chosen.
  """
  checks.check_key(key)
  x = check_pool(x)
  if x.ndim != 2:
    raise ValueError(f"x must have shape [num_points, dim], got {x.shape}")
  checks.check_one_of(first, ("max_norm", "random"), "first")
  n, dim = x.shape
  chunk_size = min(checks.check_positive_int(chunk_size, "chunk_size"), n)
  mask = np.zeros(n, bool) if labeled_mask is None else np.asarray(labeled_mask)
  checks.check_labeled_mask(mask, n)
  k = checks.check_budget(k, n, mask)
  num_chunks = -(-n // chunk_size)
  taken = _taken_grid(mask, num_chunks, chunk_size)
  # First pass: D² = squared norm makes "max_norm" the argmax of the D² score
  # without noise; "random" takes the uniform fallback.
  min_d = jnp.full((num_chunks, chunk_size), jnp.inf, jnp.float32)
  picks = []
  centre = jnp.zeros((dim,), jnp.float32)
  for t in range(k):
    key_t = jax.random.fold_in(key, t)
    best, uniform_best = _no_best(dim), _no_best(dim)
    if t == 0 and first == "max_norm":
      for start, _, chunk in chunks(x, chunk_size):
        c = start // chunk_size
        score = _norm_score(taken, jnp.int32(c), chunk)
        best = _merge_best_jit(best, score, chunk, jnp.int32(start))
      pick = best
    else:
      for start, _, chunk in chunks(x, chunk_size):
        min_d, best, uniform_best = _pp_chunk(
          min_d,
          taken,
          jnp.int32(start // chunk_size),
          chunk,
          centre,
          key_t,
          best,
          uniform_best,
          first_pass=(t == 0),
        )
      pick = jax.tree.map(lambda a, b: jnp.where(best.index >= 0, a, b), best, uniform_best)
    picks.append(pick.index)
    taken = _mark(taken, pick.index)
    centre = pick.row
  return jnp.stack(picks).astype(jnp.int32)


@jax.jit
def _norm_score(taken, c, chunk):
  return jnp.where(taken[c], -jnp.inf, jnp.sum(chunk * chunk, -1))


_merge_best_jit = jax.jit(_merge_best)
