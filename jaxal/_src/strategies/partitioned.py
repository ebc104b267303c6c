"""Partitioned selection: an inner strategy run on random parts of the unlabeled pool."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxal._src import cached_ops
from jaxal._src import checks
from jaxal._src import sharding
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


def _blocks(pool, n, ps, num_partitions):
  """``[(start, stop, local rows, device)]``: the whole pool, or one block per device."""
  if ps is None:
    return [(0, n, None, None)]
  if num_partitions % ps.num_shards:
    raise ValueError(
      f"num_partitions={num_partitions} must be a multiple of the {ps.num_shards} devices the "
      f"pool of shape {pool.shape} is sharded over (each device takes its own parts)"
    )
  if not pool.is_fully_addressable:
    raise ValueError(
      "partitioned selects each device's parts on that device from this process; a pool "
      "spread over several processes (multi-host) is not supported"
    )
  blocks = {}
  for shard in pool.addressable_shards:
    start = shard.index[0].start or 0
    if start not in blocks:
      stop = shard.index[0].stop if shard.index[0].stop is not None else n
      blocks[start] = (start, stop, shard.data, shard.device)
  return [blocks[s] for s in sorted(blocks)]


def _labeled_rows(blocks, host_mask):
  """The labeled rows of a sharded pool, in index order, fetched from each device's shard."""
  first = blocks[0][3]
  rows = []
  for start, stop, local, device in blocks:
    here = np.flatnonzero(host_mask[start:stop]).astype(np.int32)
    rows.append(jax.device_put(local[jax.device_put(here, device)], first))
  return jnp.concatenate(rows)


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
  part shapes take at most two values per round.

  **Device mesh.** When ``pool`` is sharded along N over a 1-D mesh of ``D``
  devices (``NamedSharding(mesh, P("pool", ...))``), each device takes its own
  parts: ``num_partitions`` must be a multiple of ``D``, device ``d`` cuts the
  unlabeled points of the rows it holds into ``num_partitions / D`` parts (with
  the key ``fold_in(key, d)``), and each part is gathered from that device's
  shard and selected there (the parameters, and with ``with_labeled`` the
  labeled points, are copied to it). The shares are still proportional to the
  part sizes over the whole pool. The parts are dispatched from one process;
  a pool spread over several processes is refused.

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
      ``num_partitions < 1``; at acquire time, more parts than unlabeled points
      (per device, for a sharded pool), ``num_partitions`` not a multiple of
      the devices a sharded pool spans.

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
    ps = sharding.pool_sharding(pool, "pool") if isinstance(pool, jax.Array) else None
    blocks = _blocks(pool, n, ps, num_partitions)
    per_block = num_partitions // len(blocks)
    perm_key, inner_key = cached_ops.split(key, 2)
    # Index bookkeeping on the host: the [N] mask is read once per call, each part's picks
    # once per part (outside any selection loop).
    host_mask = np.asarray(jax.device_get(mask))
    labeled = np.flatnonzero(host_mask).astype(np.int32)
    # Each block (the whole pool, or one device's rows) is cut into its own parts.
    parts = []  # (block, global indices [size])
    for b, (start, stop, _, _) in enumerate(blocks):
      unlabeled = np.flatnonzero(~host_mask[start:stop]).astype(np.int32) + start
      if per_block > len(unlabeled):
        where = "" if len(blocks) == 1 else f" in rows [{start}, {stop}) of device {b}"
        raise ValueError(
          f"num_partitions={num_partitions} is larger than the {len(unlabeled)} unlabeled "
          f"points left{where} in the pool of {n}"
          + ("" if len(blocks) == 1 else f" ({per_block} parts per device)")
        )
      block_key = perm_key if len(blocks) == 1 else cached_ops.fold_in(perm_key, b)
      order = unlabeled[np.asarray(cached_ops.permutation(block_key, len(unlabeled)))]
      offset = 0
      for size in partition_sizes(len(unlabeled), per_block):
        parts.append((b, order[offset : offset + size]))
        offset += size
    shares = partition_shares(budget, [len(part) for _, part in parts])
    labeled_rows = None
    if with_labeled and ps is not None:
      labeled_rows = _labeled_rows(blocks, host_mask)  # gathered once
    picked = []
    for p, ((b, part), share) in enumerate(zip(parts, shares)):
      if share == 0:
        continue
      rows = np.concatenate([labeled, part]) if with_labeled else part
      part_mask = np.arange(len(rows)) < (len(labeled) if with_labeled else 0)
      part_key, part_params = cached_ops.fold_in(inner_key, p), params
      if ps is None:
        part_pool = pool[rows] if isinstance(pool, np.ndarray) else cached_ops.take(pool, rows)
        part_mask = jax.device_put(part_mask)
      else:  # the part is gathered and selected on the device that holds its rows
        start, _, local, device = blocks[b]
        part_pool = local[jax.device_put(part - start, device)]
        if with_labeled:
          part_pool = jnp.concatenate([jax.device_put(labeled_rows, device), part_pool])
        part_mask, part_key, part_params = jax.device_put((part_mask, part_key, params), device)
      local_idx = inner.acquire(part_key, model, part_params, part_pool, part_mask, share)
      if tuple(getattr(local_idx, "shape", ())) != (share,):
        raise ValueError(
          f"the inner strategy {inner.name!r} returned indices of shape "
          f"{tuple(getattr(local_idx, 'shape', ()))} for a budget of {share}"
        )
      picked.append(rows[np.asarray(jax.device_get(local_idx))])
    out = jax.device_put(np.concatenate(picked).astype(np.int32))
    return sharding.replicate(out, ps)

  return Strategy(f"partitioned_{inner.name}", acquire)
