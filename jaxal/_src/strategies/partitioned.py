"""Partitioned selection: an inner strategy run on random parts of the unlabeled pool."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxal._src import checks
from jaxal._src.strategies.base import Strategy
from jaxal._src.strategies.base import check_acquire_args


def partition_sizes(num_unlabeled: int, num_partitions: int) -> list[int]:
  """Near-equal part sizes (the first ``num_unlabeled % num_partitions`` one larger)."""
  q, r = divmod(num_unlabeled, num_partitions)
  return [q + (p < r) for p in range(num_partitions)]


def partition_shares(budget: int, sizes: list[int]) -> list[int]:
  """Largest-remainder shares of ``budget`` proportional to ``sizes``.

  The shares sum to ``budget`` exactly and each is at most ``ceil(budget *
  size / total)``, hence at most its part's size when ``budget <= total``; ties
  of the remainders go to the earlier part.
  """
  total = sum(sizes)
  floors = [budget * s // total for s in sizes]
  rems = [budget * s % total for s in sizes]
  extra = budget - sum(floors)
  order = sorted(range(len(sizes)), key=lambda p: (-rems[p], p))
  for p in order[:extra]:
    floors[p] += 1
  return floors


def _resolve(strategy: Any, strategy_kwargs: Any) -> Strategy:
  if strategy_kwargs is not None and not isinstance(strategy_kwargs, Mapping):
    raise TypeError(
      f"strategy_kwargs must be a dict of the inner factory's arguments, got "
      f"{type(strategy_kwargs).__name__}"
    )
  if isinstance(strategy, Strategy):
    if strategy_kwargs:
      raise ValueError(
        "strategy_kwargs is used only with a registered name: pass strategy='name', "
        "strategy_kwargs={...}, or a Strategy built with its arguments"
      )
    return strategy
  if isinstance(strategy, str):
    from jaxal._src.strategies import registry  # local: the registry imports this module

    if strategy == "partitioned":
      raise ValueError("strategy='partitioned' would partition twice; pass the inner strategy")
    return registry.get(strategy, **dict(strategy_kwargs or {}))
  raise TypeError(
    f"strategy must be a Strategy or a registered strategy name, got {type(strategy).__name__}"
  )


def partitioned(
  strategy: Strategy | str = "submodular",
  num_partitions: int = 4,
  *,
  strategy_kwargs: Mapping[str, Any] | None = None,
  with_labeled: bool = True,
) -> Strategy:
  """An inner strategy run on keyed random parts of the unlabeled pool (DISTIL's partitions).

  The unlabeled points are shuffled by the key and cut into ``num_partitions``
  parts of near-equal size (sizes differ by at most one); part ``p`` gets the
  share ``b_p`` of the budget proportional to its size (largest remainders:
  the shares sum to ``budget`` exactly and ``b_p <= |part p|``). The inner
  strategy's ``acquire`` then runs on each part as a pool of its own (the
  part's points, after the labeled points when ``with_labeled``, which it sees
  as labeled), with the key ``fold_in(key, p)``, and its indices are mapped
  back to the pool. A method quadratic in the pool (submodular kernels, FASS)
  then costs ``num_partitions`` times ``(num_labeled + N / num_partitions)²``
  instead of ``N²``. Same key, same parts, same batch. Parts with a share of 0
  are not run.

  Parts run one after another from Python (a loop over the parts, not over
  examples or picks); the inner strategy compiles once per part shape, and the
  part shapes take at most two values per round. A pool sharded over a device
  mesh is not split by device: the parts are gathered from the whole pool (for
  device-local parts, shard the pool and call the inner strategy on each
  device's rows).

  Args:
    strategy: the inner :class:`Strategy`, or a registered name (see
      :func:`jaxal.strategies.names`) built with ``strategy_kwargs``.
    num_partitions: number of parts, ``>= 1``, at most the unlabeled count.
    strategy_kwargs: keyword arguments of the inner factory (with a name only).
    with_labeled: give every part the labeled points too (as DISTIL does), for
      inner strategies that use them (Coreset's distances, GLISTER's
      validation); False gives each part its unlabeled points only.

  Returns:
    A :class:`Strategy` named ``"partitioned_<inner name>"``.

  Raises:
    TypeError: ``strategy`` is neither a Strategy nor a name, a bad
      ``strategy_kwargs`` or ``num_partitions``.
    ValueError: an unknown name, ``strategy_kwargs`` with a Strategy,
      ``num_partitions < 1``; at acquire time, more parts than unlabeled points.

  Examples:
    >>> import jax
    >>> from jaxal import datasets, loop, models, strategies
    >>> ds = datasets.load_digits()
    >>> x = ds.x_train[:80]
    >>> ts = loop.create_train_state(jax.random.key(0), models.MLP(num_classes=10), x)
    >>> model, params = models.from_train_state(ts)
    >>> mask = loop.init(jax.random.key(0), len(x), num_initial=10).labeled_mask
    >>> s = strategies.partitioned("margin", num_partitions=4)
    >>> idx = s.acquire(jax.random.key(1), model, params, x, mask, 10)
    >>> s.name, idx.shape, bool(mask[idx].any())
    ('partitioned_margin', (10,), False)

  References:
    DISTIL's ``PartitionStrategy`` (decile-team/distil), which cuts the pool
    into contiguous parts; here the parts are random (keyed).
  """
  inner = _resolve(strategy, strategy_kwargs)
  num_partitions = checks.check_positive_int(num_partitions, "num_partitions")
  with_labeled = checks.check_bool(with_labeled, "with_labeled")

  def acquire(key, model, params, pool, labeled_mask, budget):
    mask, budget = check_acquire_args(key, pool, labeled_mask, budget)
    n = pool.shape[0]
    num_labeled = int(jnp.sum(mask, dtype=jnp.int32))
    num_unlabeled = n - num_labeled
    if num_partitions > num_unlabeled:
      raise ValueError(
        f"num_partitions={num_partitions} is larger than the {num_unlabeled} unlabeled points "
        f"left in the pool of {n}"
      )
    perm_key, inner_key = jax.random.split(key)
    unlabeled = jnp.nonzero(~mask, size=num_unlabeled)[0].astype(jnp.int32)
    order = jax.random.permutation(perm_key, unlabeled)
    labeled = jnp.nonzero(mask, size=num_labeled)[0].astype(jnp.int32)
    sizes = partition_sizes(num_unlabeled, num_partitions)
    shares = partition_shares(budget, sizes)
    picked, start = [], 0
    for p, (size, share) in enumerate(zip(sizes, shares)):
      part = order[start : start + size]
      start += size
      if share == 0:
        continue
      if with_labeled:
        rows = jnp.concatenate([labeled, part])
        part_mask = jnp.arange(num_labeled + size) < num_labeled
      else:
        rows = part
        part_mask = jnp.zeros((size,), bool)
      if isinstance(pool, np.ndarray):
        part_pool = pool[np.asarray(rows)]
      else:
        part_pool = jnp.take(pool, rows, axis=0)
      local = inner.acquire(
        jax.random.fold_in(inner_key, p), model, params, part_pool, part_mask, share
      )
      if tuple(getattr(local, "shape", ())) != (share,):
        raise ValueError(
          f"the inner strategy {inner.name!r} returned indices of shape "
          f"{tuple(getattr(local, 'shape', ()))} for a budget of {share}"
        )
      picked.append(rows[jnp.asarray(local)])
    return jnp.concatenate(picked).astype(jnp.int32)

  return Strategy(f"partitioned_{inner.name}", acquire)
