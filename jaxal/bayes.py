"""Bayesian batch acquisition: BatchBALD and stochastic power / softmax / soft-rank batches."""

from jaxal._src.bayes import MODES
from jaxal._src.bayes import batchbald
from jaxal._src.bayes import stochastic_batch
from jaxal._src.epig import epig

__all__ = (
  "MODES",
  "batchbald",
  "epig",
  "stochastic_batch",
)
