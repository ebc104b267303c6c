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


# ---------------------------------------------------------------------------
# loop.fit on an ensemble: member m is the single-model fit with split(key, M)[m].

PROTOCOL_KWARGS = {
  "fixed": {"num_steps": 9, "batch_size": 4},
  "epochs": {"epochs": 3, "batch_size": 2},
  "until_accuracy": {"until_train_accuracy": 0.8, "max_steps": 400, "batch_size": 2},
}


def _fit_data():
  x = jax.random.normal(jax.random.key(0), (13, 5))
  y = jnp.arange(13) % 3
  labeled = jnp.zeros(13, bool).at[jnp.array([0, 2, 3, 7, 9])].set(True)
  return x, y, labeled


def _member(ens_state, m):
  """Member ``m`` of an ensemble's state as a single model's ``loop.TrainState``."""
  from jaxal import loop

  return loop.TrainState(
    step=ens_state.step[m],
    apply_fn=ens_state.apply_fn,
    params=jax.tree.map(lambda t: t[m], ens_state.params),
    tx=ens_state.tx,
    opt_state=jax.tree.map(lambda t: t[m], ens_state.opt_state),
    model_state=jax.tree.map(lambda t: t[m], ens_state.model_state),
  )


def _assert_trees_close(single, member, atol):
  a_leaves = jax.tree_util.tree_flatten_with_path(single)[0]
  b_leaves = jax.tree.leaves(member)
  assert len(a_leaves) == len(b_leaves)
  for (path, a), b in zip(a_leaves, b_leaves):
    if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
      np.testing.assert_array_equal(jax.random.key_data(a), jax.random.key_data(b))
    else:
      np.testing.assert_allclose(a, b, rtol=0, atol=atol, err_msg=jax.tree_util.keystr(path))


def _check_members_equal_single_fits(module, x, y, labeled, kwargs, atol, num_members=3):
  from jaxal import loop

  ens = loop.create_train_state(jax.random.key(11), module, x, num_members=num_members)
  k_fit = jax.random.key(12)
  fitted, info = loop.fit(k_fit, ens, x, y, labeled, with_info=True, **kwargs)
  for field in info:
    assert field.shape == (num_members,)
  for m, k_m in enumerate(jax.random.split(k_fit, num_members)):
    # The single model starts from member m's state: with reinitialize (the default) the
    # start is discarded, without it the fit warm-starts from it.
    single, single_info = loop.fit(k_m, _member(ens, m), x, y, labeled, with_info=True, **kwargs)
    assert int(single_info.steps) == int(info.steps[m])
    assert int(single_info.epochs) == int(info.epochs[m])
    np.testing.assert_allclose(single_info.train_accuracy, info.train_accuracy[m], atol=1e-6)
    fm = _member(fitted, m)
    _assert_trees_close(
      (single.step, single.params, single.opt_state, single.model_state),
      (fm.step, fm.params, fm.opt_state, fm.model_state),
      atol,
    )
  return fitted, info


@pytest.mark.parametrize("protocol", sorted(PROTOCOL_KWARGS))
@pytest.mark.parametrize("reinitialize", [True, False])
def test_ensemble_fit_members_equal_single_model_fits(protocol, reinitialize):
  x, y, labeled = _fit_data()
  module = networks.MLP(num_classes=3, hidden=(6,), dropout_rate=0.5)
  kwargs = {**PROTOCOL_KWARGS[protocol], "reinitialize": reinitialize}
  fitted, info = _check_members_equal_single_fits(module, x, y, labeled, kwargs, atol=1e-6)
  if protocol == "fixed":
    np.testing.assert_array_equal(info.steps, [9, 9, 9])
    np.testing.assert_array_equal(info.train_accuracy, [-1.0, -1.0, -1.0])
  elif protocol == "epochs":
    np.testing.assert_array_equal(info.epochs, [3, 3, 3])
    np.testing.assert_array_equal(info.steps, [9, 9, 9])  # ceil(5 / 2) minibatches an epoch
  else:
    # Each member stops on its own accuracy: the members ran different numbers of epochs,
    # every one reached the target, and none ran an epoch after it did.
    assert bool(jnp.all(info.train_accuracy >= 0.8))
    assert len(set(np.asarray(info.epochs).tolist())) > 1
    np.testing.assert_array_equal(info.steps, info.epochs * 3)
  # The members differ from each other (their own keys), and the ensemble predicts.
  kernels = np.asarray(fitted.params["head"]["kernel"])
  assert not np.allclose(kernels[0], kernels[1])
  model, params = models.from_train_state(fitted)
  assert models.predict_mc(jax.random.key(0), model, params, x, num_samples=3).shape == (3, 13, 3)


