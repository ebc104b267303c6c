"""Diversity and submodular strategies: Coreset, k-means sampling, submodular selection, FASS.

Each runs one deterministic forward pass over the pool for the penultimate
features (:func:`jaxal.models.predict` with ``features=True``; the model must
return ``(logits, features)``) and selects on them.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from jaxal._src import cached_ops
from jaxal._src import checks
from jaxal._src import models as models_lib
from jaxal._src import scores
from jaxal._src.selection import k_center
from jaxal._src.selection import kmeans
from jaxal._src.selection import top_k
from jaxal._src.strategies.base import Strategy
from jaxal._src.strategies.base import check_acquire_args
from jaxal._src.strategies.base import predict_checked
from jaxal._src.submodular import functions as submodular_lib
from jaxal._src.submodular import kernels as submodular_kernels
from jaxal._src.submodular import maximizers as submodular_maximizers

_FEATURES_PURPOSE = "selection needs finite points"

UNCERTAINTY: dict[str, Callable[[jax.Array], jax.Array]] = {
  "entropy": scores.entropy,
  "least_confidence": scores.least_confidence,
  "margin": scores.margin,
  "ratio": scores.ratio,
}


def _predict(model, params, pool, batch_size, *, logits=False) -> models_lib.Predictions:
  # Features checked finite (and logits, when the strategy scores them) in the forward's own
  # compiled call: the selection that follows skips its own check.
  return predict_checked(
    model, params, pool, batch_size, features=True, logits=logits, purpose=_FEATURES_PURPOSE
  )


def coreset(*, batch_size: int = 256, chunk_size: int = 1024) -> Strategy:
  """Coreset: k-center greedy on the penultimate features, from the labeled set.

  Picks, ``budget`` times, the unlabeled point farthest from every labeled or
  already picked point (:func:`jaxal.selection.k_center_greedy`); with no
  labeled point yet, the first pick is random (from the acquire key).

  References:
    Sener & Savarese, Active Learning for Convolutional Neural Networks: A
    Core-Set Approach, ICLR 2018.

  Args:
    batch_size: forward batch size.
    chunk_size: points per distance chunk of k-center greedy.
  """
  chunk_size = checks.check_positive_int(chunk_size, "chunk_size")

  def acquire(key, model, params, pool, labeled_mask, budget):
    mask, budget = check_acquire_args(key, pool, labeled_mask, budget)
    feats = _predict(model, params, pool, batch_size).features
    return k_center.select_k_center(
      key, feats, budget, mask, chunk_size=chunk_size, check_finite=False
    )

  return Strategy("coreset", acquire)


def kmeans_sampling(
  *, n_init: int = 3, max_iter: int = 100, tol: float = 1e-4, batch_size: int = 256
) -> Strategy:
  """k-means sampling: ``budget`` clusters of the unlabeled features, the point nearest each centre.

  See :func:`jaxal.selection.kmeans_sampling`; as DISTIL's ``KMeansSampling``.

  Args:
    n_init: k-means runs (the best inertia is kept), ``>= 1``.
    max_iter: Lloyd iterations per run, ``>= 1``.
    tol: convergence tolerance, ``>= 0``.
    batch_size: forward batch size.
  """
  n_init, max_iter, tol, _, _ = kmeans.check_kmeans_args(n_init, max_iter, tol, 1, 1)

  def acquire(key, model, params, pool, labeled_mask, budget):
    mask, budget = check_acquire_args(key, pool, labeled_mask, budget)
    feats = _predict(model, params, pool, batch_size).features
    return kmeans.select_kmeans_sampling(
      key, feats, budget, mask, n_init=n_init, max_iter=max_iter, tol=tol, check_finite=False
    )

  return Strategy("kmeans_sampling", acquire)


def _submodular_options(
  function, metric, gamma, optimizer, lam, alpha, concave, num_neighbors, epsilon
) -> dict:
  """The submodular options of :func:`submodular` / :func:`fass`, validated, as a dict."""
  opts = dict(
    function=function, metric=metric, gamma=gamma, optimizer=optimizer, lam=lam, alpha=alpha,
    concave=concave, num_neighbors=num_neighbors, epsilon=epsilon,
  )  # fmt: skip
  _check_submodular_options(**opts)
  return opts


def _check_submodular_options(
  function, metric, gamma, optimizer, lam, alpha, concave, num_neighbors, epsilon
):
  checks.check_one_of(function, submodular_lib.FUNCTIONS, "submodular function")
  submodular_kernels.check_metric(metric, gamma)
  checks.check_one_of(optimizer, submodular_maximizers.OPTIMIZERS, "optimizer")
  checks.check_float(lam, "lam", low=0.0, high=1.0)
  checks.check_float(alpha, "alpha", low=0.0, high=1.0, low_open=True)
  checks.check_one_of(concave, submodular_lib.CONCAVE, "concave function")
  if num_neighbors is not None:
    checks.check_positive_int(num_neighbors, "num_neighbors")
  checks.check_float(epsilon, "epsilon", low=0.0, high=1.0, low_open=True, high_open=True)


def _select_submodular(
  key,
  feats,
  ground_mask,
  budget,
  *,
  function,
  metric,
  gamma,
  optimizer,
  lam,
  alpha,
  concave,
  num_neighbors,
  epsilon,
):
  """Maximise ``function`` over the points of ``feats`` where ``ground_mask`` holds."""
  if function == "feature_based":
    fn = submodular_lib.feature_based(
      feats, concave=concave, ground_mask=ground_mask, check_finite=False
    )
  else:
    if num_neighbors is None:
      kernel = submodular_kernels.similarity_kernel(
        feats, metric=metric, gamma=gamma, check_finite=False
      )
    else:
      kernel = submodular_kernels.knn_kernel(
        feats, min(num_neighbors, feats.shape[0]), metric=metric, gamma=gamma, check_finite=False
      )
    # Features checked finite by the forward: their kernel is finite (every finite input is).
    fn = submodular_lib.make(
      function, kernel=kernel, ground_mask=ground_mask, lam=lam, alpha=alpha, check_finite=False
    )
  return submodular_maximizers.maximize(
    fn, budget, optimizer=optimizer, key=key, epsilon=epsilon
  ).indices


def submodular(
  function: str = "facility_location",
  *,
  metric: str = "cosine",
  gamma: float | None = None,
  optimizer: str = "greedy",
  lam: float = 1.0,
  alpha: float = 0.1,
  concave: str = "sqrt",
  num_neighbors: int | None = None,
  epsilon: float = 0.01,
  batch_size: int = 256,
) -> Strategy:
  """Submodular selection over the whole unlabeled pool, on the penultimate features.

  The ground set is the unlabeled pool; the kernel is built over the pool's
  features (dense ``N × N``, or ``num_neighbors`` per row for large pools) and
  ``budget`` points are picked by ``optimizer`` (``"greedy"``, ``"lazy"`` or
  ``"stochastic"``). The same shapes serve every round (the labeled set is a
  mask), so one compile serves a whole run.

  Args:
    function: one of :data:`jaxal.submodular.FUNCTIONS`.
    metric: the kernel's similarity, ``"cosine"`` or ``"rbf"``
      (:func:`jaxal.submodular.similarity_kernel`).
    gamma: the RBF bandwidth (``metric="rbf"`` only), or None for the default.
    optimizer: the maximiser.
    lam: graph cut's λ.
    alpha: saturated coverage's α.
    concave: feature based's concave function ``g``, one of :data:`jaxal.submodular.CONCAVE`.
    num_neighbors: keep only this many similarities per row (sparse kernel).
    epsilon: stochastic greedy's ε.
    batch_size: forward batch size.

  References:
    Wei, Iyer & Bilmes, Submodularity in Data Subset Selection and Active
    Learning, ICML 2015; DISTIL's SubmodularSampling.
  """
  opts = _submodular_options(
    function, metric, gamma, optimizer, lam, alpha, concave, num_neighbors, epsilon
  )

  def acquire(key, model, params, pool, labeled_mask, budget):
    mask, budget = check_acquire_args(key, pool, labeled_mask, budget)
    feats = _predict(model, params, pool, batch_size).features
    return _select_submodular(key, feats, cached_ops.invert(mask), budget, **opts)

  return Strategy("submodular", acquire)


def fass(
  uncertainty: str = "entropy",
  function: str = "facility_location",
  top_n: int = 5,
  *,
  metric: str = "cosine",
  gamma: float | None = None,
  optimizer: str = "greedy",
  lam: float = 1.0,
  alpha: float = 0.1,
  concave: str = "sqrt",
  num_neighbors: int | None = None,
  epsilon: float = 0.01,
  batch_size: int = 256,
) -> Strategy:
  """FASS: filter the ``top_n × budget`` most uncertain points, then select ``budget`` submodularly.

  One forward pass gives logits and penultimate features. The
  ``min(top_n * budget, unlabeled)`` unlabeled points of highest
  ``uncertainty`` score form the ground set; ``budget`` of them are picked by
  maximising ``function`` on their features (kernel over the filtered points
  only), as in Wei et al. (2015) and DISTIL's ``FASS``.

  Args:
    uncertainty: ``"entropy"``, ``"least_confidence"``, ``"margin"`` or ``"ratio"``.
    function: one of :data:`jaxal.submodular.FUNCTIONS`.
    top_n: size of the filtered set in budgets, ``>= 1``.
    metric: the kernel's similarity, as in :func:`submodular`.
    gamma: the RBF bandwidth, as in :func:`submodular`.
    optimizer: the maximiser, as in :func:`submodular`.
    lam: graph cut's λ, as in :func:`submodular`.
    alpha: saturated coverage's α, as in :func:`submodular`.
    concave: feature based's concave function, as in :func:`submodular`.
    num_neighbors: similarities kept per row (sparse kernel), as in :func:`submodular`.
    epsilon: stochastic greedy's ε, as in :func:`submodular`.
    batch_size: forward batch size, as in :func:`submodular`.

  References:
    Wei, Iyer & Bilmes, Submodularity in Data Subset Selection and Active
    Learning, ICML 2015.
  """
  checks.check_one_of(uncertainty, UNCERTAINTY, "uncertainty")
  top_n = checks.check_positive_int(top_n, "top_n")
  opts = _submodular_options(
    function, metric, gamma, optimizer, lam, alpha, concave, num_neighbors, epsilon
  )
  score_fn = UNCERTAINTY[uncertainty]

  def acquire(key, model, params, pool, labeled_mask, budget):
    mask, budget = check_acquire_args(key, pool, labeled_mask, budget)
    preds = _predict(model, params, pool, batch_size, logits=True)
    unlabeled = mask.shape[0] - cached_ops.count_int(mask)
    filtered = top_k.select_top_k(score_fn(preds.logits), min(top_n * budget, unlabeled), mask)
    picked = _select_submodular(
      key, cached_ops.take(preds.features, filtered), None, budget, **opts
    )
    return cached_ops.take(filtered, picked)

  return Strategy("fass", acquire)
