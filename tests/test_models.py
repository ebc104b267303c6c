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


def test_predict_one_compile_per_pool_size_reused_every_round(mlp):
  # The whole pool is one compiled call (one per pool shape); a round's new train state of the
  # same model never recompiles it.
  module, params, x = mlp
  with count_traces() as c:
    for n in (5, 17, 37):
      for _ in range(2):
        model, p = models.from_train_state(
          train_state.TrainState.create(apply_fn=module.apply, params=params, tx=optax.sgd(0.1))
        )
        models.predict(model, p, x[:n], batch_size=16)
  assert c["_predict_pool"] == 3, dict(c.counts)
  assert c["_forward_batch"] == 0  # traced inside the pool call, never compiled on its own


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


def test_mc_dropout_one_compile_per_pool_size_reused_every_round(mlp):
  """The whole pool is one compiled call; rounds (new keys, same pool) reuse it."""
  module, params, x = mlp
  model = models.from_linen(module)
  with count_traces() as c:
    for size in (10, 11, 12):
      for r in range(3):
        models.predict_mc(jax.random.key(r), model, params, x[:size], num_samples=3, batch_size=8)
  assert c["_predict_mc_pool"] == 3, dict(c.counts)
  assert c["_forward_batch_mc"] == 0, dict(c.counts)


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


# ---------------------------------------------------------------------------
# Training flags: `train=` and Flax's own `deterministic=`, read off the signature.


class DetNet(nn.Module):
  """Flax's convention: dropout off when deterministic=True."""

  @nn.compact
  def __call__(self, x, deterministic: bool = True):
    z = nn.relu(nn.Dense(8)(x.reshape(x.shape[0], -1)))
    return nn.Dense(3, name="head")(nn.Dropout(0.5)(z, deterministic=deterministic)), z


class BothFlags(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = False, deterministic: bool = True):
    del deterministic
    return nn.Dropout(0.5, deterministic=not train)(nn.Dense(3)(x))


class KwargsOnly(nn.Module):
  @nn.compact
  def __call__(self, x, **kwargs):
    return nn.Dense(3)(x)


class BNNet(nn.Module):
  """Dense -> BatchNorm -> ReLU -> Dropout -> head, one `train` flag for both."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    z = nn.Dense(8)(x.reshape(x.shape[0], -1))
    z = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.5)(z))
    return nn.Dense(3, name="head")(nn.Dropout(0.5, deterministic=not train)(z)), z


def test_dropout_flag_reads_the_signature():
  assert models.dropout_flag(networks.MLP(num_classes=2)) == ("train", True)
  assert models.dropout_flag(DetNet()) == ("deterministic", False)
  assert models.dropout_flag(LogitsOnly()) == (None, True)
  # An explicit option overrides the signature.
  assert models.dropout_flag(BothFlags(), train_kwarg="train") == ("train", True)
  assert models.dropout_flag(BothFlags(), deterministic_kwarg="deterministic") == (
    "deterministic",
    False,
  )
  assert models.dropout_flag(KwargsOnly(), train_kwarg=None, deterministic_kwarg=None) == (
    None,
    True,
  )


@pytest.mark.parametrize(
  ("module", "options", "match"),
  [
    (BothFlags(), {}, "both `train` and `deterministic`; pass train_kwarg"),
    (KwargsOnly(), {}, r"\*\*kwargs; pass train_kwarg="),
    (DetNet(), {"train_kwarg": "deterministic"}, "deterministic_kwarg='deterministic'"),
    (DetNet(), {"train_kwarg": "training"}, "train_kwarg='training' is not a parameter"),
    (DetNet(), {"train_kwarg": "a", "deterministic_kwarg": "b"}, "not both"),
  ],
)
def test_dropout_flag_errors_name_the_option(module, options, match):
  with pytest.raises(ValueError, match=match):
    models.from_linen(module, **options)


def test_deterministic_convention_predict_and_mc():
  module = DetNet()
  x = jax.random.normal(jax.random.key(0), (9, 4))
  params = module.init(jax.random.key(1), x)["params"]
  ts = train_state.TrainState.create(apply_fn=module.apply, params=params, tx=optax.sgd(0.1))
  model, p = models.from_train_state(ts)  # used to fail: unexpected keyword 'train'
  pred = models.predict(model, p, x)
  np.testing.assert_allclose(pred.logits, module.apply({"params": params}, x)[0], rtol=1e-5)
  key = jax.random.key(3)
  mc = models.predict_mc(key, model, p, x, num_samples=3, batch_size=4)
  assert not np.allclose(mc[0], mc[1])  # dropout is on in MC passes, not silently off
  k1 = jax.random.split(key, 3)[1]
  direct = module.apply(
    {"params": params}, x[4:5], deterministic=False, rngs={"dropout": jax.random.fold_in(k1, 4)}
  )[0]
  np.testing.assert_allclose(mc[1, 4], direct[0], rtol=1e-5, atol=1e-6)


def _no_dropout_apply_is_refused(model, params, x):
  with pytest.raises(ValueError, match="MC dropout needs a dropout layer"):
    models.predict_mc(jax.random.key(0), model, params, x, num_samples=2)


def test_mc_dropout_without_a_dropout_layer_is_refused():
  x = jnp.ones((4, 2, 2))
  module = LogitsOnly()
  params = models.init_params(jax.random.key(0), module, x)
  _no_dropout_apply_is_refused(models.from_linen(module), params, x)
  mlp = networks.MLP(num_classes=3, hidden=(4,), dropout_rate=0.0)  # rate 0 is no dropout
  _no_dropout_apply_is_refused(
    models.from_linen(mlp), models.init_params(jax.random.key(0), mlp, x), x
  )

  class Plain(nnx.Module):
    def __init__(self, rngs):
      self.lin = nnx.Linear(4, 3, rngs=rngs)

    def __call__(self, x):
      return self.lin(x.reshape(x.shape[0], -1))

  model, state = models.from_nnx(Plain(nnx.Rngs(0)))
  _no_dropout_apply_is_refused(model, state, x)


# ---------------------------------------------------------------------------
# BatchNorm: evaluation mode (running averages) for scoring, never updated by acquisition.


@pytest.fixture(scope="module")
def bn_state():
  from jaxal import loop

  x = jax.random.normal(jax.random.key(0), (24, 5)) * 3.0 + 1.0
  ts = loop.create_train_state(jax.random.key(1), BNNet(), x)
  # Non-trivial running averages: a few steps in training mode.
  y = jnp.arange(24) % 3
  step = jax.jit(loop.train_step)
  for i in range(3):
    ts, _ = step(ts, (x, y, jnp.ones(24)), jax.random.key(10 + i))
  return ts, x


class BNNetFrozen(nn.Module):
  """BNNet whose BatchNorm always uses its running averages (the MC-dropout reference)."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    z = nn.Dense(8)(x.reshape(x.shape[0], -1))
    z = nn.relu(nn.BatchNorm(use_running_average=True, momentum=0.5)(z))
    return nn.Dense(3, name="head")(nn.Dropout(0.5, deterministic=not train)(z)), z


