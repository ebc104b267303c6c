"""Deep ensembles: stacked forward equals the members', MC scores and strategies take them."""

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

M = 4


@pytest.fixture(scope="module")
def ens():
  x = jax.random.normal(jax.random.key(0), (13, 5))
  module = networks.MLP(num_classes=3, hidden=(6,), dropout_rate=0.5)
  member = models.from_linen(module)

  def init_fn(k):
    return models.init_params(k, module, x)

  model, params = models.ensemble(jax.random.key(1), member, init_fn, M)
  return x, module, member, init_fn, model, params


def _softmax(z):
  z = z - z.max(-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(-1, keepdims=True)


def test_stacked_params_and_forward_equal_members(ens):
  x, module, member, init_fn, model, params = ens
  keys = jax.random.split(jax.random.key(1), M)
  for leaf in jax.tree.leaves(params):
    assert leaf.shape[0] == M
  members = []
  for m in range(M):
    p_m = init_fn(keys[m])  # each member from its own key
    for a, b in zip(jax.tree.leaves(p_m), jax.tree.leaves(jax.tree.map(lambda t: t[m], params))):
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    members.append(np.asarray(models.predict(member, p_m, x, features=False).logits))
  members = np.stack(members)
  mc = models.predict_mc(jax.random.key(9), model, params, x, num_samples=20, batch_size=4)
  assert mc.shape == (M, 13, 3)
  np.testing.assert_allclose(mc, members, rtol=1e-5, atol=1e-5)
  # Deterministic: the key, num_samples and consistent are ignored.
  other = models.predict_mc(
    jax.random.key(3), model, params, x, num_samples=2, batch_size=4, consistent=True
  )
  np.testing.assert_array_equal(mc, other)
  # The deterministic pass is the log of the members' mean predictive.
  mean = np.asarray(models.predict(model, params, x, features=False).logits)
  np.testing.assert_allclose(np.exp(mean), _softmax(members).mean(0), rtol=1e-5, atol=1e-6)


def test_mc_scores_on_ensemble_predictions_match_numpy(ens):
  x, *_, model, params = ens
  mc = models.predict_mc(jax.random.key(0), model, params, x, num_samples=M)
  p = _softmax(np.asarray(mc, np.float64))
  pm = p.mean(0)
  bald_ref = -np.sum(pm * np.log(pm), -1) + np.mean(np.sum(p * np.log(p), -1), 0)
  np.testing.assert_allclose(scores.bald(mc), bald_ref, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(scores.mean_std(mc), p.std(0).mean(-1), rtol=1e-4, atol=1e-6)
  assert bayes.epig(mc, mc).shape == (13,)
  assert np.all(np.isfinite(scores.variation_ratio(mc)))


@pytest.mark.parametrize(
  "strategy",
  [
    strategies.bald(),
    strategies.batchbald(),
    strategies.mean_std(),
    strategies.epig(target_size=6),
  ],
  ids=lambda s: s.name,
)
def test_mc_strategies_take_an_ensemble(ens, strategy):
  x, *_, model, params = ens
  labeled = jnp.zeros(13, bool).at[jnp.array([1, 4])].set(True)
  key = jax.random.key(5)
  idx = strategy.acquire(key, model, params, x, labeled, 3)
  check_invariants(idx, 13, 3, labeled, strategy.name)
  np.testing.assert_array_equal(idx, strategy.acquire(key, model, params, x, labeled, 3))


def test_ensemble_bad_input(ens):
  x, module, member, init_fn, *_ = ens
  with pytest.raises(ValueError, match="num_members"):
    models.ensemble(jax.random.key(0), member, init_fn, 1)
  with pytest.raises(TypeError, match="num_members"):
    models.ensemble(jax.random.key(0), member, init_fn, 2.0)
  with pytest.raises(TypeError, match="model"):
    models.ensemble(jax.random.key(0), module, init_fn, 2)
  with pytest.raises(TypeError, match="init_fn"):
    models.ensemble(jax.random.key(0), member, None, 2)
  model, params = models.ensemble(jax.random.key(0), member, init_fn, np.int64(2))
  assert jax.tree.leaves(params)[0].shape[0] == 2


def test_vmapped_fit_equals_fitting_each_member(ens):
  from jaxal import loop

  x, module, *_ = ens
  y = jnp.arange(13) % 3
  labeled = jnp.zeros(13, bool).at[jnp.array([0, 2, 3, 7, 9])].set(True)
  key, k_fit = jax.random.key(11), jax.random.key(12)
  state = loop.create_train_state(key, module, x, num_members=3)
  assert jax.tree.leaves(state.params)[0].shape[0] == 3
  fitted = loop.fit(k_fit, state, x, y, labeled, num_steps=7, batch_size=4)
  for m, k_m in enumerate(jax.random.split(k_fit, 3)):
    single = loop.create_train_state(jax.random.key(0), module, x)
    single = loop.fit(k_m, single, x, y, labeled, num_steps=7, batch_size=4)
    for a, b in zip(
      jax.tree.leaves(single.params), jax.tree.leaves(jax.tree.map(lambda t: t[m], fitted.params))
    ):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  model, params = models.from_train_state(fitted)
  assert models.predict_mc(key, model, params, x, num_samples=3).shape == (3, 13, 3)
  with pytest.raises(ValueError, match="num_members"):
    loop.create_train_state(key, module, x, num_members=1)


def test_run_round_with_an_ensemble(ens):
  from jaxal import loop

  x, module, *_ = ens
  y = jnp.arange(13) % 3
  al = loop.init(jax.random.key(0), 13, num_initial=4)
  ts = loop.create_train_state(jax.random.key(1), module, x, num_members=2)
  al2, ts2, idx = loop.run_round(
    al, ts, strategy=strategies.bald(), x=x, y=y, budget=3, num_steps=3, batch_size=4
  )
  check_invariants(idx, 13, 3, al.labeled_mask)
  assert int(al2.num_labeled) == 7
  model, params = models.from_train_state(ts2)
  assert 0.0 <= loop.accuracy(model, params, x, y) <= 1.0
