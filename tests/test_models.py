"""The model interface: linen, TrainState, NNX and plain functions; batching; MC dropout."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import count_traces
from flax import nnx
from flax.training import train_state

from jaxal import models
from jaxal import networks


class LogitsOnly(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(3)(x.reshape(x.shape[0], -1))


class NNXNet(nnx.Module):
  def __init__(self, din, dhidden, k, *, rngs: nnx.Rngs):
    self.body = nnx.Linear(din, dhidden, rngs=rngs)
    self.drop = nnx.Dropout(0.5, rngs=rngs)
    self.head = nnx.Linear(dhidden, k, rngs=rngs)

  def __call__(self, x):
    z = jax.nn.relu(self.body(x))
    return self.head(self.drop(z)), z


@pytest.fixture(scope="module")
def mlp():
  module = networks.MLP(num_classes=4, hidden=(16,), dropout_rate=0.5)
  x = jax.random.normal(jax.random.key(0), (37, 3, 5))
  params = models.init_params(jax.random.key(1), module, x)
  return module, params, x


def test_mlp_returns_logits_and_features(mlp):
  module, params, x = mlp
  logits, feats = module.apply({"params": params}, x)
  assert logits.shape == (37, 4) and feats.shape == (37, 16)
  assert "head" in params


def test_cnn_returns_logits_and_features():
  module = networks.CNN(num_classes=5, channels=(4,), dense=8)
  x = jnp.ones((3, 8, 8))
  params = models.init_params(jax.random.key(0), module, x)
  logits, feats = module.apply({"params": params}, x)
  assert logits.shape == (3, 5) and feats.shape == (3, 8)


def test_networks_stay_reachable_from_models():
  assert models.MLP is networks.MLP and models.CNN is networks.CNN


@pytest.mark.parametrize("batch_size", [1, 8, 37, 64])
def test_predict_matches_direct_apply_for_every_batch_size(mlp, batch_size):
  module, params, x = mlp
  logits, feats = module.apply({"params": params}, x)
  pred = models.predict(models.from_linen(module), params, x, batch_size=batch_size)
  np.testing.assert_allclose(pred.logits, logits, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(pred.features, feats, rtol=1e-5, atol=1e-6)


def test_predict_one_compile_for_every_pool_size_and_round(mlp):
  module, params, x = mlp
  with count_traces() as c:
    for n in (5, 17, 37):
      for _ in range(2):
        model, p = models.from_train_state(
          train_state.TrainState.create(apply_fn=module.apply, params=params, tx=optax.sgd(0.1))
        )
        models.predict(model, p, x[:n], batch_size=16)
  assert c["_forward_batch"] == 1


def test_from_train_state_equals_from_linen(mlp):
  module, params, x = mlp
  state = train_state.TrainState.create(apply_fn=module.apply, params=params, tx=optax.adam(1e-3))
  model, p = models.from_train_state(state)
  assert model == models.from_linen(module)
  np.testing.assert_allclose(
    models.predict(model, p, x).logits, models.predict(models.from_linen(module), params, x).logits
  )


def test_from_train_state_rejects_foreign_apply_fn():
  state = train_state.TrainState.create(apply_fn=lambda p, x: x, params={}, tx=optax.sgd(0.1))
  with pytest.raises(TypeError, match="from_apply_fn"):
    models.from_train_state(state)


def test_logits_only_model_and_features_error():
  module = LogitsOnly()
  x = jnp.ones((4, 2, 2))
  params = models.init_params(jax.random.key(0), module, x)
  model = models.from_linen(module, train_kwarg=None)
  pred = models.predict(model, params, x, features=False)
  assert pred.logits.shape == (4, 3) and pred.features is None
  with pytest.raises(ValueError, match="returns only logits"):
    models.predict(model, params, x, features=True)


def _apply_fn(params, x, dropout_key):
  del dropout_key
  return x @ params


def test_from_apply_fn():
  w = jnp.arange(6.0).reshape(3, 2)
  x = jnp.ones((5, 3))
  pred = models.predict(models.from_apply_fn(_apply_fn), w, x, features=False)
  np.testing.assert_allclose(pred.logits, x @ w)


def test_mc_dropout_passes_are_stochastic_and_batch_size_invariant(mlp):
  module, params, x = mlp
  model = models.from_linen(module)
  key = jax.random.key(7)
  a = models.predict_mc(key, model, params, x, num_samples=4, batch_size=8)
  b = models.predict_mc(key, model, params, x, num_samples=4, batch_size=64)
  assert a.shape == (4, 37, 4)
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert not np.allclose(a[0], a[1])  # dropout is on
  det = models.predict(model, params, x).logits
  assert not np.allclose(a[0], det)
  # Sample s is the forward with dropout key fold_in(split(key)[s], i) for example i.
  k0 = jax.random.split(key, 4)[2]
  direct = module.apply(
    {"params": params}, x[5:6], train=True, rngs={"dropout": jax.random.fold_in(k0, 5)}
  )[0]
  np.testing.assert_allclose(a[2, 5], direct[0], rtol=1e-5, atol=1e-6)


def test_mc_dropout_one_compile_across_rounds(mlp):
  module, params, x = mlp
  model = models.from_linen(module)
  with count_traces() as c:
    for r in range(3):
      models.predict_mc(jax.random.key(r), model, params, x[: 10 + r], num_samples=3, batch_size=8)
  assert c["_forward_batch_mc"] == 1


def test_nnx_model_logits_features_and_mc_dropout():
  net = NNXNet(6, 8, 3, rngs=nnx.Rngs(0, dropout=1))
  model, state = models.from_nnx(net)
  x = jax.random.normal(jax.random.key(2), (11, 6))
  pred = models.predict(model, state, x, batch_size=4)
  net.eval()
  logits, z = net(x)
  np.testing.assert_allclose(pred.logits, logits, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(pred.features, z, rtol=1e-5, atol=1e-6)
  mc = models.predict_mc(jax.random.key(3), model, state, x, num_samples=5, batch_size=4)
  assert mc.shape == (5, 11, 3)
  assert not np.allclose(mc[0], mc[1])
  mc2 = models.predict_mc(jax.random.key(3), model, state, x, num_samples=5, batch_size=16)
  np.testing.assert_allclose(mc, mc2, rtol=1e-5, atol=1e-6)


def test_bad_input(mlp):
  module, params, x = mlp
  model = models.from_linen(module)
  with pytest.raises(ValueError, match="batch_size"):
    models.predict(model, params, x, batch_size=0)
  with pytest.raises(ValueError, match="num_points >= 1"):
    models.predict(model, params, x[:0])
  with pytest.raises(TypeError, match="typed key"):
    models.predict_mc(jax.random.PRNGKey(0), model, params, x, num_samples=2)
  with pytest.raises(ValueError, match="num_samples"):
    models.predict_mc(jax.random.key(0), model, params, x, num_samples=0)
  with pytest.raises(TypeError, match="linen.Module"):
    models.from_linen(lambda x: x)
  with pytest.raises(TypeError, match="nnx.Module"):
    models.from_nnx(module)
