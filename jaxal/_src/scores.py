"""Per-example uncertainty scores.

Every score maps logits ``[num_points, num_classes]`` (or Monte Carlo samples
``[num_samples, num_points, num_classes]``) to ``[num_points]`` float32 where
**higher means more informative: pick first**.

Everything is computed from log-probabilities (``jax.nn.log_softmax``, which is
idempotent, so log-probabilities are accepted too) in float32, so saturated
logits (|logit| up to 1e4), ``-inf`` logits of masked classes and bfloat16
input never produce NaN or inf.

**Finiteness.** Every public score checks its input inside the same jitted
call (a fused reduction, no extra pass on the host): NaN or ``+inf`` logits,
or a row whose classes are all ``-inf``, raise a ``ValueError`` naming the
first offending row (``-inf`` alone is how masked classes are written and is
allowed). Float64 input beyond the float32 range (cast to inf with
``jax_enable_x64`` off) is reported as such. ``check_finite=False`` skips the
check for callers that checked already; the scores of bad rows are then
unspecified. Under a caller's ``jax.jit`` the values are unknown and the check
does not run.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxal._src import checks
from jaxal._src import executables


def _checked(core, x, name: str, check_finite: bool, original) -> jax.Array:
  """``core(x) -> (scores, ok)``: the scores, after the fused finiteness flag ``ok`` is checked."""
  out, ok = core(x)
  if check_finite:
    checks.check_finite_logits(x, name, ok=ok, original=original)
  return out


def _with_flag(fn):
  """``fn(logits) -> scores`` as a function also returning :func:`checks.logits_ok`, jitted.

  Named ``<fn>_checked``, so trace counts find it.
  """

  def flagged(x):
    return fn(x), checks.logits_ok(x)

  flagged.__name__ = flagged.__qualname__ = f"{fn.__name__}_checked"
  return executables.jit(flagged)


def log_probs(logits: ArrayLike) -> jax.Array:
  """Float32 log-softmax over the last axis; ``-inf`` stays ``-inf``.

  Args:
    logits: ``[..., num_classes]`` logits or log-probabilities (any leading axes).

  Returns:
    ``[..., num_classes]`` float32 log-probabilities, the shape of ``logits``.
  """
  return jax.nn.log_softmax(jnp.asarray(logits).astype(jnp.float32), axis=-1)


def _plogp(logp: jax.Array) -> jax.Array:
  """``p * log p`` with the convention ``0 log 0 = 0``."""
  return jnp.where(jnp.isneginf(logp), 0.0, jnp.exp(logp) * logp)


def entropy_from_logp(logp: jax.Array) -> jax.Array:
  """Entropy (nats) over the last axis of log-probabilities ``logp`` (traceable, no checks).

  Internal to jaxal (BatchBALD's conditional entropies use it): ``0 log 0 = 0``
  and the result is clamped at 0.
  """
  return jnp.maximum(-jnp.sum(_plogp(logp), axis=-1), 0.0)


def _top2_logp(logp: jax.Array) -> tuple[jax.Array, jax.Array]:
  top2 = jax.lax.top_k(logp, 2)[0]
  return top2[..., 0], top2[..., 1]


@executables.jit
def _least_confidence(logits):
  logp1, _ = _top2_logp(log_probs(logits))
  return -jnp.expm1(logp1)  # 1 - p_max, accurate when p_max is close to 1


_least_confidence_flagged = _with_flag(_least_confidence.__wrapped__)


def least_confidence(logits: ArrayLike, *, check_finite: bool = True) -> jax.Array:
  r"""Least confidence, :math:`1 - \max_c p(c \mid x)`.

  Args:
    logits: ``[num_points, num_classes]`` logits or log-probabilities.
    check_finite: check for NaN or ``+inf`` logits (fused into the jitted call).

  Returns:
    ``[num_points]`` float32 scores in ``[0, 1 - 1/K]``; higher = more uncertain.

  Raises:
    ValueError: NaN or ``+inf`` entries, or a row of all ``-inf`` (with ``check_finite``,
      naming the first such row), or a wrong shape.
    TypeError: a non-float array, or a list that is not a rectangular array of numbers.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxal import scores
    >>> scores.least_confidence(jnp.array([[0.0, 0.0], [2.0, 0.0]])).round(3)
    Array([0.5  , 0.119], dtype=float32)

  References:
    Lewis & Gale, A sequential algorithm for training text classifiers, SIGIR 1994.
  """
  x = checks.check_logits(logits)
  return _checked(_least_confidence_flagged, x, "logits", check_finite, logits)


@executables.jit
def _margin(logits):
  logp1, logp2 = _top2_logp(log_probs(logits))
  return 1.0 - (jnp.exp(logp1) - jnp.exp(logp2))


_margin_flagged = _with_flag(_margin.__wrapped__)


def margin(logits: ArrayLike, *, check_finite: bool = True) -> jax.Array:
  r"""Margin score, :math:`1 - (p_{(1)} - p_{(2)})` for the two most probable classes.

  Args:
    logits: ``[num_points, num_classes]`` logits or log-probabilities.
    check_finite: check for NaN or ``+inf`` logits (fused into the jitted call).

  Returns:
    ``[num_points]`` float32 scores in ``[0, 1]``; higher = smaller margin.

  Raises:
    ValueError: NaN or ``+inf`` entries, or a row of all ``-inf`` (with ``check_finite``,
      naming the first such row), or a wrong shape.
    TypeError: a non-float array, or a list that is not a rectangular array of numbers.

  References:
    Scheffer, Decomain & Wrobel, Active hidden Markov models for information
    extraction, IDA 2001.
  """
  x = checks.check_logits(logits)
  return _checked(_margin_flagged, x, "logits", check_finite, logits)


@executables.jit
def _ratio(logits):
  logp1, logp2 = _top2_logp(log_probs(logits))
  return jnp.exp(logp2 - logp1)


_ratio_flagged = _with_flag(_ratio.__wrapped__)


def ratio(logits: ArrayLike, *, check_finite: bool = True) -> jax.Array:
  r"""Ratio of confidences, :math:`p_{(2)} / p_{(1)}`.

  Computed as ``exp(log p2 - log p1)``, so it stays exact when both are tiny.

  Args:
    logits: ``[num_points, num_classes]`` logits or log-probabilities.
    check_finite: check for NaN or ``+inf`` logits (fused into the jitted call).

  Returns:
    ``[num_points]`` float32 scores in ``[0, 1]``; higher = more uncertain.

  Raises:
    ValueError: NaN or ``+inf`` entries, or a row of all ``-inf`` (with ``check_finite``,
      naming the first such row), or a wrong shape.
    TypeError: a non-float array, or a list that is not a rectangular array of numbers.
  """
  x = checks.check_logits(logits)
  return _checked(_ratio_flagged, x, "logits", check_finite, logits)


@executables.jit
def _entropy(logits):
  return entropy_from_logp(log_probs(logits))


_entropy_flagged = _with_flag(_entropy.__wrapped__)


def entropy(logits: ArrayLike, *, check_finite: bool = True) -> jax.Array:
  r"""Predictive entropy, :math:`-\sum_c p_c \log p_c` (nats), with ``0 log 0 = 0``.

  Args:
    logits: ``[num_points, num_classes]`` logits or log-probabilities.
    check_finite: check for NaN or ``+inf`` logits (fused into the jitted call).

  Returns:
    ``[num_points]`` float32 scores in ``[0, log K]``; higher = more uncertain.

  Raises:
    ValueError: NaN or ``+inf`` entries, or a row of all ``-inf`` (with ``check_finite``,
      naming the first such row), or a wrong shape.
    TypeError: a non-float array, or a list that is not a rectangular array of numbers.

  References:
    Shannon 1948; Settles, Active Learning Literature Survey, 2009.
  """
  x = checks.check_logits(logits)
  return _checked(_entropy_flagged, x, "logits", check_finite, logits)


@executables.jit
def _variation_ratio(mc_logits):
  num_samples, _, num_classes = mc_logits.shape
  votes = jax.nn.one_hot(jnp.argmax(log_probs(mc_logits), axis=-1), num_classes, dtype=jnp.int32)
  mode_count = jnp.max(jnp.sum(votes, axis=0), axis=-1)
  return 1.0 - mode_count.astype(jnp.float32) / num_samples


_variation_ratio_flagged = _with_flag(_variation_ratio.__wrapped__)


def variation_ratio(mc_logits: ArrayLike, *, check_finite: bool = True) -> jax.Array:
  r"""Variation ratio over MC samples, :math:`1 - f_m / S`.

  ``f_m`` is how many of the ``S`` stochastic forward passes vote for the modal
  class (each pass votes for its argmax).

  Args:
    mc_logits: ``[num_samples, num_points, num_classes]`` MC-dropout logits.
    check_finite: check for NaN or ``+inf`` logits (fused into the jitted call).

  Returns:
    ``[num_points]`` float32 scores in ``[0, 1 - 1/S]``.

  Raises:
    ValueError: NaN or ``+inf`` entries, or a row of all ``-inf`` (with ``check_finite``,
      naming the first such row), or a wrong shape.
    TypeError: a non-float array, or a list that is not a rectangular array of numbers.

  References:
    Freeman, Elementary Applied Statistics, 1965; Gal, Islam & Ghahramani, Deep
    Bayesian Active Learning with Image Data, ICML 2017.
  """
  x = checks.check_mc_logits(mc_logits, "mc_logits", min_samples=2)
  return _checked(_variation_ratio_flagged, x, "mc_logits", check_finite, mc_logits)


@executables.jit
def _mean_std(mc_logits):
  p = jnp.exp(log_probs(mc_logits))
  return jnp.mean(jnp.std(p, axis=0), axis=-1)


_mean_std_flagged = _with_flag(_mean_std.__wrapped__)


def mean_std(mc_logits: ArrayLike, *, check_finite: bool = True) -> jax.Array:
  r"""Mean over classes of the standard deviation of :math:`p_c` across MC samples.

  Args:
    mc_logits: ``[num_samples, num_points, num_classes]`` MC-dropout logits.
    check_finite: check for NaN or ``+inf`` logits (fused into the jitted call).

  Returns:
    ``[num_points]`` float32 scores, higher = more disagreement between samples.

  Raises:
    ValueError: NaN or ``+inf`` entries, or a row of all ``-inf`` (with ``check_finite``,
      naming the first such row), or a wrong shape.
    TypeError: a non-float array, or a list that is not a rectangular array of numbers.

  References:
    Kampffmeyer, Salberg & Jenssen, Semantic segmentation of small objects and
    modeling of uncertainty in urban remote sensing images, CVPR-W 2016.
  """
  x = checks.check_mc_logits(mc_logits, "mc_logits", min_samples=2)
  return _checked(_mean_std_flagged, x, "mc_logits", check_finite, mc_logits)


def mean_log_probs(mc_logits: ArrayLike) -> jax.Array:
  """``log mean_s p_s`` over the sample axis, computed by logsumexp: ``[N, K]``.

  Args:
    mc_logits: ``[num_samples, num_points, num_classes]`` MC-dropout logits or
      log-probabilities.

  Returns:
    ``[num_points, num_classes]`` float32 log-probabilities of the mean predictive.
  """
  logp = log_probs(mc_logits)
  return jax.nn.logsumexp(logp, axis=0) - jnp.log(logp.shape[0]).astype(jnp.float32)


_mean_log_probs_flagged = _with_flag(mean_log_probs)  # the mean predictive and its flag


@executables.jit
def _bald(mc_logits):
  logp = log_probs(mc_logits)
  predictive = entropy_from_logp(mean_log_probs(logp))
  expected = jnp.mean(entropy_from_logp(logp), axis=0)
  return jnp.maximum(predictive - expected, 0.0)


_bald_flagged = _with_flag(_bald.__wrapped__)


def bald(mc_logits: ArrayLike, *, check_finite: bool = True) -> jax.Array:
  r"""BALD: mutual information between the prediction and the model parameters.

  .. math::
    I[y; \theta \mid x] = H\big[\tfrac1S \textstyle\sum_s p_s\big] - \tfrac1S \textstyle\sum_s H[p_s]

  The mean predictive is formed in log space (logsumexp), and the result is
  clamped at 0 (it is non-negative mathematically; rounding can give -1e-8).

  Args:
    mc_logits: ``[num_samples, num_points, num_classes]`` MC-dropout logits or
      log-probabilities, ``num_samples >= 2``.
    check_finite: check for NaN or ``+inf`` logits (fused into the jitted call).

  Returns:
    ``[num_points]`` float32 scores in ``[0, log K]``.

  Raises:
    ValueError: NaN or ``+inf`` entries, or a row of all ``-inf`` (with ``check_finite``,
      naming the first such row), or a wrong shape.
    TypeError: a non-float array, or a list that is not a rectangular array of numbers.

  References:
    Houlsby, Huszár, Ghahramani & Lengyel, Bayesian Active Learning for
    Classification and Preference Learning, 2011; Gal, Islam & Ghahramani 2017.
  """
  x = checks.check_mc_logits(mc_logits, "mc_logits", min_samples=2)
  return _checked(_bald_flagged, x, "mc_logits", check_finite, mc_logits)


def mc_mean(score_fn):
  """Lifts a single-pass score to MC samples by scoring the mean predictive.

  ``mc_mean(entropy)(mc_logits)`` is the entropy of :math:`\\frac1S\\sum_s p_s`
  (the "MC-dropout" variants of least confidence, margin, ratio and entropy).

  Args:
    score_fn: a score of ``[num_points, num_classes]`` logits or log-probabilities, such as
      :func:`entropy`, returning ``[num_points]`` and taking ``check_finite``.

  Returns:
    The score of ``[num_samples, num_points, num_classes]`` MC logits, ``[num_points]``: the
    checked MC logits' mean predictive (:func:`mean_log_probs`) scored by ``score_fn``; it
    takes ``check_finite`` (default True) as the other scores do.
  """

  def fn(mc_logits: ArrayLike, *, check_finite: bool = True) -> jax.Array:
    x = checks.check_mc_logits(mc_logits, "mc_logits")
    mean = _checked(_mean_log_probs_flagged, x, "mc_logits", check_finite, mc_logits)
    return score_fn(mean, check_finite=False)

  fn.__name__ = f"mc_{score_fn.__name__}"
  fn.__doc__ = f"``{score_fn.__name__}`` of the MC-averaged predictive ``[S, N, K] -> [N]``."
  return fn
