"""Strategies: the one layer that knows how scores, embeddings and selection combine.

Each public ``jaxal.strategies.X`` is defined in one module of this package:

- ``base``: :class:`Strategy`, ``AcquireFn``, :func:`score_strategy`,
  ``check_acquire_args`` (the common acquire preamble);
- ``registry``: ``REGISTRY``, :func:`get`, :func:`names` (the names of
  ``jaxal run --strategies``);
- ``random_sampling``: :func:`random`;
- ``uncertainty_sampling``: :func:`least_confidence`, :func:`margin`,
  :func:`entropy`, :func:`ratio`, :func:`mc_least_confidence`,
  :func:`mc_margin`, :func:`mc_entropy`, :func:`mc_ratio`,
  :func:`variation_ratio`, :func:`mean_std`;
- ``bayesian``: :func:`bald`, :func:`batchbald`, :func:`power`,
  :func:`softmax`, :func:`softrank`;
- ``badge``: :func:`badge`;
- ``bait_sampling``: :func:`bait` (BAIT, the Fisher trace objective);
- ``diversity``: :func:`coreset`, :func:`kmeans_sampling`,
  :func:`submodular`, :func:`fass`;
- ``glister_active``: :func:`glister` (GLISTER-active);
- ``adversarial_sampling``: :func:`deepfool`, :func:`bim`;
- ``gradmatch``: :func:`gradmatch` (GradMatch-active);
- ``partitioned``: :func:`partitioned` (an inner strategy on random parts of the pool).
"""
