"""Random sampling: the baseline every strategy is compared with."""

from __future__ import annotations

from jaxal._src.selection import random as random_selection
from jaxal._src.strategies.base import Strategy
from jaxal._src.strategies.base import check_acquire_args


def random() -> Strategy:
  """Uniformly random unlabeled points: the baseline every result is compared with."""

  def acquire(key, model, params, pool, labeled_mask, budget):
    del model, params
    mask, budget = check_acquire_args(key, pool, labeled_mask, budget)
    return random_selection.select_random(key, pool.shape[0], budget, mask)

  return Strategy("random", acquire)
