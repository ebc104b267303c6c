"""Uniformly random selection of unlabeled points (Gumbel top-k).

Returns ``[k]`` int32 indices into the pool: unique, in range, never an
already-labeled point. ``k`` is static (it fixes the output shape).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxal._src import checks
from jaxal._src import executables
from jaxal._src import sharding


@executables.jit(static_argnames=("n", "k", "ps"))
def random_core(key, n, k, labeled_mask, ps=None):
  """:func:`random` on a validated key, static ints ``n`` and ``k``, ``labeled_mask [n]`` bool."""
  g = jax.random.gumbel(key, (n,), jnp.float32)
  g = jnp.where(labeled_mask, -jnp.inf, g)
  return sharding.top_k(g, k, ps)[1]


@checks.spelled_as("random(key, n, k, *, labeled_mask=None)")
def random(key: jax.Array, n: int, k: int, *, labeled_mask: ArrayLike | None = None) -> jax.Array:
  """``k`` distinct unlabeled points uniformly at random (Gumbel top-k).

  Args:
    key: a ``jax.random.key``.
    n: the pool size.
    k: how many to pick, ``1 <= k <=`` the number of unlabeled points.
    labeled_mask: optional ``[n]`` bool, True where already labeled. When it
      is sharded along N, so is the selection (and the result is the same).

  Returns:
    ``[k]`` int32 indices, in random order.
  """
  checks.check_key(key)
  n = checks.check_positive_int(n, "n", what="the pool size")
  labeled_mask = checks.check_labeled_mask(labeled_mask, n)
  k = checks.check_budget(k, n, labeled_mask)
  return select_random(key, n, k, labeled_mask)


def select_random(key: jax.Array, n: int, k: int, labeled_mask: jax.Array) -> jax.Array:
  """:func:`random` on arguments a caller has validated (a strategy, once, at its entry).

  Args:
    key: a typed key of shape ``()``.
    n: the pool size, a Python int.
    k: a Python int, ``1 <= k <=`` the number of unlabeled points.
    labeled_mask: ``[n]`` bool.

  Returns:
    ``[k]`` int32 indices, in random order.
  """
  labeled_mask = sharding.single_device(labeled_mask)
  return random_core(key, n, k, labeled_mask, sharding.pool_sharding(labeled_mask, "labeled_mask"))
