"""The stateless loop: bookkeeping properties, training, one compile across rounds."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import check_invariants
from conftest import count_traces
from flax import nnx
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from jaxal import datasets
from jaxal import loop
from jaxal import models
from jaxal import strategies


# derandomize: the same 60 examples every run, so their shapes' compiled programs come from
# the persistent compilation cache on a second run instead of compiling again.
@settings(max_examples=60, deadline=None, derandomize=True)
@given(n=st.integers(1, 40), initial=st.integers(0, 10), data=st.data())
def test_label_never_loses_or_duplicates(n, initial, data):
  initial = min(initial, n)
  state = loop.init(jax.random.key(n), n, num_initial=initial)
  seen = list(np.asarray(state.labeled_indices))
  rounds = data.draw(st.integers(0, 6))
  for r in range(rounds):
    unlabeled = [i for i in range(n) if i not in seen]
    if not unlabeled:
      break
    batch = data.draw(
      st.lists(st.sampled_from(unlabeled), min_size=1, max_size=len(unlabeled), unique=True)
    )
    # A bad batch (duplicate / labeled / out of range) is refused and changes nothing.
    bad = data.draw(st.sampled_from(["dup", "labeled", "range", "none"]))
    before = state
    if bad == "dup":
      with pytest.raises(ValueError, match="duplicate"):
        loop.label(state, np.array(batch + batch[:1]))
    elif bad == "labeled" and seen:
      with pytest.raises(ValueError, match="already-labeled"):
        loop.label(state, np.array(batch + seen[:1]))
    elif bad == "range":
      with pytest.raises(ValueError, match="outside the pool"):
        loop.label(state, np.array(batch + [n]))
    assert state is before
    state = loop.label(state, np.array(batch))
    seen += batch
    assert int(state.round) == r + 1
  mask = np.asarray(state.labeled_mask)
  order = np.asarray(state.labeled_indices)
  assert sorted(order.tolist()) == sorted(seen)
  assert len(set(order.tolist())) == len(order)  # never acquired twice
  np.testing.assert_array_equal(np.flatnonzero(mask), np.sort(order))  # never lost
  assert int(state.round) == len(state.history) - (1 if initial else 0)


def test_init_is_deterministic_and_validates():
  a = loop.init(jax.random.key(3), 50, num_initial=7)
  b = loop.init(jax.random.key(3), 50, num_initial=7)
  np.testing.assert_array_equal(a.labeled_indices, b.labeled_indices)
  assert a.num_labeled == 7 and int(a.round) == 0
  c = loop.init(jax.random.key(3), 10, initial_indices=jnp.array([1, 4]))
  np.testing.assert_array_equal(np.flatnonzero(c.labeled_mask), [1, 4])
  with pytest.raises(TypeError, match="typed key"):
    loop.init(jax.random.PRNGKey(0), 10)
  with pytest.raises(ValueError, match="num_initial=11 is larger than the pool of 10"):
    loop.init(jax.random.key(0), 10, num_initial=11)
  with pytest.raises(ValueError, match="duplicate"):
    loop.init(jax.random.key(0), 10, initial_indices=[1, 1])
  with pytest.raises(ValueError, match=r"idx must have shape \[batch\]"):
    loop.label(a, np.zeros((2, 2), np.int32))
  with pytest.raises(TypeError, match="integers"):
    loop.label(a, np.array([0.5]))


def test_init_takes_numpy_integers_and_refuses_bools():
  a = loop.init(jax.random.key(3), 50, num_initial=7)
  b = loop.init(jax.random.key(3), np.int64(50), num_initial=np.int32(7))
  np.testing.assert_array_equal(a.labeled_indices, b.labeled_indices)
  assert b.labeled_mask.shape == (50,)
  with pytest.raises(TypeError, match="num_points must be a positive int .* got True of type bool"):
    loop.init(jax.random.key(0), True)
  with pytest.raises(
    ValueError, match=r"num_points must be a positive int \(the pool size\), got 0"
  ):
    loop.init(jax.random.key(0), 0)
  with pytest.raises(TypeError, match="num_initial must be a non-negative int, got True"):
    loop.init(jax.random.key(0), 10, num_initial=True)
  with pytest.raises(TypeError, match="num_initial must be a non-negative int, got 2.0"):
    loop.init(jax.random.key(0), 10, num_initial=2.0)


@pytest.fixture(scope="module")
def digits_small():
  ds = datasets.load_digits()
  return ds.x_train[:300], ds.y_train[:300], ds.x_test, ds.y_test


def test_fit_learns_and_one_compile_across_rounds(digits_small):
  x, y, xt, yt = digits_small
  module = models.MLP(num_classes=10, hidden=(32,))
  key = jax.random.key(0)
  state = loop.init(key, len(x), num_initial=100)
  ts = loop.create_train_state(key, module, x)
  strategy = strategies.entropy()
  with count_traces() as c:
    for _ in range(3):
      state, ts, idx = loop.run_round(
        state, ts, strategy=strategy, x=x, y=y, budget=10, num_steps=150
      )
      assert idx.shape == (10,)
  assert c["_fit"] == 1
  assert c["_predict_pool"] == 1
  assert c["top_k_core"] == 1
  assert c["_entropy_checked"] == 1
  model, params = models.from_train_state(ts)
  assert loop.accuracy(model, params, xt, yt) > 0.6
  assert state.num_labeled == 130 and int(state.round) == 3


def test_run_round_is_reproducible_and_acquires_unlabeled(digits_small):
  x, y, _, _ = digits_small
  module = models.MLP(num_classes=10, hidden=(16,))
  outs = []
  for _ in range(2):
    key = jax.random.key(5)
    state = loop.init(key, len(x), num_initial=20)
    ts = loop.create_train_state(key, module, x)
    mask0 = np.asarray(state.labeled_mask)
    state, ts, idx = loop.run_round(
      state, ts, strategy=strategies.bald(num_samples=4), x=x, y=y, budget=15, num_steps=20
    )
    assert not mask0[np.asarray(idx)].any()
    outs.append(np.asarray(idx))
  np.testing.assert_array_equal(outs[0], outs[1])


def test_warm_start_keeps_parameters(digits_small):
  x, y, _, _ = digits_small
  module = models.MLP(num_classes=10, hidden=(8,))
  key = jax.random.key(1)
  ts = loop.create_train_state(key, module, x)
  mask = jnp.zeros(len(x), bool).at[:10].set(True)
  zero_steps = loop.fit(key, ts, x, y, mask, num_steps=0, reinitialize=False)
  jax.tree.map(np.testing.assert_array_equal, zero_steps.params, ts.params)
  fresh = loop.fit(key, ts, x, y, mask, num_steps=0, reinitialize=True)
  assert not np.allclose(fresh.params["head"]["kernel"], ts.params["head"]["kernel"])


def test_acquire_bad_input_changes_nothing(digits_small):
  x, y, _, _ = digits_small
  module = models.MLP(num_classes=10, hidden=(8,))
  key = jax.random.key(2)
  state = loop.init(key, len(x), num_initial=290)
  ts = loop.create_train_state(key, module, x)
  model, params = models.from_train_state(ts)
  for budget, err, msg in [
    (0, ValueError, "budget must be a positive int"),
    (11, ValueError, "budget=11 is larger than the 10 unlabeled"),
    (2.0, TypeError, "budget must be a positive int"),
  ]:
    with pytest.raises(err, match=msg):
      loop.acquire(state, strategies.entropy(), model, params, x, budget)
  with pytest.raises(ValueError, match="same number of points"):
    loop.acquire(state, strategies.entropy(), model, params, x[:10], 1)
  with pytest.raises(ValueError, match="at least one labeled point"):
    loop.fit(key, ts, x, y, jnp.zeros(len(x), bool))
  with pytest.raises(TypeError, match="Strategy"):
    loop.acquire(state, "entropy", model, params, x, 1)
  assert state.num_labeled == 290


def test_fit_takes_numpy_integers_and_refuses_bools(digits_small):
  x, y, _, _ = digits_small
  x, y = x[:40], y[:40]
  key = jax.random.key(5)
  ts = loop.create_train_state(key, models.MLP(num_classes=10, hidden=(8,)), x)
  mask = jnp.zeros(len(x), bool).at[:10].set(True)
  want = loop.fit(key, ts, x, y, mask, num_steps=2, batch_size=8)
  got = loop.fit(
    key, ts, x, y, mask, num_steps=np.int64(2), batch_size=np.int32(8), reinitialize=np.bool_(True)
  )
  jax.tree.map(np.testing.assert_array_equal, got.params, want.params)
  with pytest.raises(TypeError, match="batch_size must be a positive int, got True of type bool"):
    loop.fit(key, ts, x, y, mask, batch_size=True)
  with pytest.raises(TypeError, match="num_steps must be a non-negative int, got False"):
    loop.fit(key, ts, x, y, mask, num_steps=False)
  with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
    loop.fit(key, ts, x, y, mask, batch_size=0)
  with pytest.raises(TypeError, match="reinitialize must be True or False, got 1 of type int"):
    loop.fit(key, ts, x, y, mask, reinitialize=1)
  state = loop.init(key, len(x), initial_indices=np.arange(10))
  with pytest.raises(TypeError, match="num_steps must be a non-negative int, got 1.5"):
    loop.run_round(state, ts, strategy=strategies.random(), x=x, y=y, budget=2, num_steps=1.5)
  with pytest.raises(ValueError, match="x and state.labeled_mask must have the same number"):
    loop.run_round(state, ts, strategy=strategies.random(), x=x[:30], y=y[:30], budget=2)


def test_acquire_leaves_the_budget_to_the_strategy():
  # The strategy's acquire validates (key, pool, labeled_mask, budget) at its entry:
  # loop.acquire passes budget through as given and checks only what it alone knows.
  seen = []

  def acquire_fn(key, model, params, pool, labeled_mask, budget):
    del key, model, params, pool, labeled_mask
    seen.append(budget)
    return jnp.array([3, 5], jnp.int32)

  state = loop.init(jax.random.key(0), 10)
  new, idx = loop.acquire(
    state, strategies.Strategy("fixed", acquire_fn), None, None, jnp.zeros((10, 2)), np.int64(2)
  )
  assert len(seen) == 1 and type(seen[0]) is np.int64 and seen[0] == 2
  np.testing.assert_array_equal(idx, [3, 5])
  np.testing.assert_array_equal(new.labeled_indices, [3, 5])
  with pytest.raises(ValueError, match="pool and state.labeled_mask must have the same number"):
    loop.acquire(state, strategies.Strategy("fixed", acquire_fn), None, None, jnp.zeros((9, 2)), 2)
  with pytest.raises(TypeError, match="state must be an ALState"):
    loop.acquire(
      state.labeled_mask,
      strategies.Strategy("fixed", acquire_fn),
      None,
      None,
      jnp.zeros((10, 2)),
      2,
    )
  assert len(seen) == 1
  budget = np.int64(3)  # a NumPy budget through a real strategy
  _, idx = loop.acquire(state, strategies.random(), None, None, jnp.zeros((10, 2)), budget)
  assert idx.shape == (3,)


def _nan_apply(params, x, key):
  del params, key
  return jnp.full((x.shape[0], 3), jnp.nan)


def test_non_finite_logits_are_reported():
  model = models.from_apply_fn(_nan_apply)
  x = jnp.zeros((6, 2))
  with pytest.raises(ValueError, match="NaN or \\+inf"):
    strategies.entropy().acquire(jax.random.key(0), model, None, x, jnp.zeros(6, bool), 2)
  with pytest.raises(ValueError, match="NaN or \\+inf"):
    strategies.bald(num_samples=2).acquire(jax.random.key(0), model, None, x, jnp.zeros(6, bool), 2)


def test_every_registered_strategy_respects_invariants(trained_digits):
  # The strategy tests' shared model and pool (90 digits, 15 labeled), and their budget of 8:
  # a worker that ran those already holds these compiled programs.
  state, model, params, x, _ = trained_digits
  budget = 8
  # The budget equal to the whole unlabeled pool too: the same shapes with all but 8 points
  # labeled (8 kept from the shared pool's unlabeled ones), so no strategy compiles again.
  rest = np.ones(len(x), bool)
  rest[np.flatnonzero(~np.asarray(state.labeled_mask))[::9][:budget]] = False
  assert int((~rest).sum()) == budget
  for name in strategies.names():
    strategy = strategies.get(name)
    for mask in (np.asarray(state.labeled_mask), rest):
      idx = np.asarray(
        strategy.acquire(jax.random.key(9), model, params, x, jnp.asarray(mask), budget)
      )
      check_invariants(idx, len(x), budget, mask, name)


def test_starting_and_labeling_compile_one_program_per_batch_size():
  """An ALState starts from host arrays and each labeling is one cached program: no eager
  scatter, index normalisation or conversion per pool size."""
  key = jax.random.key(0)
  jax.clear_caches()
  with count_traces() as c:
    state = loop.init(key, 37, initial_indices=np.array([1, 2]))
    state = loop.label(state, np.array([7, 9]))
    state = loop.label(state, np.array([11, 30]))
  assert c["set_true"] == 1, dict(c.counts)  # batches of 2: one program for all three
  assert set(c.counts) <= {"set_true", "add"}, dict(c.counts)  # add: the round, once
  np.testing.assert_array_equal(
    np.flatnonzero(np.asarray(state.labeled_mask)), [1, 2, 7, 9, 11, 30]
  )
  assert int(state.round) == 2 and [h.tolist() for h in state.history] == [[1, 2], [7, 9], [11, 30]]


def test_create_train_state_traces_the_initialisation_once_per_module_and_shape():
  module = models.MLP(num_classes=3, hidden=(8, 6))
  x = np.ones((5, 4), np.float32)
  jax.clear_caches()
  with count_traces() as c:
    states = [loop.create_train_state(jax.random.key(k), module, x) for k in range(3)]
  assert c["_init_jit"] == 1, dict(c.counts)
  # The later, untraced calls keep linen's definition order too.
  for ts in states:
    assert list(ts.params) == ["dense_0", "dense_1", "head"]
  eager = module.init({"params": jax.random.key(2)}, x[:1])["params"]
  jax.tree.map(np.testing.assert_array_equal, states[2].params, eager)


def test_train_step_is_one_compiled_step_equal_to_the_eager_one():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(12, 5)).astype(np.float32))
  y, w = jnp.arange(12) % 3, jnp.ones(12)
  ts = loop.create_train_state(jax.random.key(0), models.MLP(num_classes=3, hidden=(8,)), x)
  with count_traces() as c:
    steps = [ts]
    for i in range(3):
      steps.append(loop.train_step(steps[-1], (x, y, w), jax.random.key(i))[0])
  assert c["_train_step_eager"] == 1, dict(c.counts)
  with jax.disable_jit():
    eager = ts
    for i in range(3):
      eager, metrics = loop.train_step(eager, (x, y, w), jax.random.key(i))
  assert int(steps[-1].step) == int(eager.step) == 3
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
    steps[-1].params,
    eager.params,
  )


def test_unknown_strategy_lists_valid_names():
  with pytest.raises(ValueError, match="unknown strategy 'nope'; valid names are: .*bald.*entropy"):
    strategies.get("nope")


# ---------------------------------------------------------------------------
# The papers' protocol: epochs over the labeled set until a training accuracy.


@pytest.fixture(scope="module")
def tiny():
  ds = datasets.load_digits()
  x, y = ds.x_train[:120], ds.y_train[:120]
  mask = jnp.zeros(len(x), bool).at[jnp.arange(0, 120, 3)].set(True)  # 40 labeled
  ts = loop.create_train_state(jax.random.key(0), models.MLP(num_classes=10, hidden=(16,)), x)
  return x, y, mask, ts


def test_fit_stops_once_train_accuracy_reached(tiny):
  x, y, mask, ts = tiny
  key = jax.random.key(1)
  out, info = loop.fit(
    key, ts, x, y, mask, until_train_accuracy=0.9, batch_size=16, max_steps=3000, with_info=True
  )
  epochs = int(info.epochs)
  assert float(info.train_accuracy) >= 0.9 and epochs > 1
  assert int(info.steps) == epochs * 3 == int(out.step)  # ceil(40 / 16) = 3 minibatches
  # The same key, one epoch fewer: the same trajectory, stopped before the threshold.
  _, short = loop.fit(
    key, ts, x, y, mask, epochs=epochs - 1, until_train_accuracy=0.9, batch_size=16, with_info=True
  )
  assert int(short.epochs) == epochs - 1 and float(short.train_accuracy) < 0.9
  # The running training accuracy is a fraction of the 40 labeled points.
  np.testing.assert_allclose(
    float(info.train_accuracy) * 40, round(float(info.train_accuracy) * 40)
  )


def test_fit_epochs_and_max_steps_bound_training(tiny):
  x, y, mask, ts = tiny
  key = jax.random.key(2)
  _, info = loop.fit(key, ts, x, y, mask, epochs=2, batch_size=16, with_info=True)
  assert (int(info.epochs), int(info.steps)) == (2, 6)
  # Random labels are never fitted to 100 %: max_steps stops the loop mid-epoch.
  noisy = jax.random.randint(jax.random.key(3), y.shape, 0, 10)
  out, info = loop.fit(
    key, ts, x, noisy, mask, until_train_accuracy=1.0, max_steps=7, batch_size=16, with_info=True
  )
  assert int(info.steps) == 7 == int(out.step) and int(info.epochs) == 3


@pytest.mark.parametrize(
  "options",
  [{"num_steps": 20}, {"until_train_accuracy": 0.8, "batch_size": 8, "max_steps": 60}],
  ids=["fixed", "epochs"],
)
def test_fit_reads_labeled_points_only(tiny, options):
  x, y, mask, ts = tiny
  # Unlabeled labels poisoned (out of range too) and unlabeled inputs changed: same training.
  poisoned_y = jnp.where(mask, y, jnp.where(jnp.arange(len(y)) % 2 == 0, 999, -1))
  poisoned_x = jnp.where(mask[:, None, None], x, 1e3)
  key = jax.random.key(4)
  want = loop.fit(key, ts, x, y, mask, **options)
  got = loop.fit(key, ts, poisoned_x, poisoned_y.astype(y.dtype), mask, **options)
  jax.tree.map(np.testing.assert_array_equal, got.params, want.params)


def test_epoch_protocol_one_compile_across_rounds(digits_small):
  x, y, _, _ = digits_small
  x, y = x[:150], y[:150]
  module = models.MLP(num_classes=10, hidden=(16,))
  key = jax.random.key(6)
  state = loop.init(key, len(x), num_initial=20)
  ts = loop.create_train_state(key, module, x)
  with count_traces() as c:
    for _ in range(3):  # 20, 30, 40 labeled: the loop's shapes never change
      state, ts, _ = loop.run_round(
        state,
        ts,
        strategy=strategies.margin(),
        x=x,
        y=y,
        budget=10,
        until_train_accuracy=0.9,
        batch_size=16,
        max_steps=400,
      )
  assert c["_fit"] == 1
  assert state.num_labeled == 50


def test_protocols_hold_the_published_settings(tiny):
  p = loop.PROTOCOLS
  assert set(p) >= {"badge", "distil", "fixed"}
  assert (p["badge"].until_train_accuracy, p["badge"].batch_size) == (0.99, 64)
  assert p["badge"].learning_rate == 1e-4 and p["badge"].epochs is None
  assert (p["distil"].until_train_accuracy, p["distil"].epochs) == (0.95, 150)
  assert (p["distil"].optimizer, p["badge"].optimizer) == ("sgd", "adam")
  assert p["fixed"].fit_kwargs() == {"num_steps": 300, "batch_size": 32}
  x, y, mask, ts = tiny
  kwargs = {**p["distil"].fit_kwargs(), "max_steps": 5}
  ts = ts.replace(tx=p["distil"].make_tx(), opt_state=p["distil"].make_tx().init(ts.params))
  out, info = loop.fit(jax.random.key(0), ts, x, y, mask, with_info=True, **kwargs)
  assert int(info.steps) == 5 == int(out.step)


def test_training_options_are_refused_before_any_work(tiny, digits_small):
  x, y, mask, ts = tiny
  key = jax.random.key(0)
  state = loop.init(key, len(x), num_initial=10)
  cases = [
    ({"batch_size": 0}, ValueError, "batch_size must be a positive int, got 0"),
    ({"epochs": 0}, ValueError, "epochs must be a positive int, got 0"),
    ({"until_train_accuracy": 0.0}, ValueError, r"until_train_accuracy must be .* in \(0.0, 1.0\]"),
    ({"until_train_accuracy": 1.5}, ValueError, "until_train_accuracy"),
    ({"until_train_accuracy": 0.9, "max_steps": 0}, ValueError, "max_steps must be a positive"),
    ({"epochs": 2, "num_steps": 10}, ValueError, "num_steps=10 is the fixed protocol's"),
    ({"with_info": 1}, TypeError, "with_info must be True or False"),
  ]
  with count_traces() as c:
    for options, err, msg in cases:
      with pytest.raises(err, match=msg):
        loop.fit(key, ts, x, y, mask, **options)
    for budget, err, msg in [
      (5.0, TypeError, "budget must be a positive int"),
      (0, ValueError, "budget must be a positive int"),
      (len(x), ValueError, "larger than the 110 unlabeled"),
    ]:
      with pytest.raises(err, match=msg):
        loop.run_round(state, ts, strategy=strategies.random(), x=x, y=y, budget=budget)
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
      loop.run_round(state, ts, strategy=strategies.random(), x=x, y=y, budget=2, batch_size=0)
  assert c["_fit"] == 0  # refused before training started
  for empty in ([], np.zeros((0,), np.int32), jnp.zeros((0,), jnp.int32)):
    with pytest.raises(ValueError, match="idx is empty"):
      loop.label(state, empty)
  assert int(state.round) == 0 and state.num_labeled == 10


# ---------------------------------------------------------------------------
# User models: linen with BatchNorm and Flax's `deterministic=`, NNX.


class BNDet(nn.Module):
  """Flax's own convention (`deterministic=`) with BatchNorm and dropout."""

  @nn.compact
  def __call__(self, x, deterministic: bool = True):
    z = nn.Dense(16)(x.reshape(x.shape[0], -1))
    z = nn.relu(nn.BatchNorm(use_running_average=deterministic)(z))
    return nn.Dense(10, name="head")(nn.Dropout(0.2)(z, deterministic=deterministic)), z


