"""Uncertainty sampling: the top-``budget`` points by a score of one pass or of MC dropout."""

from __future__ import annotations

from jaxal._src import scores
from jaxal._src.strategies.base import Strategy
from jaxal._src.strategies.base import score_strategy


def least_confidence(*, batch_size: int = 256) -> Strategy:
  """Top-``budget`` by :func:`jaxal.scores.least_confidence` of one deterministic pass.

  Args:
    batch_size: forward batch size.
  """
  return score_strategy("least_confidence", scores.least_confidence, batch_size=batch_size)


def margin(*, batch_size: int = 256) -> Strategy:
  """Top-``budget`` by :func:`jaxal.scores.margin` (smallest top-2 margin first).

  Args:
    batch_size: forward batch size.
  """
  return score_strategy("margin", scores.margin, batch_size=batch_size)


def entropy(*, batch_size: int = 256) -> Strategy:
  """Top-``budget`` by :func:`jaxal.scores.entropy`.

  Args:
    batch_size: forward batch size.
  """
  return score_strategy("entropy", scores.entropy, batch_size=batch_size)


def ratio(*, batch_size: int = 256) -> Strategy:
  """Top-``budget`` by :func:`jaxal.scores.ratio`.

  Args:
    batch_size: forward batch size.
  """
  return score_strategy("ratio", scores.ratio, batch_size=batch_size)


def mc_least_confidence(*, num_samples: int = 20, batch_size: int = 256) -> Strategy:
  """Least confidence of the MC-dropout mean predictive (``num_samples`` passes).

  Args:
    num_samples: MC-dropout passes ``S >= 2``.
    batch_size: forward batch size.
  """
  return score_strategy(
    "mc_least_confidence",
    scores.mc_mean(scores.least_confidence),
    num_samples=num_samples,
    batch_size=batch_size,
  )


def mc_margin(*, num_samples: int = 20, batch_size: int = 256) -> Strategy:
  """Margin of the MC-dropout mean predictive.

  Args:
    num_samples: MC-dropout passes ``S >= 2``.
    batch_size: forward batch size.
  """
  return score_strategy(
    "mc_margin", scores.mc_mean(scores.margin), num_samples=num_samples, batch_size=batch_size
  )


def mc_entropy(*, num_samples: int = 20, batch_size: int = 256) -> Strategy:
  """Entropy of the MC-dropout mean predictive (max-entropy of Gal et al., 2017).

  Args:
    num_samples: MC-dropout passes ``S >= 2``.
    batch_size: forward batch size.
  """
  return score_strategy(
    "mc_entropy", scores.mc_mean(scores.entropy), num_samples=num_samples, batch_size=batch_size
  )


def mc_ratio(*, num_samples: int = 20, batch_size: int = 256) -> Strategy:
  """Ratio of confidences of the MC-dropout mean predictive.

  Args:
    num_samples: MC-dropout passes ``S >= 2``.
    batch_size: forward batch size.
  """
  return score_strategy(
    "mc_ratio", scores.mc_mean(scores.ratio), num_samples=num_samples, batch_size=batch_size
  )


def variation_ratio(*, num_samples: int = 20, batch_size: int = 256) -> Strategy:
  """Top-``budget`` by :func:`jaxal.scores.variation_ratio` over MC-dropout votes.

  Args:
    num_samples: MC-dropout passes ``S >= 2``.
    batch_size: forward batch size.
  """
  return score_strategy(
    "variation_ratio", scores.variation_ratio, num_samples=num_samples, batch_size=batch_size
  )


def mean_std(*, num_samples: int = 20, batch_size: int = 256) -> Strategy:
  """Top-``budget`` by :func:`jaxal.scores.mean_std` over MC-dropout passes.

  Args:
    num_samples: MC-dropout passes ``S >= 2``.
    batch_size: forward batch size.
  """
  return score_strategy("mean_std", scores.mean_std, num_samples=num_samples, batch_size=batch_size)