def test_batchnorm_predict_uses_running_averages(bn_state):
  ts, x = bn_state
  stats = ts.model_state["batch_stats"]
  assert not np.allclose(stats["BatchNorm_0"]["mean"], 0.0)  # updated in training
  model, variables = models.from_train_state(ts)
  assert set(variables) == {"params", "batch_stats"}
  pred = models.predict(model, variables, x, batch_size=8)
  want = BNNet().apply({"params": ts.params, "batch_stats": stats}, x, train=False)
  np.testing.assert_allclose(pred.logits, want[0], rtol=1e-5, atol=1e-5)
  # Running averages: a point's logits do not depend on the rest of its batch.
  np.testing.assert_allclose(
    models.predict(model, variables, x[3:4]).logits[0], pred.logits[3], rtol=1e-5, atol=1e-5
  )


def test_batchnorm_mc_passes_are_eval_mode_with_dropout_on(bn_state):
  ts, x = bn_state
  model, variables = models.from_train_state(ts)
  key = jax.random.key(4)
  mc = models.predict_mc(key, model, variables, x, num_samples=3, consistent=True)
  assert mc.shape == (3, 24, 3) and np.isfinite(mc).all()
  assert not np.allclose(mc[0], mc[1])
  # Sample 0: BatchNorm on the running averages, dropout drawn as nn.Dropout draws it.
  # Sample 0 of point 2 is BNNet with train=True for dropout only: the same network with
  # BatchNorm frozen on its running averages (same names, so the same dropout stream).
  k0 = jax.random.fold_in(jax.random.split(key, 3)[0], 2 * 0)
  want = BNNetFrozen().apply(variables, x[2:3], train=True, rngs={"dropout": k0})[0]
  np.testing.assert_allclose(mc[0, 2], want[0], rtol=1e-4, atol=1e-4)


def test_acquisition_never_updates_batch_stats(bn_state):
  from jaxal import strategies

  ts, x = bn_state
  model, variables = models.from_train_state(ts)
  before = jax.tree.map(np.asarray, variables["batch_stats"])
  mask = jnp.zeros(24, bool).at[:4].set(True)
  for strategy in (strategies.bald(num_samples=3), strategies.badge(), strategies.entropy()):
    strategy.acquire(jax.random.key(0), model, variables, x, mask, 3)
  jax.tree.map(np.testing.assert_array_equal, variables["batch_stats"], before)
  jax.tree.map(np.testing.assert_array_equal, ts.model_state["batch_stats"], before)


