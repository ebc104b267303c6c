"""Uncertainty scores: ``[N, K]`` logits (or ``[S, N, K]`` MC samples) → ``[N]``, higher = pick first."""

from jaxal._src.scores import bald
from jaxal._src.scores import entropy
from jaxal._src.scores import least_confidence
from jaxal._src.scores import log_probs
from jaxal._src.scores import margin
from jaxal._src.scores import mc_mean
from jaxal._src.scores import mean_log_probs
from jaxal._src.scores import mean_std
from jaxal._src.scores import ratio
from jaxal._src.scores import variation_ratio

__all__ = (
  "bald",
  "entropy",
  "least_confidence",
  "log_probs",
  "margin",
  "mc_mean",
  "mean_log_probs",
  "mean_std",
  "ratio",
  "variation_ratio",
)
