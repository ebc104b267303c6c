"""The GLISTER-active strategy."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from jaxal._src import checks
from jaxal._src import glister as glister_lib
from jaxal._src import models as models_lib
from jaxal._src.strategies.base import Strategy
from jaxal._src.strategies.base import check_acquire_args
from jaxal._src.strategies.base import predict_checked

_PURPOSE = "gradient embeddings need finite values"


def glister(
  *,
  learning_rate: float = 1e-3,
  regularizer: str | None = None,
  lam: float | None = None,
  validation: tuple[Any, Any] | None = None,
  labels: Any = None,
  bias: bool = True,
  batch_size: int = 256,
) -> Strategy:
  """GLISTER-active (:func:`jaxal.glister.glister`) on the model's last layer.

  Args:
    learning_rate: the one-step update's step size; the default is the
      training learning rate of :func:`jaxal.loop.create_train_state`.
    regularizer: None, ``"random"``, ``"facility_location"`` or ``"diversity"``.
    lam: the regulariser's weight (for ``"random"``: the fraction of random picks).
    validation: optional ``(x_val, y_val)``: inputs ``[M, ...]`` and integer
      labels ``[M]``. By default the validation set is the pool itself,
      labeled points at ``labels`` and the rest at the model's predictions.
    labels: optional ``[num_points]`` oracle labels of the pool (only labeled
      entries are read). Without them (as under ``jaxal run``) labeled points
      also stand at the model's predictions, which after training on them are
      mostly their labels.
    bias: include the last layer's bias gradient.
    batch_size: forward batch size.

  The model must return ``(logits, features)``.

  References:
    Killamsetty et al., GLISTER, AAAI 2021.
  """
  learning_rate, lam = glister_lib.check_hyper(learning_rate, regularizer, lam)
  bias = checks.check_bool(bias, "bias")
  if validation is not None:
    if not isinstance(validation, tuple) or len(validation) != 2:
      raise TypeError(f"validation must be a pair (x_val, y_val), got {type(validation).__name__}")
    x_val, y_val = validation
    if not hasattr(x_val, "shape") or not hasattr(y_val, "shape"):
      raise TypeError("validation must be a pair of arrays (x_val [M, ...], y_val [M])")
    checks.check_same_n("validation x_val", x_val, "validation y_val", y_val)
    if len(y_val.shape) != 1 or not jnp.issubdtype(y_val.dtype, jnp.integer):
      raise ValueError(
        f"validation y_val must be integer labels of shape [M], got dtype "
        f"{y_val.dtype} and shape {tuple(y_val.shape)}"
      )

  def acquire(key, model, params, pool, labeled_mask, budget):
    mask, budget = check_acquire_args(key, pool, labeled_mask, budget)
    forward = lambda xb: models_lib.apply(model, params, xb)[0]
    checks.check_model_input(forward, pool)
    val = None
    if validation is not None:
      checks.check_model_input(forward, validation[0], "validation")
      pv = predict_checked(
        model,
        params,
        validation[0],
        batch_size,
        features=True,
        on="the validation set",
        purpose=_PURPOSE,
      )
      val = glister_lib.Validation(pv.logits, pv.features, jnp.asarray(validation[1]))
    pred = predict_checked(model, params, pool, batch_size, features=True, purpose=_PURPOSE)
    return glister_lib.glister_core(
      key,
      pred.logits,
      pred.features,
      budget,
      mask,
      labels=labels,
      validation=val,
      learning_rate=learning_rate,
      regularizer=regularizer,
      lam=lam,
      bias=bias,
    )

  return Strategy("glister", acquire)
