"""The stateless loop: bookkeeping properties, training, one compile across rounds."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import check_invariants
from conftest import count_traces
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from jaxal import datasets
from jaxal import loop
from jaxal import models
from jaxal import strategies


@settings(max_examples=60, deadline=None)
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
  assert c["_forward_batch"] == 1
  assert c["top_k_core"] == 1
  assert c["_entropy"] == 1
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


def test_every_registered_strategy_respects_invariants(digits_small):
  x, y, _, _ = digits_small
  x, y = x[:120], y[:120]
  module = models.MLP(num_classes=10, hidden=(16,))
  key = jax.random.key(4)
  state = loop.init(key, len(x), num_initial=30)
  ts = loop.fit(
    key, loop.create_train_state(key, module, x), x, y, state.labeled_mask, num_steps=30
  )
  model, params = models.from_train_state(ts)
  mask = np.asarray(state.labeled_mask)
  for name in strategies.names():
    strategy = strategies.get(name)
    for budget in (5, int((~mask).sum())):  # budget equal to the whole unlabeled pool too
      idx = np.asarray(
        strategy.acquire(jax.random.key(9), model, params, x, state.labeled_mask, budget)
      )
      check_invariants(idx, len(x), budget, mask, name)


def test_unknown_strategy_lists_valid_names():
  with pytest.raises(ValueError, match="unknown strategy 'nope'; valid names are: .*bald.*entropy"):
    strategies.get("nope")
