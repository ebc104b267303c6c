"""Bayesian strategies: BALD, BatchBALD and stochastic (power / softmax / soft-rank) batches."""

from __future__ import annotations

from collections.abc import Callable

import jax

from jaxal._src import bayes
from jaxal._src import cached_ops
from jaxal._src import checks
from jaxal._src import models as models_lib
from jaxal._src import scores
from jaxal._src.strategies.base import Strategy
from jaxal._src.strategies.base import check_acquire_args
from jaxal._src.strategies.base import predict_checked
from jaxal._src.strategies.base import predict_mc_checked
from jaxal._src.strategies.base import score_strategy

# Scores of one deterministic pass ([N, K] -> [N]) and of MC-dropout passes ([S, N, K] -> [N]).
LOGIT_SCORES: dict[str, Callable[[jax.Array], jax.Array]] = {
  "least_confidence": scores.least_confidence,
  "margin": scores.margin,
  "entropy": scores.entropy,
  "ratio": scores.ratio,
}
MC_SCORES: dict[str, Callable[[jax.Array], jax.Array]] = {
  "bald": scores.bald,
  "mc_least_confidence": scores.mc_mean(scores.least_confidence),
  "mc_margin": scores.mc_mean(scores.margin),
  "mc_entropy": scores.mc_mean(scores.entropy),
  "mc_ratio": scores.mc_mean(scores.ratio),
  "variation_ratio": scores.variation_ratio,
  "mean_std": scores.mean_std,
}

_MC_SAMPLES = "BALD-type scores compare MC-dropout samples"


def _forward_check(model, params, pool) -> None:
  checks.check_model_input(lambda xb: models_lib.apply(model, params, xb)[0], pool)


def bald(*, num_samples: int = 20, batch_size: int = 256) -> Strategy:
  """Top-``budget`` by :func:`jaxal.scores.bald` from ``num_samples`` MC-dropout passes.

  Args:
    num_samples: MC-dropout passes ``S >= 2``.
    batch_size: forward batch size.

  References:
    Gal, Islam & Ghahramani, Deep Bayesian Active Learning with Image Data, ICML 2017.
  """
  return score_strategy("bald", scores.bald, num_samples=num_samples, batch_size=batch_size)


def batchbald(
  *,
  num_samples: int = 20,
  num_joint_samples: int = 512,
  max_exact_configs: int | None = None,
  batch_size: int = 256,
) -> Strategy:
  """BatchBALD (:func:`jaxal.bayes.batchbald`) on MC-dropout passes with consistent masks.

  Each of the ``num_samples`` passes uses one dropout mask for the whole pool
  (``models.predict_mc(..., consistent=True)``), so a pass is one sampled
  network, as the joint predictive requires.

  Args:
    num_samples: MC-dropout passes ``S >= 2``.
    num_joint_samples: sampled label configurations once the batch outgrows
      the exact sum (cost per pick ``O(S · N · num_joint_samples · K)``).
    max_exact_configs: largest configuration count summed exactly
      (default ``num_joint_samples``).
    batch_size: forward batch size.

  References:
    Kirsch, van Amersfoort & Gal, BatchBALD, NeurIPS 2019.
  """
  num_samples = checks.check_int(num_samples, "num_samples", low=2, what=_MC_SAMPLES)
  num_joint_samples, max_exact_configs = bayes.check_joint_samples(
    num_joint_samples, max_exact_configs
  )

  def acquire(key, model, params, pool, labeled_mask, budget):
    mask, budget = check_acquire_args(key, pool, labeled_mask, budget)
    _forward_check(model, params, pool)
    k_mc, k_sel = cached_ops.split(key, 2)
    logits = predict_mc_checked(k_mc, model, params, pool, num_samples, batch_size, consistent=True)
    checks.check_mc_varies(logits, "batchbald")
    return bayes.batchbald_core(k_sel, logits, budget, mask, num_joint_samples, max_exact_configs)

  return Strategy("batchbald", acquire)


def _stochastic(
  mode: str, score: str, temperature: float, num_samples: int, batch_size: int
) -> Strategy:
  checks.check_one_of(score, {**LOGIT_SCORES, **MC_SCORES}, "score")
  temperature = bayes.check_temperature(temperature)
  mc = score in MC_SCORES
  if mc:
    num_samples = checks.check_int(num_samples, "num_samples", low=2, what=_MC_SAMPLES)
  score_fn = MC_SCORES[score] if mc else LOGIT_SCORES[score]

  name = mode if score == "bald" else f"{mode}_{score}"

  def acquire(key, model, params, pool, labeled_mask, budget):
    mask, budget = check_acquire_args(key, pool, labeled_mask, budget)
    _forward_check(model, params, pool)
    k_mc, k_sel = cached_ops.split(key, 2)
    if mc:
      logits = predict_mc_checked(k_mc, model, params, pool, num_samples, batch_size)
      checks.check_mc_varies(logits, name)
    else:
      logits = predict_checked(model, params, pool, batch_size, features=False).logits
    return bayes.stochastic_batch_core(k_sel, score_fn(logits), budget, mask, mode, temperature)

  return Strategy(name, acquire)


def power(
  *, score: str = "bald", temperature: float = 1.0, num_samples: int = 20, batch_size: int = 256
) -> Strategy:
  """Power acquisition: draws ∝ ``score ** (1 / temperature)``.

  The draw is :func:`jaxal.bayes.stochastic_batch` with ``mode="power"``.

  Args:
    score: a non-negative score: ``"bald"`` (default) or another name of
      :data:`MC_SCORES` (MC dropout) or :data:`LOGIT_SCORES` (one pass).
    temperature: ``1 / β``; towards 0 the batch tends to the top-k.
    num_samples: MC-dropout passes for MC scores (``>= 2``).
    batch_size: forward batch size.

  References:
    Kirsch et al., Stochastic Batch Acquisition: A Simple Baseline for Deep
    Active Learning, TMLR 2023.
  """
  return _stochastic("power", score, temperature, num_samples, batch_size)


def softmax(
  *, score: str = "bald", temperature: float = 1.0, num_samples: int = 20, batch_size: int = 256
) -> Strategy:
  """Softmax acquisition: draws ∝ ``exp(score / temperature)``.

  The draw is :func:`jaxal.bayes.stochastic_batch` with ``mode="softmax"``.

  Args:
    score: a score name: ``"bald"`` (default) or another name of :data:`MC_SCORES` (MC
      dropout) or :data:`LOGIT_SCORES` (one pass), as in :func:`power`.
    temperature: ``1 / β``; towards 0 the batch tends to the top-k.
    num_samples: MC-dropout passes for MC scores (``>= 2``).
    batch_size: forward batch size.
  """
  return _stochastic("softmax", score, temperature, num_samples, batch_size)


def softrank(
  *, score: str = "bald", temperature: float = 1.0, num_samples: int = 20, batch_size: int = 256
) -> Strategy:
  """Soft-rank acquisition: draws ∝ ``rank ** (-1 / temperature)``.

  The draw is :func:`jaxal.bayes.stochastic_batch` with ``mode="softrank"``.

  Args:
    score: a score name: ``"bald"`` (default) or another name of :data:`MC_SCORES` (MC
      dropout) or :data:`LOGIT_SCORES` (one pass), as in :func:`power`.
    temperature: ``1 / β``; towards 0 the batch tends to the top-k.
    num_samples: MC-dropout passes for MC scores (``>= 2``).
    batch_size: forward batch size.
  """
  return _stochastic("softrank", score, temperature, num_samples, batch_size)
