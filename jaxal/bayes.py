"""Bayesian batch acquisition: BatchBALD and stochastic power / softmax / soft-rank batches."""

from jaxal._src.bayes import MODES
from jaxal._src.bayes import batchbald
from jaxal._src.bayes import stochastic_batch

__all__ = (
  "MODES",
  "batchbald",
  "stochastic_batch",
)