class NNXNet(nnx.Module):
  def __init__(self, din, k, *, rngs: nnx.Rngs):
    self.body = nnx.Linear(din, 16, rngs=rngs)
    self.bn = nnx.BatchNorm(16, rngs=rngs)
    self.drop = nnx.Dropout(0.2, rngs=rngs)
    self.head = nnx.Linear(16, k, rngs=rngs)

  def __call__(self, x):
    z = jax.nn.relu(self.bn(self.body(x.reshape(x.shape[0], -1))))
    return self.head(self.drop(z)), z


def _host(tree):
  return jax.tree.map(lambda l: np.asarray(jax.random.key_data(l) if checks_is_key(l) else l), tree)


def checks_is_key(leaf):
  return jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key)


@pytest.mark.parametrize("kind", ["linen_batchnorm", "nnx"])
def test_user_models_fit_predict_and_acquire(digits_small, kind):
  x, y, xt, yt = digits_small
  x, y = x[:150], y[:150]
  key = jax.random.key(7)
  module = BNDet() if kind == "linen_batchnorm" else functools.partial(NNXNet, 64, 10)
  ts = loop.create_train_state(key, module, x)
  stats0 = _host(ts.model_state)
  state = loop.init(key, len(x), num_initial=60)
  with count_traces() as c:
    for _ in range(2):
      before = np.asarray(state.labeled_mask)
      state, ts, idx = loop.run_round(
        state,
        ts,
        strategy=strategies.bald(num_samples=3),
        x=x,
        y=y,
        budget=10,
        until_train_accuracy=0.9,
        batch_size=16,
        max_steps=1500,
      )
      check_invariants(idx, len(x), 10, before)
  assert c["_fit"] == 1
  # Training updated the running averages; acquisition left them alone.
  stats1 = _host(ts.model_state)
  mean = stats1["batch_stats"]["BatchNorm_0"]["mean"] if kind != "nnx" else stats1["bn"]["mean"]
  mean0 = stats0["batch_stats"]["BatchNorm_0"]["mean"] if kind != "nnx" else stats0["bn"]["mean"]
  assert not np.allclose(mean, mean0)
  model, params = models.from_train_state(ts)
  loop.acquire(state, strategies.badge(), model, params, x, 5)
  jax.tree.map(np.testing.assert_array_equal, _host(ts.model_state), stats1)
  assert loop.accuracy(model, params, xt, yt) > 0.5


