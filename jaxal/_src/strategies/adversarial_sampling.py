"""Adversarial strategies: the unlabeled points closest to the decision boundary (DeepFool, BIM)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxal._src import adversarial
from jaxal._src import cached_ops
from jaxal._src import checks
from jaxal._src import executables
from jaxal._src import models as models_lib
from jaxal._src.selection import top_k
from jaxal._src.strategies.base import Strategy
from jaxal._src.strategies.base import check_acquire_args


def _closest(attack_fn, name: str) -> Strategy:

  def acquire(key, model, params, pool, labeled_mask, budget):
    mask, budget = check_acquire_args(key, pool, labeled_mask, budget)
    checks.check_model_input(lambda xb: models_lib.apply(model, params, xb)[0], pool)
    # Attack only the unlabeled points (host-side gather, outside any loop).
    unlabeled = np.flatnonzero(~np.asarray(jax.device_get(mask)))
    attack = attack_fn(model, params, cached_ops.take(pool, unlabeled))
    return _closest_picks(key, attack.distance, unlabeled, budget)

  return Strategy(name, acquire)


@executables.jit(static_argnames=("budget",))
def _closest_picks(key, distance, unlabeled, budget):
  """The ``budget`` entries of ``unlabeled`` (pool indices) with the smallest ``distance``.

  Never-flipped points (+inf) rank last. Ties (BIM's sign steps quantise the distance; +inf
  points) are broken at random: top_k prefers the lower index, so rank a random permutation.
  """
  perm = jax.random.permutation(key, distance.shape[0]).astype(jnp.int32)
  picked = perm[top_k.select_top_k(-distance[perm], budget, jnp.zeros(distance.shape[0], bool))]
  return jnp.asarray(unlabeled, jnp.int32)[picked]


def deepfool(*, max_iter: int = 50, overshoot: float = 0.02, batch_size: int = 256) -> Strategy:
  """The ``budget`` unlabeled points with the smallest DeepFool perturbation.

  The perturbation is that of :func:`jaxal.adversarial.deepfool`. Points that
  never flip within ``max_iter`` rank last; ties are broken at random (with the
  acquisition key).

  Args:
    max_iter: DeepFool iterations, ``>= 0``.
    overshoot: the overshoot factor, ``>= 0``.
    batch_size: examples attacked per jitted step.

  Raises:
    TypeError: a hyperparameter of the wrong type.
    ValueError: a hyperparameter out of range.

  References:
    Ducoffe & Precioso, Adversarial Active Learning for Deep Networks: a
    Margin Based Approach, 2018; DISTIL's ``AdversarialDeepFool``.
  """
  # Validate the hyperparameters now, not in the first round.
  max_iter, overshoot, batch_size = adversarial.check_deepfool_options(
    max_iter, overshoot, batch_size
  )
  fn = lambda model, params, x: adversarial.deepfool_core(
    model, params, x, max_iter, overshoot, batch_size
  )
  return _closest(fn, "deepfool")


def bim(
  *, step: float = 0.05, eps: float = math.inf, max_iter: int = 100, batch_size: int = 256
) -> Strategy:
  """The ``budget`` unlabeled points with the smallest BIM perturbation.

  The perturbation is that of :func:`jaxal.adversarial.bim`. With sign steps
  every coordinate moves by ``step`` per iteration, so the distance is nearly
  quantised by the iteration count: ties are broken at random (with the
  acquisition key), not toward low indices. Points that never flip within
  ``max_iter`` rank last.

  Args:
    step: the step size per iteration, ``> 0``.
    eps: the L∞ radius the perturbation is clipped to, ``> 0`` (``inf``: none).
    max_iter: BIM iterations, ``>= 0``.
    batch_size: examples attacked per jitted step.

  Raises:
    TypeError: a hyperparameter of the wrong type.
    ValueError: a hyperparameter out of range.

  References:
    Kurakin, Goodfellow & Bengio 2017; DISTIL's ``AdversarialBIM``.
  """
  step, eps, max_iter, batch_size = adversarial.check_bim_options(step, eps, max_iter, batch_size)
  fn = lambda model, params, x: adversarial.bim_core(
    model, params, x, step, eps, max_iter, batch_size
  )
  return _closest(fn, "bim")
