"""EPIG: the expected predictive information gain about target inputs, from posterior samples."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxal._src import checks
from jaxal._src import executables
from jaxal._src import scores


def _xlogx(p: jax.Array) -> jax.Array:
  return jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)


@executables.jit(static_argnames=("chunk_size",))
def epig_core(logits_pool: jax.Array, logits_target: jax.Array, chunk_size: int) -> jax.Array:
  """:func:`epig` on validated arguments: ``[S, N, K]``, ``[S, M, K]`` -> ``[N]``."""
  probs_pool = jnp.exp(scores.log_probs(logits_pool))  # [S, N, K]
  probs_target = jnp.exp(scores.log_probs(logits_target))  # [S, M, K]
  s, m, k = probs_target.shape
  num_chunks = -(-m // chunk_size)
  pad = num_chunks * chunk_size - m
  probs_target = jnp.pad(probs_target, ((0, 0), (0, pad), (0, 0)))
  valid = jnp.arange(num_chunks * chunk_size) < m
  chunks = probs_target.reshape(s, num_chunks, chunk_size, k).transpose(1, 0, 2, 3)
  valid = valid.reshape(num_chunks, chunk_size)
  mean_pool = jnp.mean(probs_pool, axis=0)  # [N, K]
  h_pool = -jnp.sum(_xlogx(mean_pool), axis=-1)  # [N]

  def one_chunk(total, args):
    q, ok = args  # [S, C, K], [C]
    joint = jnp.einsum("snk,scl->nckl", probs_pool, q) / s  # p(y, y*) [N, C, K, K]
    h_joint = -jnp.sum(_xlogx(joint), axis=(-2, -1))  # [N, C]
    h_target = -jnp.sum(_xlogx(jnp.mean(q, axis=0)), axis=-1)  # [C]
    info = jnp.maximum(h_pool[:, None] + h_target[None, :] - h_joint, 0.0)  # [N, C]
    return total + jnp.sum(jnp.where(ok[None, :], info, 0.0), axis=1), None

  total, _ = jax.lax.scan(one_chunk, jnp.zeros_like(h_pool), (chunks, valid))
  return total / m


def epig(logits_pool: ArrayLike, logits_target: ArrayLike, *, chunk_size: int = 32) -> jax.Array:
  r"""Expected predictive information gain of each pool point about a target distribution.

  With posterior samples :math:`\theta_s` (MC-dropout masks or ensemble members, the same
  sample ``s`` for the pool and the target), the joint predictive of a pool label :math:`y`
  and a target label :math:`y_*` is
  :math:`p(y, y_*) = \frac1S \sum_s p_s(y \mid x)\, p_s(y_* \mid x_*)`, and

  .. math::
    \mathrm{EPIG}(x) = \frac1M \sum_{m=1}^{M} I[y; y_* \mid x, x_*^{(m)}]
      = \frac1M \sum_m \Big( H[y] + H[y_*] - H[y, y_*] \Big).

  The target set is processed ``chunk_size`` inputs at a time (a ``lax.scan``), so the
  largest intermediate is ``[N, chunk_size, K, K]`` whatever ``M``; the result does not
  depend on ``chunk_size``. Each term is clamped at 0.

  Args:
    logits_pool: ``[num_samples, num_points, num_classes]`` logits or log-probabilities of
      the pool under ``S >= 2`` posterior samples.
    logits_target: ``[num_samples, num_targets, num_classes]`` the same for the target
      inputs, sample ``s`` from the same network as ``logits_pool[s]``.
    chunk_size: target inputs per step (a positive int; it fixes a shape).

  Returns:
    ``[num_points]`` float32 scores, non-negative, at most ``log K``.

  Raises:
    TypeError: a non-float array or a non-int ``chunk_size``.
    ValueError: wrong ranks, fewer than 2 samples, or sample or class counts that differ.

  Example:
    >>> import jax
    >>> from jaxal import bayes
    >>> pool = jax.random.normal(jax.random.key(0), (8, 5, 3))  # [S, N, K]
    >>> target = jax.random.normal(jax.random.key(1), (8, 7, 3))  # [S, M, K]
    >>> bayes.epig(pool, target).shape
    (5,)

  References:
    Bickford Smith, Kirsch, Farquhar, Gal, Foster & Rainforth, Prediction-Oriented
    Bayesian Active Learning, AISTATS 2023.
  """
  pool = checks.check_mc_logits(logits_pool, "logits_pool", min_samples=2)
  target = checks.check_mc_logits(logits_target, "logits_target", min_samples=2)
  if pool.shape[0] != target.shape[0] or pool.shape[2] != target.shape[2]:
    raise ValueError(
      "logits_pool and logits_target must have the same number of samples (axis 0) and of "
      f"classes (axis 2), got shapes {pool.shape} and {target.shape}"
    )
  chunk_size = checks.check_positive_int(chunk_size, "chunk_size")
  return epig_core(pool, target, min(chunk_size, target.shape[1]))
