"""BatchBALD, stochastic, GLISTER and adversarial strategies through the loop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import check_invariants

from jaxal import loop
from jaxal import models
from jaxal import strategies

NEW = ("batchbald", "power", "softmax", "softrank", "glister", "deepfool", "bim")


SMALL = {
  "batchbald": dict(num_samples=4, num_joint_samples=32),
  "power": dict(num_samples=4),
  "softmax": dict(score="entropy"),
  "softrank": dict(score="margin"),
  "glister": dict(regularizer="facility_location", lam=0.01),
  "deepfool": dict(max_iter=10),
  "bim": dict(max_iter=20),
}


@pytest.mark.parametrize("name", NEW)
def test_strategy_through_the_loop(trained_digits, name):
  state, model, params, x, _ = trained_digits
  assert name in strategies.names()
  strategy = strategies.get(name, **SMALL[name])
  new_state, idx = loop.acquire(state, strategy, model, params, x, 12)
  check_invariants(idx, len(x), 12, state.labeled_mask)
  assert new_state.num_labeled == state.num_labeled + 12
  again = strategy.acquire(loop.round_keys(state)[1], model, params, x, state.labeled_mask, 12)
  np.testing.assert_array_equal(again, idx)  # same key, same batch


def test_budget_equals_unlabeled_count(trained_digits):
  state, model, params, x, _ = trained_digits
  left = x.shape[0] - state.num_labeled
  for name in ("batchbald", "glister", "deepfool"):
    idx = strategies.get(name, **SMALL[name]).acquire(
      jax.random.key(1), model, params, x, state.labeled_mask, left
    )
    assert (
      sorted(np.asarray(idx).tolist()) == np.flatnonzero(~np.asarray(state.labeled_mask)).tolist()
    )


def test_glister_strategy_with_a_validation_set_and_labels(trained_digits):
  state, model, params, x, y = trained_digits
  val = (x[:20], y[:20])
  s = strategies.glister(validation=val, labels=y, learning_rate=0.01)
  idx = s.acquire(jax.random.key(0), model, params, x, state.labeled_mask, 5)
  assert len(set(np.asarray(idx).tolist())) == 5
  bad = strategies.glister(validation=(x[:20], jnp.full((20,), 12, jnp.int32)))
  with pytest.raises(ValueError, match=r"validation.labels must lie in \[0, 10\)"):
    bad.acquire(jax.random.key(0), model, params, x, state.labeled_mask, 5)
  wrong_input = strategies.glister(validation=(x[:20, :4], y[:20]))
  with pytest.raises(ValueError, match="the model rejects validation inputs"):
    wrong_input.acquire(jax.random.key(0), model, params, x, state.labeled_mask, 5)


def test_bad_factory_arguments():
  with pytest.raises(ValueError, match="num_samples must be an int >= 2"):
    strategies.batchbald(num_samples=1)
  with pytest.raises(ValueError, match="num_samples must be an int >= 2"):
    strategies.power(num_samples=1)
  strategies.power(score="entropy", num_samples=1)  # one-pass scores need no MC samples
  with pytest.raises(ValueError, match="unknown score"):
    strategies.power(score="badge")
  with pytest.raises(ValueError, match="temperature"):
    strategies.softmax(temperature=-1.0)
  with pytest.raises(ValueError, match="needs a finite number lam"):
    strategies.glister(regularizer="diversity")
  with pytest.raises(ValueError, match="max_iter"):
    strategies.deepfool(max_iter=-3)
  with pytest.raises(ValueError, match="step"):
    strategies.bim(step=0.0)


@pytest.mark.parametrize("name", ["batchbald", "power", "glister", "deepfool", "bim"])
def test_rejected_input_shape_leaves_the_state_unchanged(trained_digits, name):
  state, model, params, x, _ = trained_digits
  bad_pool = x.reshape(x.shape[0], -1)[:, :50]  # the MLP's first Dense wants 64 inputs
  with pytest.raises(ValueError, match=r"the model rejects pool inputs of shape \(50,\)"):
    loop.acquire(state, strategies.get(name, **SMALL[name]), model, params, bad_pool, 5)
  assert state.num_labeled == 15 and int(state.round) == 0


def _constant_apply(params, x, dropout_key=None):
  del dropout_key
  return params["b"][None, :] + 0.0 * x.reshape(x.shape[0], -1)[:, :1]


@pytest.mark.parametrize("name", ["deepfool", "bim"])
def test_adversarial_ties_are_broken_at_random(name):
  """A model that never flips: every distance is +inf, so the batch is a random draw."""
  model = models.from_apply_fn(_constant_apply)
  params = {"b": jnp.array([0.0, 1.0, -1.0])}
  pool = jnp.ones((40, 5))
  mask = jnp.arange(40) < 4
  s = strategies.get(name, max_iter=3)
  picks = [np.asarray(s.acquire(jax.random.key(r), model, params, pool, mask, 6)) for r in range(3)]
  for p in picks:
    assert len(set(p.tolist())) == 6 and (p >= 4).all()
  assert not all(np.array_equal(np.sort(p), np.arange(4, 10)) for p in picks)
  assert not np.array_equal(picks[0], picks[1])
