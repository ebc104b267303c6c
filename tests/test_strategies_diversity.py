"""Coreset, k-means sampling, submodular and FASS strategies through the loop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import check_invariants

from jaxal import loop
from jaxal import models
from jaxal import scores
from jaxal import selection
from jaxal import strategies
from jaxal import submodular as sm

NAMES = ("coreset", "kmeans_sampling", "submodular", "fass")


@pytest.mark.parametrize("name", NAMES)
def test_strategy_through_the_loop(trained_digits, name):
  state, model, params, x, _ = trained_digits
  assert name in strategies.names()
  strategy = strategies.get(name)
  new_state, idx = loop.acquire(state, strategy, model, params, x, 8)
  check_invariants(idx, len(x), 8, state.labeled_mask)
  assert new_state.num_labeled == state.num_labeled + 8
  again = strategy.acquire(loop.round_keys(state)[1], model, params, x, state.labeled_mask, 8)
  np.testing.assert_array_equal(again, idx)  # same key, same batch


def test_coreset_is_k_center_greedy_on_penultimate_features(trained_digits):
  state, model, params, x, _ = trained_digits
  feats = models.predict(model, params, x).features
  got = strategies.coreset().acquire(jax.random.key(1), model, params, x, state.labeled_mask, 10)
  np.testing.assert_array_equal(
    got, selection.k_center_greedy(None, feats, 10, labeled_mask=state.labeled_mask)
  )
  # An empty labeled set: the first pick comes from the key.
  empty = jnp.zeros(len(x), bool)
  a = strategies.coreset().acquire(jax.random.key(2), model, params, x, empty, 6)
  check_invariants(a, len(x), 6, empty)
  np.testing.assert_array_equal(a, selection.k_center_greedy(jax.random.key(2), feats, 6))


@pytest.mark.parametrize("function", sm.FUNCTIONS)
def test_fass_filters_by_uncertainty_then_maximises(trained_digits, function):
  state, model, params, x, _ = trained_digits
  mask = state.labeled_mask
  budget, top_n = 5, 3
  got = strategies.fass(uncertainty="margin", function=function, top_n=top_n).acquire(
    jax.random.key(3), model, params, x, mask, budget
  )
  check_invariants(got, len(x), budget, mask)
  preds = models.predict(model, params, x)
  filtered = selection.top_k(scores.margin(preds.logits), top_n * budget, labeled_mask=mask)
  assert set(np.asarray(got).tolist()) <= set(np.asarray(filtered).tolist())
  f = preds.features[filtered]
  if function == "feature_based":
    fn = sm.feature_based(f)
  else:
    fn = sm.make(function, kernel=sm.similarity_kernel(f))
  np.testing.assert_array_equal(got, filtered[sm.greedy(fn, budget).indices])


def test_fass_when_the_filter_holds_every_unlabeled_point(trained_digits):
  state, model, params, x, _ = trained_digits
  left = x.shape[0] - state.num_labeled
  got = strategies.fass(optimizer="lazy").acquire(
    jax.random.key(4), model, params, x, state.labeled_mask, left
  )
  assert (
    sorted(np.asarray(got).tolist()) == np.flatnonzero(~np.asarray(state.labeled_mask)).tolist()
  )


@pytest.mark.parametrize(
  "optimizer,num_neighbors", [("greedy", None), ("lazy", 10), ("stochastic", None)]
)
def test_submodular_strategy_over_the_unlabeled_pool(trained_digits, optimizer, num_neighbors):
  state, model, params, x, _ = trained_digits
  mask = state.labeled_mask
  strategy = strategies.submodular(
    "graph_cut", optimizer=optimizer, lam=0.4, num_neighbors=num_neighbors
  )
  key = jax.random.key(5)
  got = strategy.acquire(key, model, params, x, mask, 7)
  check_invariants(got, len(x), 7, mask)
  feats = models.predict(model, params, x).features
  kernel = (
    sm.similarity_kernel(feats) if num_neighbors is None else sm.knn_kernel(feats, num_neighbors)
  )
  fn = sm.graph_cut(kernel, lam=0.4, ground_mask=~mask)
  np.testing.assert_array_equal(got, sm.maximize(fn, 7, optimizer=optimizer, key=key).indices)


def test_bad_options_are_clear():
  with pytest.raises(
    ValueError,
    match="unknown uncertainty 'bald'; valid names are: entropy, least_confidence, margin, ratio",
  ):
    strategies.fass(uncertainty="bald")
  with pytest.raises(ValueError, match="valid names are: facility_location, feature_based"):
    strategies.fass(function="log_det")
  with pytest.raises(ValueError, match="valid names are: facility_location, feature_based"):
    strategies.submodular("disparity_min")
  with pytest.raises(ValueError, match=r"lam must be a finite number in \[0.0, 1.0\]"):
    strategies.submodular("graph_cut", lam=2.0)
  with pytest.raises(ValueError, match=r"alpha must be a finite number in \(0.0, 1.0\]"):
    strategies.fass(function="saturated_coverage", alpha=0.0)
  with pytest.raises(ValueError, match="top_n"):
    strategies.fass(top_n=0)
  with pytest.raises(ValueError, match="valid names are: greedy, lazy, stochastic"):
    strategies.submodular(optimizer="sieve")
  with pytest.raises(ValueError, match="n_init"):
    strategies.kmeans_sampling(n_init=0)


def _logits_only(params, x, key):
  del params, key
  return jnp.stack([x[:, 0], -x[:, 0]], axis=1)


def test_models_without_features_get_a_clear_error():
  model = models.from_apply_fn(_logits_only)
  x = jnp.arange(12.0).reshape(6, 2)
  with pytest.raises(ValueError, match="features were requested"):
    strategies.coreset().acquire(jax.random.key(0), model, None, x, jnp.zeros(6, bool), 2)
