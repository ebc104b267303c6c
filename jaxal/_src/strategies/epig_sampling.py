"""EPIG as a strategy: top-k or power-sampled batches of the expected predictive information gain."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxal._src import bayes
from jaxal._src import cached_ops
from jaxal._src import checks
from jaxal._src import epig as epig_lib
from jaxal._src import executables
from jaxal._src import models as models_lib
from jaxal._src.selection import top_k
from jaxal._src.strategies.base import Strategy
from jaxal._src.strategies.base import check_acquire_args
from jaxal._src.strategies.base import predict_mc_checked

_BATCH = {"top_k": None, "power": None}


@executables.jit(static_argnames=("t",))
def _pool_targets(key, pool, mask, t):
  """``[t, ...]`` unlabeled rows of ``pool``, drawn uniformly without replacement."""
  rank = jax.random.uniform(key, (pool.shape[0],))
  return jnp.asarray(pool)[top_k.select_top_k(rank, t, mask)]


@executables.jit(static_argnames=("size",))
def _target_subset(key, target, size):
  """``[size, ...]`` rows of ``target``, drawn uniformly without replacement."""
  return target[jax.random.choice(key, target.shape[0], (size,), replace=False)]


def epig(
  *,
  target: Any = None,
  num_samples: int = 20,
  target_size: int = 100,
  chunk_size: int = 32,
  batch: str = "top_k",
  temperature: float = 1.0,
  batch_size: int = 256,
) -> Strategy:
  """EPIG (:func:`jaxal.bayes.epig`) of the pool about a target set, from MC posterior samples.

  Each acquisition draws ``num_samples`` posterior samples with one network per sample
  (``models.predict_mc(..., consistent=True)`` under one key for the pool and the target, so
  sample ``s`` is the same network on both; an ensemble gives its members), scores the pool by
  EPIG about ``target_size`` target inputs, then takes the top ``budget`` unlabeled points
  (``batch="top_k"``) or a batch drawn ∝ ``epig ** (1 / temperature)`` (``batch="power"``,
  :func:`jaxal.bayes.stochastic_batch`).

  Args:
    target: ``[num_targets, ...]`` model input of the pool's feature shape, subsampled to
      ``target_size`` with the key when larger; None (default) draws ``target_size`` targets
      uniformly from the unlabeled pool.
    num_samples: posterior samples ``S >= 2``.
    target_size: how many target inputs to use (a positive int).
    chunk_size: target inputs per step of the EPIG scan.
    batch: ``"top_k"`` or ``"power"``.
    temperature: the power draw's temperature (used when ``batch="power"``).
    batch_size: forward batch size.

  Returns:
    A :class:`Strategy` named ``"epig"`` (``"power_epig"`` for ``batch="power"``).

  Raises:
    TypeError: a non-int size or a ``target`` without a shape.
    ValueError: a size out of range, an unknown ``batch``; at acquisition, a ``target`` whose
      feature shape differs from the pool's.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxal import models, networks, strategies
    >>> x = jax.random.normal(jax.random.key(0), (40, 8))
    >>> module = networks.MLP(num_classes=3, hidden=(8,), dropout_rate=0.5)
    >>> params = models.init_params(jax.random.key(1), module, x)
    >>> s = strategies.epig(num_samples=4, target_size=10)
    >>> idx = s.acquire(jax.random.key(2), models.from_linen(module), params, x, None, 5)
    >>> idx.shape
    (5,)

  References:
    Bickford Smith, Kirsch, Farquhar, Gal, Foster & Rainforth, Prediction-Oriented
    Bayesian Active Learning, AISTATS 2023.
  """
  num_samples = checks.check_int(
    num_samples, "num_samples", low=2, what="EPIG compares posterior samples"
  )
  target_size = checks.check_positive_int(target_size, "target_size")
  chunk_size = checks.check_positive_int(chunk_size, "chunk_size")
  batch = checks.check_one_of(batch, _BATCH, "batch")
  temp = bayes.check_temperature(temperature) if batch == "power" else None
  if target is not None:
    if not hasattr(target, "shape") or len(target.shape) < 1 or target.shape[0] == 0:
      raise TypeError(
        f"target must be an array of shape [num_targets, ...] or None, got {checks.describe(target)}"
      )
    target = jnp.asarray(target)

  def acquire(key, model, params, pool, labeled_mask, budget):
    mask, budget = check_acquire_args(key, pool, labeled_mask, budget)
    if target is not None and tuple(target.shape[1:]) != tuple(pool.shape[1:]):
      raise ValueError(
        f"target must have the pool's feature shape {tuple(pool.shape[1:])}, got target of "
        f"shape {tuple(target.shape)} and pool of shape {tuple(pool.shape)}"
      )
    checks.check_model_input(lambda xb: models_lib.apply(model, params, xb)[0], pool)
    k_target, k_mc, k_sel = cached_ops.split(key, 3)
    if target is None:
      unlabeled = pool.shape[0] - cached_ops.count_int(mask)
      x_target = _pool_targets(k_target, pool, mask, min(target_size, unlabeled))
    elif target.shape[0] > target_size:
      x_target = _target_subset(k_target, target, target_size)
    else:
      x_target = target
    mc_pool = predict_mc_checked(
      k_mc, model, params, pool, num_samples, batch_size, consistent=True
    )
    mc_target = predict_mc_checked(
      k_mc, model, params, x_target, num_samples, batch_size, consistent=True, on="the target"
    )
    u = epig_lib.epig_core(mc_pool, mc_target, min(chunk_size, mc_target.shape[1]))
    if batch == "power":
      return bayes.stochastic_batch_core(k_sel, u, budget, mask, "power", temp)
    return top_k.select_top_k(u, budget, mask)

  return Strategy("epig" if batch == "top_k" else "power_epig", acquire)
