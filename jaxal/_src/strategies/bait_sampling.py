"""BAIT as a strategy: the Fisher trace objective on the model's last layer."""

from __future__ import annotations

import jax

from jaxal._src import checks
from jaxal._src import models as models_lib
from jaxal._src.embeddings import gradients
from jaxal._src.selection import bait as bait_lib
from jaxal._src.strategies.base import Strategy
from jaxal._src.strategies.base import check_acquire_args


def bait(
  *,
  lam: float = 1.0,
  bias: bool = False,
  batch_size: int = 256,
  memory_limit: int = bait_lib.DEFAULT_MEMORY_LIMIT,
) -> Strategy:
  """BAIT: the batch that most lowers the trace of the inverse Fisher times the pool's Fisher.

  One forward pass gives the pool's logits ``[N, K]`` and penultimate features ``[N, d]`` (as
  BADGE's closed form does); :func:`jaxal.selection.bait` then picks ``2 · budget`` points
  greedily on ``tr((M_L + M_S + λI)⁻¹ F_U)`` and prunes them back to ``budget``, with the
  per-example Fisher of a Dense head under softmax cross-entropy, ``(diag p − p pᵀ) ⊗ h hᵀ``,
  kept factorised. The ``[K·d, K·d]`` matrices it needs are checked against ``memory_limit``
  before any selection work. Deterministic: the key is not used.

  Args:
    lam: the ridge ``λ > 0`` (the authors use 1, and 0.01 on CIFAR-10).
    bias: include the bias in the last layer's Fisher (the authors' code leaves it out).
    batch_size: forward batch size.
    memory_limit: the most bytes the dense ``[K·d, K·d]`` float32 matrices may take
      (default 2 GiB); a larger need is a ``ValueError`` that says how to reduce it.

  Returns:
    A :class:`Strategy` named ``"bait"``.

  Raises:
    TypeError: a non-float ``lam``, non-int ``batch_size`` or ``memory_limit``, non-bool
      ``bias``.
    ValueError: ``lam <= 0``; at acquisition, a budget larger than the unlabeled count,
      non-finite logits or features, or dense matrices larger than ``memory_limit``.

  Example:
    >>> import jax
    >>> from jaxal import models, networks, strategies
    >>> x = jax.random.normal(jax.random.key(0), (40, 8))   # pool [N, ...]
    >>> module = networks.MLP(num_classes=3, hidden=(8,))
    >>> params = models.init_params(jax.random.key(1), module, x)
    >>> idx = strategies.bait().acquire(
    ...     jax.random.key(2), models.from_linen(module), params, x, None, 5)
    >>> idx.shape, idx.dtype
    ((5,), dtype('int32'))

  References:
    Ash, Goel, Krishnamurthy & Kakade, Gone Fishing: Neural Active Learning with Fisher
    Embeddings, NeurIPS 2021.
  """
  lam = checks.check_float(lam, "lam", low=0.0, low_open=True)
  bias = checks.check_bool(bias, "bias")
  batch_size = checks.check_positive_int(batch_size, "batch_size")
  memory_limit = checks.check_positive_int(memory_limit, "memory_limit")

  def acquire(key, model, params, pool, labeled_mask, budget):
    mask, budget = check_acquire_args(key, pool, labeled_mask, budget)
    # The memory check from the output shapes alone (jax.eval_shape), before any forward pass.
    forward = lambda xb: models_lib.apply(model, params, xb)
    checks.check_model_input(lambda xb: forward(xb)[0], pool)
    example = jax.ShapeDtypeStruct((1, *pool.shape[1:]), pool.dtype)
    logits_shape, features_shape = jax.eval_shape(forward, example)
    if features_shape is None:
      raise ValueError(
        "BAIT needs the model's penultimate features: the model returns logits only; "
        "return (logits, features) from its apply function"
      )
    bait_lib.check_memory(logits_shape.shape[-1], features_shape.shape[-1], memory_limit, bias)
    (logits, features), ok_l, ok_f = models_lib.predict_flagged(
      model, params, pool, batch_size=batch_size
    )
    checks.check_finite_logits(logits, "logits of the model on the pool", ok=ok_l)
    checks.check_finite(
      features, "features of the model on the pool", purpose=gradients.FINITE, ok=ok_f
    )
    return bait_lib.select_bait(logits, features, budget, mask, lam, bias, memory_limit)

  return Strategy("bait", acquire)
