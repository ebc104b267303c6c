"""k-center greedy (Coreset): farthest-first traversal from the labeled set.

Returns ``[k]`` int32 indices into the pool: unique, in range, never an
already-labeled point. ``k`` is static (it fixes the output shape); the labeled
set is a mask, so one compile serves every round of a pool. Distances come from
:mod:`jaxal._src.distances` (chunked, dense or factorised points); the loop
runs inside ``jax.lax`` with no host round trip per pick.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxal._src import checks
from jaxal._src import distances
from jaxal._src import sharding


@functools.partial(jax.jit, static_argnames=("k", "chunk_size", "row_chunk_size", "ps"))
def k_center_greedy_core(key, x, k, labeled_mask, chunk_size, row_chunk_size, ps=None):
  """:func:`k_center_greedy` on validated, finite, placed points (any key if some are labeled)."""
  x = jax.tree.map(lambda t: t.astype(jnp.float32), x)
  n = distances.num_points(x)
  xn = distances.sq_norms(x)
  # Nearest-labeled-centre distances: one chunked pass, O(N * num_labeled * dim);
  # +inf everywhere when nothing is labeled (the while loop then does no work).
  min_d, _ = distances.min_sq_dist_masked(
    x,
    x,
    labeled_mask,
    chunk_size=chunk_size,
    row_chunk_size=row_chunk_size,
    x_sq_norms=xn,
    y_sq_norms=xn,
    ps=ps,
  )
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


@checks.spelled_as_key_or_none(
  "k_center_greedy(key, x, k, *, labeled_mask=None, chunk_size=1024, row_chunk_size=8192)"
)
def k_center_greedy(
  key: jax.Array | None,
  x: distances.Points | ArrayLike,
  k: int,
  *,
  labeled_mask: ArrayLike | None = None,
  chunk_size: int = 1024,
  row_chunk_size: int = 8192,
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
  fits in bounded memory. A :class:`GradEmbedding` is handled in factorised
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
    if not checks.is_concrete(labeled_mask) or not bool(jnp.any(labeled_mask)):
      raise ValueError(
        "key is required when the labeled set is empty (or labeled_mask is traced): "
        "k-center greedy then starts from a random point; pass jax.random.key(seed) first"
      )
    key = jax.random.key(0)  # unused: the labeled set fixes the first pick
  else:
    checks.check_key(key)
  return select_k_center(key, x, k, labeled_mask, chunk_size, row_chunk_size)


def select_k_center(
  key: jax.Array,
  x: distances.Points,
  k: int,
  labeled_mask: jax.Array,
  chunk_size: int = 1024,
  row_chunk_size: int = 8192,
) -> jax.Array:
  """:func:`k_center_greedy` on arguments a caller has validated, except ``x``'s values.

  The caller (a strategy, once, at its entry) has checked ``key`` (a typed key;
  any key when some point is labeled), ``labeled_mask`` and ``k``; ``x`` is
  checked for finiteness here, since the caller computed it.

  Args:
    key: a typed key of shape ``()``.
    x: ``[num_points, dim]`` float points, or a :class:`GradEmbedding`.
    k: a Python int, ``1 <= k <=`` the number of unlabeled points.
    labeled_mask: ``[num_points]`` bool.
    chunk_size: labeled points per chunk in the first pass.
    row_chunk_size: pool rows per block in the first pass.

  Returns:
    ``[k]`` int32 indices in the order they were picked.
  """
  checks.check_finite(x, "x", purpose="selection needs finite points")
  ps = sharding.pool_sharding((x, labeled_mask), "x and labeled_mask")
  x, labeled_mask = sharding.place(x, ps), sharding.replicate(labeled_mask, ps)
  return k_center_greedy_core(key, x, k, labeled_mask, chunk_size, row_chunk_size, ps)
