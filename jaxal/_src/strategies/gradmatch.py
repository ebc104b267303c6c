"""GradMatch-active: non-negative OMP on last-layer gradient embeddings."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxal._src import checks
from jaxal._src import glister as glister_lib
from jaxal._src import models as models_lib
from jaxal._src.embeddings import gradients
from jaxal._src.selection import omp as omp_lib
from jaxal._src.strategies.base import Strategy
from jaxal._src.strategies.base import check_acquire_args
from jaxal._src.strategies.base import predict_checked

_FINITE = "gradient embeddings need finite values"


def _check_valid(valid: Any) -> tuple[Any, jax.Array] | None:
  if valid is None:
    return None
  if not isinstance(valid, tuple) or len(valid) != 2:
    raise TypeError(f"valid must be a pair (x_val, y_val), got {type(valid).__name__}")
  x_val, y_val = valid
  if not hasattr(x_val, "shape") or not hasattr(y_val, "shape"):
    raise TypeError("valid must be a pair of arrays (x_val [M, ...], y_val [M])")
  checks.check_same_n("valid x_val", x_val, "valid y_val", y_val)
  if len(y_val.shape) != 1 or not jnp.issubdtype(y_val.dtype, jnp.integer):
    raise ValueError(
      f"valid y_val must be integer labels of shape [M], got dtype {y_val.dtype} and shape "
      f"{tuple(y_val.shape)}"
    )
  if y_val.shape[0] == 0:
    raise ValueError("valid must hold at least one point, got x_val and y_val of length 0")
  return x_val, jnp.asarray(y_val)


def gradmatch(
  *,
  lam: float = 0.0,
  valid: tuple[Any, Any] | None = None,
  weighted: bool = True,
  bias: bool = True,
  batch_size: int = 256,
) -> Strategy:
  r"""GradMatch-active: the points whose weighted gradients best match a target gradient.

  Each unlabeled point is embedded as the last-layer gradient at its
  hypothesised label, ``g_i = (p_i − onehot(ŷ_i)) ⊗ [z_i, 1]`` (kept factorised,
  never densified to ``[N, K·d]``). The target ``b`` is the mean of those
  gradients over the unlabeled pool, or, with ``valid=(x_val, y_val)``, the mean
  gradient of the validation set at its true labels. Non-negative orthogonal
  matching pursuit (:func:`jaxal.selection.omp`) then picks ``budget`` points
  approximately solving

  .. math::
    \min_{|S| = k,\; w \ge 0} \Big\|\sum_{i \in S} w_i g_i - b\Big\|^2 + \lambda \|w\|^2 .

  With ``weighted=False`` it is GradMatch's fixed-weight form (DISTIL's default
  ``select(budget, use_weights=False)``), :func:`jaxal.selection.fixed_weight_matching`:
  every weight is 1 and the greedy step minimises ``‖Σ_S g_i + g_j − k b‖``.

  DISTIL matches the *sum* of the target gradients: that multiplies ``b`` and
  the optimal ``w`` by the target's size and leaves the picks unchanged for the
  same ``lam`` (the objective is only multiplied by the size squared). The weights themselves are :func:`jaxal.selection.omp`'s
  second output: call it on :func:`jaxal.embeddings.closed_form_gradient_embedding`.

  Args:
    lam: ridge weight ``>= 0`` on the weights (DISTIL's ``omp_reg``).
    valid: optional ``(x_val, y_val)``: inputs ``[num_val, ...]`` and integer
      labels ``[num_val]``, whose mean gradient is the target.
    weighted: non-negative weights by OMP (True), or the fixed-weight greedy
      matching (False).
    bias: include the last layer's bias gradient.
    batch_size: forward batch size.

  The model must return ``(logits, features)``.

  Returns:
    A :class:`Strategy` named ``"gradmatch"``.

  Raises:
    TypeError: a non-number ``lam``, a ``valid`` that is not a pair of arrays.
    ValueError: ``lam < 0`` (or ``lam`` set with ``weighted=False``), mismatched or non-integer validation labels. At
      acquire time: a budget above the unlabeled count, non-finite logits or
      features, validation labels outside the model's classes.

  Examples:
    >>> import jax
    >>> from jaxal import datasets, loop, models, strategies
    >>> ds = datasets.load_digits()
    >>> x = ds.x_train[:60]
    >>> ts = loop.create_train_state(jax.random.key(0), models.MLP(num_classes=10), x)
    >>> model, params = models.from_train_state(ts)
    >>> mask = loop.init(jax.random.key(0), len(x), num_initial=10).labeled_mask
    >>> idx = strategies.gradmatch(lam=0.1).acquire(jax.random.key(1), model, params, x, mask, 5)
    >>> idx.shape, bool(mask[idx].any())
    ((5,), False)

  References:
    Killamsetty et al., GRAD-MATCH: Gradient Matching based Data Subset Selection
    for Efficient Deep Model Training, ICML 2021 (DISTIL's ``GradMatchActive``).
  """
  lam = omp_lib.check_lam(lam)
  weighted = checks.check_bool(weighted, "weighted")
  if not weighted and lam != 0.0:
    raise ValueError(f"lam={lam} is used only by the weighted (OMP) form: pass weighted=True")
  bias = checks.check_bool(bias, "bias")
  valid = _check_valid(valid)

  def acquire(key, model, params, pool, labeled_mask, budget):
    mask, budget = check_acquire_args(key, pool, labeled_mask, budget)
    forward = lambda xb: models_lib.apply(model, params, xb)[0]
    checks.check_model_input(forward, pool)
    pred = predict_checked(model, params, pool, batch_size, features=True, purpose=_FINITE)
    emb = gradients.closed_form_gradient_embedding(pred.logits, pred.features, bias=bias)
    target = None  # the mean over the unlabeled pool
    if valid is not None:
      checks.check_model_input(forward, valid[0], "valid x_val")
      pv = predict_checked(
        model,
        params,
        valid[0],
        batch_size,
        features=True,
        on="the validation set",
        purpose=_FINITE,
      )
      val = glister_lib.check_validation(
        (pv.logits, pv.features, valid[1]), pred.logits.shape[1], pred.features.shape[1]
      )
      emb_val = gradients.closed_form_at(val.logits, val.features, val.labels, bias)
      target = omp_lib.mean_unlabeled(emb_val, jnp.zeros((emb_val.num_points,), bool))
    if not weighted:
      return omp_lib.select_fixed_weight(emb, budget, mask, target=target)
    return omp_lib.select_omp(emb, budget, mask, lam=lam, target=target)[0]

  return Strategy("gradmatch", acquire)
