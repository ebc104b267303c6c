"""Scores against NumPy references written from their definitions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxal import scores

RTOL, ATOL = 1e-5, 1e-6


def np_softmax(logits):
  logits = np.asarray(logits, np.float64)
  m = np.max(logits, axis=-1, keepdims=True)
  e = np.exp(logits - m)
  return e / e.sum(-1, keepdims=True)


def np_entropy(p):
  with np.errstate(divide="ignore", invalid="ignore"):
    return -np.sum(np.where(p > 0, p * np.log(p), 0.0), axis=-1)


def ref_least_confidence(logits):
  return 1.0 - np_softmax(logits).max(-1)


def ref_margin(logits):
  p = np.sort(np_softmax(logits), -1)
  return 1.0 - (p[..., -1] - p[..., -2])


def ref_ratio(logits):
  p = np.sort(np_softmax(logits), -1)
  return p[..., -2] / p[..., -1]


def ref_entropy(logits):
  return np_entropy(np_softmax(logits))


def ref_variation_ratio(mc):
  s, n, k = mc.shape
  votes = np.argmax(mc, -1)  # [S, N]
  counts = np.stack([np.bincount(votes[:, i], minlength=k) for i in range(n)])
  return 1.0 - counts.max(-1) / s


def ref_mean_std(mc):
  return np_softmax(mc).std(0).mean(-1)


def ref_bald(mc):
  p = np_softmax(mc)
  return np_entropy(p.mean(0)) - np_entropy(p).mean(0)


SINGLE = {
  "least_confidence": (scores.least_confidence, ref_least_confidence),
  "margin": (scores.margin, ref_margin),
  "ratio": (scores.ratio, ref_ratio),
  "entropy": (scores.entropy, ref_entropy),
}
MC = {
  "variation_ratio": (scores.variation_ratio, ref_variation_ratio),
  "mean_std": (scores.mean_std, ref_mean_std),
  "bald": (scores.bald, ref_bald),
}


def _logits(seed, shape, scale=3.0):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32) * scale


@pytest.mark.parametrize("name", sorted(SINGLE))
def test_single_pass_scores_match_reference(name):
  fn, ref = SINGLE[name]
  logits = _logits(0, (64, 7))
  got = fn(logits)
  assert got.shape == (64,) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, ref(logits), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", sorted(MC))
def test_mc_scores_match_reference(name):
  fn, ref = MC[name]
  mc = _logits(1, (9, 40, 5))
  got = fn(mc)
  assert got.shape == (40,) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, ref(mc), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", sorted(SINGLE))
def test_mc_mean_variants_score_the_mean_predictive(name):
  fn, ref = SINGLE[name]
  mc = _logits(2, (6, 30, 4))
  mean_p = np_softmax(mc).mean(0)
  got = scores.mc_mean(fn)(mc)
  np.testing.assert_allclose(got, ref(np.log(mean_p)), rtol=RTOL, atol=ATOL)


def test_scores_accept_log_probabilities():
  logits = _logits(3, (20, 6))
  logp = jax.nn.log_softmax(logits)
  for fn, _ in SINGLE.values():
    np.testing.assert_allclose(fn(logp), fn(logits), rtol=RTOL, atol=ATOL)


def test_saturated_logits_give_no_nan():
  big = np.array(
    [[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [1e4, 1e4, -1e4], [0.0, 0.0, 0.0]], np.float32
  )
  for name, (fn, ref) in SINGLE.items():
    got = np.asarray(fn(big))
    assert np.all(np.isfinite(got)), name
    np.testing.assert_allclose(got, ref(big), rtol=RTOL, atol=ATOL, err_msg=name)
  mc = np.stack([big, big * 0.5, -big])
  for name, (fn, ref) in MC.items():
    got = np.asarray(fn(mc))
    assert np.all(np.isfinite(got)), name
    np.testing.assert_allclose(got, ref(mc), rtol=RTOL, atol=1e-5, err_msg=name)
  # A confident prediction: entropy and BALD are exactly zero, not NaN.
  assert float(scores.entropy(big[:1])[0]) == 0.0
  assert float(scores.bald(np.stack([big[:1]] * 3))[0]) == 0.0


def test_masked_classes_with_negative_infinity():
  logits = np.array([[2.0, -np.inf, 1.0, -np.inf], [-np.inf, 0.5, 0.5, -np.inf]], np.float32)
  dense = logits[:, [0, 2]].copy()
  dense[1] = [0.5, 0.5]
  for name, (fn, ref) in SINGLE.items():
    got = np.asarray(fn(logits))
    assert np.all(np.isfinite(got)), name
    np.testing.assert_allclose(got, ref(dense), rtol=RTOL, atol=ATOL, err_msg=name)
  mc = np.stack([logits, logits + 1.0, logits * 2.0])
  for name, (fn, _) in MC.items():
    assert np.all(np.isfinite(np.asarray(fn(mc)))), name


def test_bfloat16_input():
  logits = _logits(4, (16, 5)).astype(jnp.bfloat16)
  as32 = np.asarray(jnp.asarray(logits).astype(jnp.float32))
  for name, (fn, ref) in SINGLE.items():
    got = fn(jnp.asarray(logits))
    assert got.dtype == jnp.float32, name
    np.testing.assert_allclose(got, ref(as32), rtol=1e-4, atol=1e-5, err_msg=name)
  big = jnp.asarray([[1e4, -1e4, 0.0]], jnp.bfloat16)
  for fn, _ in SINGLE.values():
    assert np.all(np.isfinite(np.asarray(fn(big))))
  for fn, _ in MC.values():
    assert np.all(np.isfinite(np.asarray(fn(jnp.stack([big, -big])))))


def test_ranges_and_extremes():
  k = 5
  uniform = np.zeros((1, k), np.float32)
  np.testing.assert_allclose(scores.entropy(uniform), [np.log(k)], rtol=1e-6)
  np.testing.assert_allclose(scores.least_confidence(uniform), [1 - 1 / k], rtol=1e-6)
  np.testing.assert_allclose(scores.margin(uniform), [1.0], rtol=1e-6)
  np.testing.assert_allclose(scores.ratio(uniform), [1.0], rtol=1e-6)
  # Samples that disagree completely have maximal BALD; identical samples have zero.
  eye = np.eye(k, dtype=np.float32)[:, None, :] * 50.0  # [S=k, N=1, K=k]
  np.testing.assert_allclose(scores.bald(eye), [np.log(k)], rtol=1e-5)
  np.testing.assert_allclose(scores.bald(np.repeat(uniform[None], 4, 0)), [0.0], atol=1e-7)


@pytest.mark.parametrize("fn", [f for f, _ in SINGLE.values()])
def test_single_pass_rejects_bad_rank(fn):
  with pytest.raises(
    ValueError, match=r"logits must have shape \[num_points, num_classes\], got shape \(3,\)"
  ):
    fn(np.zeros((3,), np.float32))
  with pytest.raises(ValueError, match=r"shape \(2, 3, 4\)"):
    fn(np.zeros((2, 3, 4), np.float32))
  with pytest.raises(TypeError, match="floating-point"):
    fn(np.zeros((3, 4), np.int32))
  with pytest.raises(ValueError, match="at least 2 classes"):
    fn(np.zeros((3, 1), np.float32))


@pytest.mark.parametrize("fn", [f for f, _ in MC.values()])
def test_mc_scores_reject_bad_rank_and_single_sample(fn):
  with pytest.raises(
    ValueError, match=r"mc_logits must have shape \[num_samples, num_points, num_classes\]"
  ):
    fn(np.zeros((3, 4), np.float32))
  with pytest.raises(ValueError, match="at least 2 Monte Carlo samples"):
    fn(np.zeros((1, 3, 4), np.float32))


def test_scores_jit_and_vmap():
  logits = _logits(5, (3, 8, 4))
  vm = jax.vmap(scores.entropy)(logits)
  np.testing.assert_allclose(vm, np.stack([ref_entropy(l) for l in logits]), rtol=RTOL, atol=ATOL)
  np.testing.assert_allclose(jax.jit(scores.bald)(logits), ref_bald(logits), rtol=RTOL, atol=ATOL)