def test_nnx_instance_cannot_be_reinitialised(tiny):
  x, y, mask, _ = tiny
  ts = loop.create_train_state(jax.random.key(0), NNXNet(64, 10, rngs=nnx.Rngs(0)), x)
  with pytest.raises(ValueError, match="cannot be re-initialised: pass a function of rngs"):
    loop.fit(jax.random.key(1), ts, x, y, mask, num_steps=2)
  warm = loop.fit(jax.random.key(1), ts, x, y, mask, num_steps=2, reinitialize=False)
  assert int(warm.step) == 2
  with pytest.raises(TypeError, match="must return a flax.nnx.Module"):
    loop.create_train_state(jax.random.key(0), lambda rngs: "net", x)


# ---------------------------------------------------------------------------
# Orbax checkpoints of train states.


def _assert_same_tree(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  jax.tree.map(np.testing.assert_array_equal, _host(a), _host(b))


@pytest.mark.parametrize("kind", ["linen_batchnorm", "nnx"])
def test_orbax_round_trip(tiny, tmp_path, kind):
  x, y, mask, _ = tiny
  module = BNDet() if kind == "linen_batchnorm" else functools.partial(NNXNet, 64, 10)
  fresh = loop.create_train_state(jax.random.key(0), module, x)
  trained = loop.fit(jax.random.key(1), fresh, x, y, mask, num_steps=5)
  path = loop.save_train_state(tmp_path / "ckpt", trained)
  back = loop.restore_train_state(path, loop.create_train_state(jax.random.key(9), module, x))
  _assert_same_tree(back.params, trained.params)
  _assert_same_tree(back.model_state, trained.model_state)
  _assert_same_tree(back.opt_state, trained.opt_state)
  assert int(back.step) == 5
  m1, p1 = models.from_train_state(back)
  m0, p0 = models.from_train_state(trained)
  np.testing.assert_array_equal(models.predict(m1, p1, x).logits, models.predict(m0, p0, x).logits)
  # Training goes on from the restored state exactly as from the original.
  a = loop.fit(jax.random.key(2), back, x, y, mask, num_steps=3, reinitialize=False)
  b = loop.fit(jax.random.key(2), trained, x, y, mask, num_steps=3, reinitialize=False)
  _assert_same_tree(a.params, b.params)


def test_orbax_overwrite_mismatch_and_sharding(tiny, tmp_path):
  x, _, _, ts = tiny
  path = loop.save_train_state(tmp_path / "ckpt", ts)
  with pytest.raises(FileExistsError, match="overwrite=True"):
    loop.save_train_state(path, ts)
  other = loop.create_train_state(jax.random.key(5), models.MLP(num_classes=10, hidden=(16,)), x)
  loop.save_train_state(path, other, overwrite=True)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no partial folder left
  _assert_same_tree(loop.restore_train_state(path, ts).params, other.params)
  wrong = loop.create_train_state(jax.random.key(0), BNDet(), x)
  with pytest.raises(ValueError, match="saved from another model"):
    loop.restore_train_state(path, wrong)
  with pytest.raises(FileNotFoundError, match="no train-state checkpoint"):
    loop.restore_train_state(tmp_path / "missing", ts)
  # A parameter placed on a mesh comes back with the template's sharding.
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("model",))
  spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, "model"))
  sharded = ts.replace(
    params={
      **ts.params,
      "head": {**ts.params["head"], "kernel": jax.device_put(ts.params["head"]["kernel"], spec)},
    }
  )
  p2 = loop.save_train_state(tmp_path / "sharded", sharded)
  back = loop.restore_train_state(p2, sharded)
  assert back.params["head"]["kernel"].sharding == spec
  _assert_same_tree(back.params, ts.params)