def test_flax_tutorial_train_state_with_batch_stats():
  from typing import Any

  class TS(train_state.TrainState):
    batch_stats: Any = None

  x = jnp.ones((4, 5))
  variables = BNNet().init(jax.random.key(0), x)
  ts = TS.create(
    apply_fn=BNNet().apply,
    params=variables["params"],
    tx=optax.sgd(0.1),
    batch_stats=variables["batch_stats"],
  )
  model, p = models.from_train_state(ts)  # used to fail: ScopeCollectionNotFound
  assert models.predict(model, p, x).logits.shape == (4, 3)


# ---------------------------------------------------------------------------
# NNX with BatchNorm: evaluation mode, state untouched.


class NNXBN(nnx.Module):
  def __init__(self, din, k, *, rngs: nnx.Rngs):
    self.body = nnx.Linear(din, 8, rngs=rngs)
    self.bn = nnx.BatchNorm(8, rngs=rngs)
    self.drop = nnx.Dropout(0.5, rngs=rngs)
    self.head = nnx.Linear(8, k, rngs=rngs)

  def __call__(self, x):
    z = jax.nn.relu(self.bn(self.body(x)))
    return self.head(self.drop(z)), z


def _host(leaf):
  """A state leaf as NumPy (typed keys as their key data)."""
  if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
    leaf = jax.random.key_data(leaf)
  return np.asarray(leaf)


def test_nnx_batchnorm_eval_mode_and_state_untouched():
  net = NNXBN(5, 3, rngs=nnx.Rngs(0))
  net.bn.mean[...] = jnp.arange(8.0)  # non-trivial running averages
  model, state = models.from_nnx(net)
  before = jax.tree.map(_host, state)
  x = jax.random.normal(jax.random.key(1), (6, 5))
  pred = models.predict(model, state, x, batch_size=4)
  np.testing.assert_allclose(
    models.predict(model, state, x[1:2]).logits[0], pred.logits[1], rtol=1e-5, atol=1e-5
  )
  mc = models.predict_mc(jax.random.key(2), model, state, x, num_samples=3)
  assert not np.allclose(mc[0], mc[1])
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(_host, state), before)


# ---------------------------------------------------------------------------
# The factory loader behind `jaxal run --model package.module:factory`.


@pytest.fixture
def factories(monkeypatch):
  import sys
  import types

  mod = types.ModuleType("jaxal_test_factories")
  mod.linen = lambda num_classes, example_x: networks.MLP(num_classes=num_classes, hidden=(4,))
  mod.nnx_net = lambda num_classes, example_x: NNXBN(
    int(np.prod(example_x.shape[1:])), num_classes, rngs=nnx.Rngs(0)
  )
  mod.nnx_seeded = lambda num_classes, example_x, rngs: NNXBN(
    int(np.prod(example_x.shape[1:])), num_classes, rngs=rngs
  )
  mod.not_a_module = lambda num_classes, example_x: "mlp"
  mod.constant = 3
  monkeypatch.setitem(sys.modules, "jaxal_test_factories", mod)
  return mod


def test_load_factory_builds_linen_and_nnx(factories):
  x = jnp.ones((2, 5))
  module = models.load_factory("jaxal_test_factories:linen")(4, x)
  assert isinstance(module, networks.MLP) and module.num_classes == 4
  net = models.load_factory("jaxal_test_factories:nnx_net")(np.int64(3), x)
  model, state = models.from_nnx(net)
  assert models.predict(model, state, x).logits.shape == (2, 3)


@pytest.mark.parametrize(
  ("spec", "err", "match"),
  [
    ("jaxal_test_factories", ValueError, "form 'package.module:factory'"),
    (":linen", ValueError, "form 'package.module:factory'"),
    ("jaxal_no_such_package_xyz:f", ValueError, "cannot import 'jaxal_no_such_package_xyz'"),
    ("jaxal_test_factories:missing", ValueError, "has no attribute 'missing'"),
    ("jaxal_test_factories:constant", TypeError, "must be callable, got int"),
    (42, TypeError, "spec must be a string"),
  ],
)
def test_load_factory_errors(factories, spec, err, match):
  with pytest.raises(err, match=match):
    models.load_factory(spec)


def test_load_factory_refuses_a_result_that_is_not_a_module(factories):
  build = models.load_factory("jaxal_test_factories:not_a_module")
  with pytest.raises(TypeError, match="must return a flax.linen.Module or a flax.nnx.Module, got"):
    build(10, jnp.ones((1, 3)))


def test_load_factory_passes_rngs_for_reinitialisation(factories):
  import functools

  from jaxal import loop

  x = jnp.ones((4, 5))
  build = models.load_factory("jaxal_test_factories:nnx_seeded")
  ts = loop.create_train_state(jax.random.key(0), functools.partial(build, 3, x), x)
  again = loop.reinit(jax.random.key(1), ts, x)
  assert not np.allclose(again.params["head"]["kernel"], ts.params["head"]["kernel"])
  # A factory without `rngs` is called without it.
  assert isinstance(
    models.load_factory("jaxal_test_factories:linen")(3, x, rngs=nnx.Rngs(0)), nn.Module
  )
