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
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from jaxal._src import checks


def check_pool(x: np.ndarray, name: str = "x", dtype=np.float32) -> np.ndarray:
  """A NumPy array or memmap ``[num_points, ...]`` of ``dtype``."""
  if not isinstance(x, np.ndarray):
    raise TypeError(
        f"{name} must be a NumPy array or np.memmap kept on disk, got {type(x).__name__}; "
        "for arrays already on the device use the in-memory functions"
    )
  if x.ndim < 1 or x.shape[0] == 0:
    raise ValueError(f"{name} must have shape [num_points, ...] with num_points >= 1, got {x.shape}")
  if x.dtype != np.dtype(dtype):
    raise TypeError(
        f"{name} must have dtype {np.dtype(dtype).name}, got {x.dtype} (shape {x.shape}); open the "
        f"memmap with dtype=np.{np.dtype(dtype).name} or convert the file"
    )
  return x


def _check_chunk_size(chunk_size: int) -> int:
  if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
    raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
  return chunk_size


def chunks(x: np.ndarray, chunk_size: int) -> Iterator[tuple[int, int, jax.Array]]:
  """``(start, valid, chunk)`` with ``chunk`` a ``[chunk_size, ...]`` device array.

  The last chunk is zero-padded; ``valid`` says how many rows are real. The
  next chunk is read from disk while the device works on the current one
  (JAX dispatch is asynchronous).
  """
  n = x.shape[0]
  for start in range(0, n, chunk_size):
    block = np.asarray(x[start:start + chunk_size])
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


def top_k(score_fn: Callable[[jax.Array], jax.Array], x: np.ndarray, k: int, *,
          labeled_mask: np.ndarray | None = None, chunk_size: int = 65536) -> jax.Array:
  """The ``k`` highest-scoring unlabeled points of a pool on disk.

  Each chunk is scored and merged into a running top ``k``: memory is
  ``O(chunk_size * dim + k)``. Equal to ``selection.top_k(score_fn(x), k,
  labeled_mask)`` (ties to the lower index).

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
  chunk_size = _check_chunk_size(chunk_size)
  mask = np.zeros(n, bool) if labeled_mask is None else np.asarray(labeled_mask)
  checks.check_labeled_mask(mask, n)
  k = checks.check_budget(k, n, mask)
  best_v = jnp.full((k,), -jnp.inf, jnp.float32)
  best_i = jnp.full((k,), n, jnp.int32)
  for start, valid, chunk in chunks(x, chunk_size):
    lab = np.ones(chunk_size, bool)
    lab[:valid] = mask[start:start + valid]
    best_v, best_i = _merge_step(score_fn, k, best_v, best_i, chunk, jnp.int32(start),
                                 jnp.int32(valid), jnp.asarray(lab))
  return best_i
