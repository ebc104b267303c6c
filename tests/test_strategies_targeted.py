"""SMI, SCG and SCMI strategies: invariants, NumPy greedy references, query forms, bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import check_invariants
from conftest import count_traces

from jaxal import loop
from jaxal import models
from jaxal import strategies
from jaxal import submodular as sm

FUNCTIONS = {
  "smi": sm.SMI_FUNCTIONS,
  "scg": sm.CG_FUNCTIONS,
  "scmi": sm.CMI_FUNCTIONS,
}
CASES = [(name, f) for name, fs in FUNCTIONS.items() for f in fs]


def _cos(a, b):
  a = a / np.linalg.norm(a, axis=1, keepdims=True)
  b = b / np.linalg.norm(b, axis=1, keepdims=True)
  return (1.0 + np.clip(a @ b.T, -1, 1)) / 2.0


def _np_greedy(value, ground, k):
  """Greedy on a set function ``value(list) -> float`` over the indices ``ground``."""
  chosen = []
  for _ in range(k):
    base = value(chosen)
    gains = [value(chosen + [j]) - base if j not in chosen else -np.inf for j in ground]
    chosen.append(int(ground[int(np.argmax(gains))]))
  return chosen


@pytest.fixture(scope="module")
def setup(trained_digits):
  state, model, params, x, y = trained_digits
  feats = np.asarray(models.predict(model, params, x).features, np.float64)
  return state, model, params, x, np.asarray(y), feats


@pytest.mark.parametrize(("name", "function"), CASES)
def test_registry_strategy_invariants(setup, name, function):
  state, model, params, x, y, _ = setup
  assert name in strategies.names()
  mask = np.asarray(state.labeled_mask)
  s = strategies.get(name, function=function)  # defaults: the rarest labeled class, the others
  for budget in (6, int((~mask).sum())):
    idx = s.acquire(jax.random.key(3), model, params, x, state.labeled_mask, budget)
    check_invariants(idx, len(x), budget, mask, (name, function))
  again = s.acquire(jax.random.key(3), model, params, x, state.labeled_mask, 6)
  first = s.acquire(jax.random.key(3), model, params, x, state.labeled_mask, 6)
  np.testing.assert_array_equal(first, again)


def test_through_the_loop(setup):
  state, model, params, x, y, _ = setup
  s = strategies.smi(query_classes=[int(y[state.labeled_mask][0])], labels=jnp.asarray(y))
  new_state, idx = loop.acquire(state, s, model, params, x, 8)
  check_invariants(idx, len(x), 8, state.labeled_mask)
  assert new_state.num_labeled == state.num_labeled + 8


def test_flqmi_with_class_query_is_the_numpy_greedy(setup):
  # Query = labeled points of a class (from labels); FLQMI over the unlabeled pool.
  state, model, params, x, y, f = setup
  mask = np.asarray(state.labeled_mask)
  c = int(y[mask][0])
  qidx = np.flatnonzero(mask & (y == c))
  sq = _cos(f, f[qidx])
  eta = 0.7

  def value(a):
    if not a:
      return 0.0
    return sq[a].max(0).sum() + eta * sq[a].max(1).sum()

  ground = np.flatnonzero(~mask)
  want = _np_greedy(value, ground, 7)
  got = strategies.smi(query_classes=[c], labels=jnp.asarray(y), eta=eta).acquire(
    jax.random.key(0), model, params, x, state.labeled_mask, 7
  )
  assert np.asarray(got).tolist() == want
  # The same query given as extra inputs (labeled points are never candidates anyway).
  got_inputs = strategies.smi(query=x[qidx], eta=eta).acquire(
    jax.random.key(0), model, params, x, state.labeled_mask, 7
  )
  assert np.asarray(got_inputs).tolist() == want


def test_flcmi_with_index_sets_is_the_numpy_greedy(setup):
  # Query and private given as unlabeled pool indices: excluded from the selection.
  state, model, params, x, y, f = setup
  mask = np.asarray(state.labeled_mask)
  unl = np.flatnonzero(~mask)
  qidx, pidx = unl[:3], unl[3:5]
  k, sq, sp = _cos(f, f), _cos(f, f[qidx]), _cos(f, f[pidx])
  np.fill_diagonal(k, 1.0)
  ground = np.setdiff1d(unl, np.concatenate([qidx, pidx]))
  eta, nu = 1.0, 0.8
  qmax, pmax = sq.max(1)[ground], sp.max(1)[ground]

  def value(a):
    amax = k[a][:, ground].max(0) if a else np.zeros(len(ground))
    return np.maximum(np.minimum(amax, eta * qmax) - nu * pmax, 0).sum()

  want = _np_greedy(value, ground, 6)
  got = strategies.scmi(query=qidx, private=pidx.tolist(), nu=nu).acquire(
    jax.random.key(0), model, params, x, state.labeled_mask, 6
  )
  assert np.asarray(got).tolist() == want
  assert not set(want) & set(qidx.tolist() + pidx.tolist())


def test_logdetcg_with_labeled_private_is_the_numpy_greedy(setup):
  state, model, params, x, y, f = setup
  mask = np.asarray(state.labeled_mask)
  pidx = np.flatnonzero(mask)  # private="labeled"
  lam, nu = 0.5, 0.9
  k, sp, spp = _cos(f, f), _cos(f, f[pidx]), _cos(f[pidx], f[pidx])
  np.fill_diagonal(k, 1.0)
  np.fill_diagonal(spp, 1.0)
  mp = spp + lam * np.eye(len(pidx))

  def value(a):
    if not a:
      return 0.0
    sap = nu * sp[a]
    return np.linalg.slogdet(
      k[np.ix_(a, a)] + lam * np.eye(len(a)) - sap @ np.linalg.solve(mp, sap.T)
    )[1]

  want = _np_greedy(value, np.flatnonzero(~mask), 5)
  got = strategies.scg(function="logdetcg", lam=lam, nu=nu).acquire(
    jax.random.key(0), model, params, x, state.labeled_mask, 5
  )
  assert np.asarray(got).tolist() == want


def test_rare_class_query_finds_the_class(setup):
  # On a trained model, FLQMI with the labeled examples of a class picks mostly that class.
  state, model, params, x, y, _ = setup
  mask = np.asarray(state.labeled_mask)
  c = int(np.bincount(y[mask]).argmax())
  idx = strategies.smi(query_classes=[c], labels=jnp.asarray(y)).acquire(
    jax.random.key(0), model, params, x, state.labeled_mask, 5
  )
  share = (y[np.asarray(idx)] == c).mean()
  assert share > (y[~mask] == c).mean()


def test_one_compile_per_query_bucket(setup):
  # Two rounds whose class query grows within one size bucket reuse the compiled greedy.
  state, model, params, x, y, _ = setup
  mask = np.asarray(state.labeled_mask)
  s = strategies.smi(query="labeled")
  s.acquire(jax.random.key(0), model, params, x, state.labeled_mask, 4)
  more = mask.copy()
  more[np.flatnonzero(~mask)[0]] = True  # 16 labeled: the same bucket of 16
  with count_traces() as c:
    idx = s.acquire(jax.random.key(0), model, params, x, jnp.asarray(more), 4)
  check_invariants(idx, len(x), 4, more)
  assert c["greedy_core"] == 0


def test_gradient_embeddings(setup):
  state, model, params, x, y, _ = setup
  for s in (
    strategies.smi(query_classes=[1, 2], labels=jnp.asarray(y), embedding="gradients"),
    strategies.scmi(function="logdetcmi", embedding="gradients", optimizer="lazy"),
  ):
    idx = s.acquire(jax.random.key(1), model, params, x, state.labeled_mask, 6)
    check_invariants(idx, len(x), 6, state.labeled_mask)


# --- bad input ---------------------------------------------------------------------------------


def _acquire(s, setup, budget=4, mask=None):
  state, model, params, x, _, _ = setup
  mask = state.labeled_mask if mask is None else mask
  return s.acquire(jax.random.key(0), model, params, x, mask, budget)


def test_bad_query_and_private_sets(setup):
  state, model, params, x, y, _ = setup
  mask = np.asarray(state.labeled_mask)
  lab, unl = np.flatnonzero(mask), np.flatnonzero(~mask)
  with pytest.raises(ValueError, match=r"query is empty \(shape \(0,\)\)"):
    strategies.smi(query=[])
  with pytest.raises(ValueError, match="query is empty: got shape \\(0, 8, 8\\)"):
    strategies.smi(query=x[:0])
  with pytest.raises(ValueError, match="private mask of shape \\(90,\\) selects no point"):
    strategies.scg(private=np.zeros(90, bool))
  with pytest.raises(ValueError, match=r"query indices repeat: \[3\]"):
    strategies.smi(query=[3, 3])
  with pytest.raises(ValueError, match="give query= or query_classes=, not both"):
    strategies.smi(query=[1], query_classes=[2])
  with pytest.raises(ValueError, match="query_classes must be a non-empty list of int"):
    strategies.smi(query_classes=[])
  with pytest.raises(ValueError, match=r"query indices must lie in \[0, 90\).*\[90\]"):
    _acquire(strategies.smi(query=[int(unl[0]), 90]), setup)
  with pytest.raises(
    ValueError, match=rf"private indices \[{lab[0]}\] are labeled.*private_classes="
  ):
    _acquire(strategies.scg(private=[int(lab[0]), int(unl[0])]), setup)
  with pytest.raises(ValueError, match=r"query_classes=\[99\] match none of the 15 labeled points"):
    _acquire(strategies.smi(query_classes=[99], labels=jnp.asarray(y)), setup)
  with pytest.raises(ValueError, match="the model rejects query inputs of shape \\(5, 5\\)"):
    _acquire(strategies.smi(query=jnp.ones((3, 5, 5))), setup)
  with pytest.raises(ValueError, match=r"labels must have shape \(90,\)"):
    _acquire(strategies.smi(query_classes=[1], labels=jnp.asarray(y[:10])), setup)
  with pytest.raises(ValueError, match="query='rarest' needs labeled points"):
    _acquire(strategies.smi(), setup, mask=jnp.zeros(len(x), bool))
  with pytest.raises(ValueError, match="budget=75 is larger than the 74 unlabeled points left"):
    _acquire(strategies.smi(query=[int(unl[0])]), setup, budget=75)
  with pytest.raises(ValueError, match="unknown SMI function 'flcg'"):
    strategies.smi(function="flcg")
  with pytest.raises(ValueError, match="unknown embedding"):
    strategies.scg(embedding="logits")
  with pytest.raises(ValueError, match="eta must be a finite number >= 0.0"):
    strategies.scmi(eta=-0.1)
  with pytest.raises(ValueError, match="unknown query set name 'all'"):
    strategies.smi(query="all")


def test_logdet_not_positive_definite_names_the_ridge(setup):
  # A large eta makes the joint kernel indefinite; without a ridge that is an error, not NaN.
  s = strategies.smi(function="logdetmi", eta=5.0, lam=0.0, query="labeled")
  with pytest.raises(ValueError, match="not positive definite.*lam"):
    _acquire(s, setup, budget=6)
