"""EPIG: the score against a NumPy reference from its definition, and the strategy's invariants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import check_invariants

from jaxal import bayes
from jaxal import models
from jaxal import networks
from jaxal import scores
from jaxal import strategies


def _softmax(x):
  x = x - x.max(-1, keepdims=True)
  e = np.exp(x)
  return e / e.sum(-1, keepdims=True)


def epig_reference(logits_pool, logits_target):
  """EPIG from its definition: mean over targets of KL(p(y, y*) || p(y) p(y*))."""
  p = _softmax(np.asarray(logits_pool, np.float64))  # [S, N, K]
  q = _softmax(np.asarray(logits_target, np.float64))  # [S, M, K]
  s, n, _ = p.shape
  out = np.zeros(n)
  for i in range(n):
    for m in range(q.shape[1]):
      joint = np.einsum("sk,sl->kl", p[:, i], q[:, m]) / s
      indep = np.outer(joint.sum(1), joint.sum(0))
      nz = joint > 0
      out[i] += np.sum(joint[nz] * np.log(joint[nz] / indep[nz]))
  return out / q.shape[1]


def _entropy(p, axis):
  return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=axis)


@pytest.fixture(scope="module")
def mc():
  k1, k2 = jax.random.split(jax.random.key(0))
  pool = 2.0 * jax.random.normal(k1, (6, 9, 4))
  target = 2.0 * jax.random.normal(k2, (6, 11, 4))
  return pool, target


def test_epig_matches_definition_and_the_mutual_information_identity(mc):
  pool, target = mc
  got = np.asarray(bayes.epig(pool, target))
  ref = epig_reference(pool, target)
  np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)
  # I(y; y*) = H(y) + H(y*) - H(y, y*), in NumPy, from the joint.
  p = _softmax(np.asarray(pool, np.float64))
  q = _softmax(np.asarray(target, np.float64))
  joint = np.einsum("snk,sml->nmkl", p, q) / p.shape[0]
  h_joint = _entropy(joint.reshape(*joint.shape[:2], -1), -1)
  h_y = _entropy(p.mean(0), -1)[:, None]
  h_t = _entropy(q.mean(0), -1)[None, :]
  np.testing.assert_allclose(ref, (h_y + h_t - h_joint).mean(1), rtol=1e-9, atol=1e-12)


def test_epig_chunked_equals_unchunked_and_bounded_by_bald(mc):
  pool, target = mc
  full = bayes.epig(pool, target, chunk_size=target.shape[1])
  for c in (1, 3, 4, 100):
    np.testing.assert_allclose(bayes.epig(pool, target, chunk_size=c), full, rtol=1e-5, atol=1e-7)
  # Data processing: I(y; y*) <= I(y; theta).
  assert np.all(np.asarray(full) <= np.asarray(scores.bald(pool)) + 1e-5)
  assert np.all(np.asarray(full) >= 0)


def test_epig_saturated_logits_finite():
  pool = jnp.array([[[1e4, -1e4]], [[-1e4, 1e4]]])
  target = jnp.array([[[1e4, -1e4], [0.0, 0.0]], [[-1e4, 1e4], [0.0, 0.0]]])
  got = np.asarray(bayes.epig(pool, target))
  np.testing.assert_allclose(got, [np.log(2) / 2], rtol=1e-5)


def test_epig_bad_input(mc):
  pool, target = mc
  with pytest.raises(ValueError, match="same number of samples"):
    bayes.epig(pool, target[:3])
  with pytest.raises(ValueError, match="same number of samples"):
    bayes.epig(pool, target[..., :3])
  with pytest.raises(ValueError, match="at least 2"):
    bayes.epig(pool[:1], target[:1])
  with pytest.raises(TypeError, match="chunk_size"):
    bayes.epig(pool, target, chunk_size=1.5)


@pytest.fixture(scope="module")
def mlp():
  x = jax.random.normal(jax.random.key(3), (30, 6))
  module = networks.MLP(num_classes=3, hidden=(8,), dropout_rate=0.5)
  params = models.init_params(jax.random.key(4), module, x)
  labeled = np.zeros(30, bool)
  labeled[[0, 5, 7, 20]] = True
  return models.from_linen(module), params, x, jnp.asarray(labeled)


@pytest.mark.parametrize("batch", ["top_k", "power"])
@pytest.mark.parametrize("with_target", [False, True])
def test_epig_strategy_invariants_and_determinism(mlp, batch, with_target):
  model, params, x, labeled = mlp
  target = jax.random.normal(jax.random.key(5), (12, 6)) if with_target else None
  s = strategies.epig(target=target, num_samples=4, target_size=8, chunk_size=3, batch=batch)
  key = jax.random.key(7)
  idx = s.acquire(key, model, params, x, labeled, np.int64(6))
  check_invariants(idx, 30, 6, labeled)
  np.testing.assert_array_equal(idx, s.acquire(key, model, params, x, labeled, 6))


def test_epig_strategy_top_k_matches_the_score(mlp):
  model, params, x, labeled = mlp
  target = jax.random.normal(jax.random.key(5), (5, 6))
  s = strategies.epig(target=target, num_samples=4, target_size=5)
  key = jax.random.key(8)
  idx = s.acquire(key, model, params, x, labeled, 4)
  _, k_mc, _ = jax.random.split(key, 3)
  pool_mc = models.predict_mc(k_mc, model, params, x, num_samples=4, consistent=True)
  target_mc = models.predict_mc(k_mc, model, params, target, num_samples=4, consistent=True)
  u = np.where(np.asarray(labeled), -np.inf, epig_reference(pool_mc, target_mc))
  assert set(np.asarray(idx).tolist()) == set(np.argsort(-u)[:4].tolist())


def test_epig_strategy_errors(mlp):
  model, params, x, labeled = mlp
  s = strategies.epig(target=jnp.zeros((5, 7)), num_samples=4)
  with pytest.raises(ValueError, match="feature shape"):
    s.acquire(jax.random.key(0), model, params, x, labeled, 2)
  with pytest.raises(ValueError, match="num_samples"):
    strategies.epig(num_samples=1)
  with pytest.raises(ValueError, match="batch"):
    strategies.epig(batch="greedy")
  with pytest.raises(TypeError, match="target"):
    strategies.epig(target=[1, 2])
  assert strategies.get("epig").name == "epig"
  assert strategies.epig(batch="power").name == "power_epig"
