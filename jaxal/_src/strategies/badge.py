"""BADGE: k-means++ seeding on last-layer gradient embeddings."""

from __future__ import annotations

from collections.abc import Sequence

from jaxal._src import checks
from jaxal._src import executables
from jaxal._src import models as models_lib
from jaxal._src import sharding
from jaxal._src.embeddings import gradients
from jaxal._src.selection import kmeans_pp
from jaxal._src.strategies.base import Strategy
from jaxal._src.strategies.base import check_acquire_args


def badge(
  *,
  bias: bool = True,
  batch_size: int = 256,
  exact: bool = False,
  head: str | Sequence[str] | None = None,
  first: str = "max_norm",
) -> Strategy:
  """BADGE: uncertain (large) and diverse (spread-out) gradient embeddings.

  Each unlabeled point is embedded as the gradient of the loss at the model's
  own prediction w.r.t. the last layer's parameters; ``budget`` points are then
  chosen by k-means++ seeding (:func:`jaxal.selection.kmeans_pp`) in that space.

  By default the embedding is the closed form ``(p − onehot(ŷ)) ⊗ z`` of a
  Dense head, kept factorised (``O(N (K + d))`` memory: the ``N × K·d`` matrix
  is never built), from one forward pass that returns ``(logits, features)``.
  With ``exact=True`` it is the exact ``vmap(grad)`` embedding of
  :func:`jaxal.embeddings.gradient_embedding` for the layer at ``head``: needed
  when the head is not a plain Dense, at the cost of a dense ``[N, D]`` matrix.

  Args:
    bias: include the bias gradient in the embedding.
    batch_size: forward batch size.
    exact: use the exact per-example gradients instead of the closed form.
    head: with ``exact=True``, the parameter path of the layer (default: the
      model's ``head``, else the final Dense).
    first: first centre, ``"max_norm"`` (as in the BADGE code) or ``"random"``.

  References:
    Ash et al., Deep Batch Active Learning by Diverse, Uncertain Gradient Lower
    Bounds (BADGE), ICLR 2020.
  """
  bias = checks.check_bool(bias, "bias")
  exact = checks.check_bool(exact, "exact")
  checks.check_one_of(first, kmeans_pp.FIRST, "first")
  if head is not None and not exact:
    raise ValueError("head is used only by the exact embedding: pass exact=True with head=")

  def acquire(key, model, params, pool, labeled_mask, budget):
    mask, budget = check_acquire_args(key, pool, labeled_mask, budget)
    if exact:
      emb = gradients.gradient_embedding(
        model, params, pool, head=head, bias=bias, batch_size=batch_size
      )
      return kmeans_pp.select_kmeans_pp(key, emb, budget, mask, first=first)
    x, size = models_lib.check_pool(pool, batch_size)
    x, mask = sharding.single_device((x, mask))
    if sharding.pool_sharding((x, mask), "pool and labeled_mask") is None:
      # Forward, embedding and k-means++ in one compiled program: one trace, one compile (or
      # persistent-cache read) per shape instead of three.
      chunk = min(kmeans_pp.CHUNK_SIZE, x.shape[0])
      idx, logits, features, ok_l, ok_f = _badge_core(
        key, model, params, x, mask, budget, size, bias, first, chunk
      )
      features_ok = ok_f
    else:  # a sharded pool: the forward under GSPMD, then the sharded k-means++
      (logits, features), ok_l, features_ok = models_lib.predict_flagged(
        model, params, x, batch_size=size
      )
      idx = None
    # Non-finite outputs gave unspecified picks: they are never returned.
    checks.check_finite_logits(logits, "logits of the model on the pool", ok=ok_l)
    checks.check_finite(
      features, "features of the model on the pool", purpose=gradients.FINITE, ok=features_ok
    )
    if idx is not None:
      return idx
    # Finite logits and features make a finite embedding: no second check of it.
    emb = gradients.closed_form_core(logits, features, bias)
    return kmeans_pp.select_kmeans_pp(key, emb, budget, mask, first=first, check_finite=False)

  return Strategy("badge", acquire)


@executables.jit(
  static_argnames=("model", "k", "batch_size", "bias", "first", "chunk_size"),
  compiler_options=executables.ELEMENTAL_EMITTERS,
)
def _badge_core(key, model, params, pool, labeled_mask, k, batch_size, bias, first, chunk_size):
  """BADGE on an unsharded, checked pool: ``(picks [k], logits, features, logits_ok, features_ok)``.

  The closed-form embedding's picks, with the model's outputs and their finiteness flags for
  the caller's checks (made after the call: picks from non-finite outputs are unspecified).
  """
  logits, features, ok_l, ok_f = models_lib.predict_pool_core(model, params, pool, batch_size)
  emb = gradients.closed_form_core(logits, features, bias)
  idx = kmeans_pp.kmeans_pp_core(key, emb, k, labeled_mask, first, chunk_size)
  return idx, logits, features, ok_l, ok_f