def test_ensemble_fit_of_batchnorm_and_nnx_members_equals_single_fits():
  import functools

  import flax.linen as nn
  from flax import nnx

  x, y, labeled = _fit_data()

  class BN(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
      h = nn.Dense(6, use_bias=False)(x)
      h = nn.relu(nn.BatchNorm(use_running_average=not train)(h))
      return nn.Dense(3, name="head")(h), h

  class Net(nnx.Module):
    def __init__(self, din, k, *, rngs):
      self.body = nnx.Linear(din, 8, use_bias=False, rngs=rngs)
      self.bn = nnx.BatchNorm(8, rngs=rngs)
      self.drop = nnx.Dropout(0.3, rngs=rngs)
      self.head = nnx.Linear(8, k, rngs=rngs)

    def __call__(self, x):
      z = self.drop(jax.nn.relu(self.bn(self.body(x))))
      return self.head(z), z

  # BatchNorm on minibatches of 4 amplifies float rounding of the batched matmuls over many
  # steps, so these compare a few steps of each protocol. The layers before BatchNorm have no
  # bias: its gradient is zero up to rounding, which Adam's normalisation turns into
  # full-size steps of either sign, differing between the batched and the single fit.
  for module in (BN(), functools.partial(Net, 5, 3)):
    for kwargs in (
      {"num_steps": 3, "batch_size": 4},
      {"epochs": 2, "batch_size": 4},
      {"epochs": 2, "until_train_accuracy": 0.4, "batch_size": 4},
    ):
      fitted, _ = _check_members_equal_single_fits(module, x, y, labeled, kwargs, atol=1e-5)
      assert jax.tree.leaves(fitted.model_state)[0].shape[0] == 3
      model, params = models.from_train_state(fitted)
      out = models.predict_mc(jax.random.key(0), model, params, x, num_samples=3)
      assert out.shape == (3, 13, 3)
      assert bool(jnp.all(jnp.isfinite(out)))


def test_ensemble_reinit_is_each_members_reinit():
  from jaxal import loop

  x, *_ = _fit_data()
  module = networks.MLP(num_classes=3, hidden=(6,))
  ens = loop.create_train_state(jax.random.key(1), module, x, num_members=3)
  fresh = loop.reinit(jax.random.key(2), ens, x)
  assert isinstance(fresh, type(ens)) and fresh.num_members == 3
  for m, k_m in enumerate(jax.random.split(jax.random.key(2), 3)):
    single = loop.reinit(k_m, _member(ens, m), x)
    _assert_trees_close(single.params, jax.tree.map(lambda t: t[m], fresh.params), 1e-7)
    # create_train_state's member m is the single model created from split(key, M)[m].
    created = loop.create_train_state(jax.random.split(jax.random.key(1), 3)[m], module, x)
    _assert_trees_close(created.params, jax.tree.map(lambda t: t[m], ens.params), 1e-7)


@pytest.mark.parametrize("protocol", sorted(PROTOCOL_KWARGS))
def test_ensemble_fit_compiles_once_across_rounds(protocol):
  from conftest import count_traces

  from jaxal import loop

  x, y, _ = _fit_data()
  module = networks.MLP(num_classes=3, hidden=(6,), dropout_rate=0.5)
  ens = loop.create_train_state(jax.random.key(1), module, x, num_members=3)
  kwargs = {**PROTOCOL_KWARGS[protocol], "max_steps": 40} if protocol != "fixed" else {}
  kwargs = {**PROTOCOL_KWARGS[protocol], **kwargs}
  with count_traces() as c:
    for r, (n, reinitialize) in enumerate([(3, True), (6, False), (10, True)]):
      mask = jnp.zeros(13, bool).at[jnp.arange(n)].set(True)
      ens = loop.fit(jax.random.key(r), ens, x, y, mask, reinitialize=reinitialize, **kwargs)
  assert c["_fit_members"] == 1
  assert c["_fit"] == 0  # the single model's program is not compiled beside it


@pytest.mark.parametrize("name", ["badge", "distil", "fixed"])
def test_run_round_with_an_ensemble_under_each_protocol(name):
  from jaxal import loop

  x, y, _ = _fit_data()
  protocol = loop.PROTOCOLS[name]
  kwargs = {**protocol.fit_kwargs(), "max_steps": 60, "batch_size": 4}
  if name == "fixed":
    kwargs = {"num_steps": 5, "batch_size": 4}
  module = networks.MLP(num_classes=3, hidden=(6,), dropout_rate=0.5)
  al = loop.init(jax.random.key(0), 13, num_initial=4)
  ts = loop.create_train_state(jax.random.key(1), module, x, num_members=2, tx=protocol.make_tx())
  al2, ts2, idx = loop.run_round(al, ts, strategy=strategies.bald(), x=x, y=y, budget=3, **kwargs)
  check_invariants(idx, 13, 3, al.labeled_mask)
  assert al2.num_labeled == 7
  # The round trained exactly as loop.fit does with the round's training key.
  k_train, _ = loop.round_keys(al)
  expected = loop.fit(k_train, ts, x, y, al.labeled_mask, **kwargs)
  _assert_trees_close(expected.params, ts2.params, 0.0)


def test_ensemble_fit_bad_input():
  import functools

  from flax import nnx

  from jaxal import loop

  x, y, _ = _fit_data()
  module = networks.MLP(num_classes=3, hidden=(6,))
  ens = loop.create_train_state(jax.random.key(1), module, x, num_members=2)
  with pytest.raises(ValueError, match="labeled_mask is all False"):
    loop.fit(jax.random.key(0), ens, x, y, jnp.zeros(13, bool), epochs=2)
  with pytest.raises(ValueError, match="num_steps"):
    loop.fit(jax.random.key(0), ens, x, y, jnp.ones(13, bool), num_steps=3, epochs=2)
  net = functools.partial(nnx.Linear, 5, 3)
  with pytest.raises(ValueError, match="function of rngs"):
    loop.create_train_state(jax.random.key(0), net(rngs=nnx.Rngs(0)), x, num_members=2)
  with pytest.raises(TypeError, match="num_members"):
    loop.create_train_state(jax.random.key(0), module, x, num_members=2.5)
