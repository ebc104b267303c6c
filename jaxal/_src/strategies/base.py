"""The `Strategy` value and the helpers every strategy module shares."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import NamedTuple
from typing import Protocol

import jax
from jax.typing import ArrayLike

from jaxal._src import checks
from jaxal._src import models as models_lib


class AcquireFn(Protocol):
  def __call__(
    self,
    key: jax.Array,
    model: models_lib.Model,
    params: Any,
    pool: ArrayLike,
    labeled_mask: ArrayLike,
    budget: int,
  ) -> jax.Array: ...


class Strategy(NamedTuple):
  """An acquisition strategy: a name and one pure function.

  Like optax's ``GradientTransformation``, a strategy holds no data, model or
  training loop; its factory closes over hyperparameters only.

  Attributes:
    name: a short identifier, as used by ``jaxal run --strategies``.
    acquire: ``acquire(key, model, params, pool, labeled_mask, budget)``
      returning ``[budget]`` int32 indices of unlabeled pool points: unique,
      in range, never labeled. ``pool`` is ``[num_points, ...]`` model input,
      ``labeled_mask`` a ``[num_points]`` bool mask, ``budget`` a Python int.
  """

  name: str
  acquire: AcquireFn


def check_acquire_args(
  key: Any, pool: Any, labeled_mask: Any, budget: Any
) -> tuple[jax.Array, int]:
  """Validates the arguments every ``acquire`` takes.

  Args:
    key: a typed key from ``jax.random.key``.
    pool: ``[num_points, ...]`` model input.
    labeled_mask: a ``[num_points]`` bool mask, or None for no labeled point.
    budget: a positive Python or NumPy int, at most the unlabeled count.

  Returns:
    ``(labeled_mask, budget)``: the mask as a ``[num_points]`` bool array and
    the budget as a Python int.

  Raises:
    TypeError: a legacy key, a pool without a shape, a non-bool mask.
    ValueError: a mask of the wrong shape, a budget out of range.
  """
  checks.check_key(key)
  if not hasattr(pool, "shape") or len(pool.shape) < 1:
    raise TypeError(f"pool must be an array of shape [num_points, ...], got {type(pool).__name__}")
  n = pool.shape[0]
  mask = checks.check_labeled_mask(labeled_mask, n)
  budget = checks.check_budget(budget, n, mask, name="budget")
  return mask, budget


def predict_checked(
  model: models_lib.Model,
  params: Any,
  x: Any,
  batch_size: int,
  *,
  features: bool,
  logits: bool = True,
  on: str = "the pool",
  purpose: str = "",
) -> models_lib.Predictions:
  """:func:`jaxal.models.predict`, its outputs checked finite with flags from the same compiled call.

  Internal API: what a strategy's ``acquire`` does with the model's outputs before selecting,
  so that checking them costs no extra pass over the pool and no extra compile.

  Args:
    model, params: the model and its parameters.
    x: ``[num_points, ...]`` model input.
    batch_size: forward batch size.
    features: also return (and check) the penultimate features ``[num_points, dim]``.
    logits: check the logits (NaN, ``+inf``, a row with no finite entry).
    on: what ``x`` is, as the messages name it (``"logits of the model on <on>"``).
    purpose: why finite features are needed, appended to their message.

  Returns:
    The :class:`jaxal.models.Predictions`.

  Raises:
    ValueError: non-finite logits (with ``logits``) or features (with ``features``), naming the
      first offending row.
  """
  preds, logits_ok, features_ok = models_lib.predict_flagged(
    model, params, x, batch_size=batch_size, features=features
  )
  if logits:
    checks.check_finite_logits(preds.logits, f"logits of the model on {on}", ok=logits_ok)
  if features:
    checks.check_finite(
      preds.features, f"features of the model on {on}", purpose=purpose, ok=features_ok
    )
  return preds


def predict_mc_checked(
  key: jax.Array,
  model: models_lib.Model,
  params: Any,
  x: Any,
  num_samples: int,
  batch_size: int,
  *,
  consistent: bool = False,
  on: str = "the pool",
) -> jax.Array:
  """:func:`jaxal.models.predict_mc`, checked finite with the flag from the same compiled call.

  Internal API, as :func:`predict_checked` for MC-dropout (or ensemble) samples.

  Returns:
    ``[num_samples, num_points, K]`` logits.

  Raises:
    ValueError: NaN or ``+inf`` logits, or a row with no finite entry (rows of the
      ``[S * N, K]`` samples), naming the first.
  """
  logits, ok = models_lib.predict_mc_flagged(
    key, model, params, x, num_samples=num_samples, batch_size=batch_size, consistent=consistent
  )
  if ok is None or not checks.is_concrete(ok) or not bool(ok):  # the rows reshaped only to check
    checks.check_finite_logits(
      logits.reshape(-1, logits.shape[-1]), f"MC logits of the model on {on}", ok=ok
    )
  return logits


def score_strategy(
  name: str,
  score_fn: Callable[[jax.Array], jax.Array],
  *,
  num_samples: int | None = None,
  batch_size: int = 256,
) -> Strategy:
  """A strategy that scores the pool and takes the top ``budget`` unlabeled points.

  Args:
    name: the strategy's name.
    score_fn: ``[N, K] -> [N]`` (or ``[S, N, K] -> [N]`` when ``num_samples``
      is given), higher = pick first.
    num_samples: None for one deterministic pass; otherwise the number of
      MC-dropout passes fed to ``score_fn``.
    batch_size: forward batch size.

  Returns:
    A :class:`Strategy` named ``name``.

  Raises:
    TypeError: ``num_samples`` is not an int.
    ValueError: ``num_samples`` is below 2. At acquire time: non-finite logits,
      or (``num_samples`` given) MC samples that are all identical, i.e. a model
      without active dropout (:func:`jaxal._src.checks.check_mc_varies`).
  """
  from jaxal._src.selection import top_k  # local: selection is a lower layer, no cycle

  if num_samples is not None:
    num_samples = checks.check_int(
      num_samples, "num_samples", low=2, what="MC-dropout scores compare samples"
    )

  def acquire(key, model, params, pool, labeled_mask, budget):
    mask, budget = check_acquire_args(key, pool, labeled_mask, budget)
    if num_samples is None:
      logits = predict_checked(model, params, pool, batch_size, features=False).logits
    else:
      logits = predict_mc_checked(key, model, params, pool, num_samples, batch_size)
      checks.check_mc_varies(logits, name)
    return top_k.select_top_k(score_fn(logits), budget, mask)

  return Strategy(name, acquire)
