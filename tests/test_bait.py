"""BAIT: the selection against a NumPy reference from the paper's definition, and its invariants.

The reference builds every per-example Fisher matrix densely from its definition,
``F_i = sum_k p_ik g_ik g_ik^T`` with ``g_ik = (e_k - p_i) ⊗ h_i``, inverts
``lam I + M_L + M_S`` explicitly for every candidate set, and runs the greedy forward selection
of ``2 * budget`` points followed by backward pruning to ``budget``, in float64.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import check_invariants
from conftest import count_traces

from jaxal import models
from jaxal import networks
from jaxal import selection
from jaxal import strategies
from jaxal._src.selection import bait as bait_lib

N, D, K = 40, 4, 3


def np_softmax(logits):
  logits = np.asarray(logits, np.float64)
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def ref_fisher(p, h):
  """``sum_k p_k g_k g_k^T``, ``g_k = (e_k - p) ⊗ h``: one example's Fisher, [K*d, K*d]."""
  k = p.shape[0]
  out = np.zeros((k * h.shape[0],) * 2)
  for c in range(k):
    g = np.kron(np.eye(k)[c] - p, h)
    out += p[c] * np.outer(g, g)
  return out


class Ref:
  """The objective and the forward-backward greedy of BAIT, dense and in float64."""

  def __init__(self, logits, features, budget, labeled, lam=1.0, bias=False):
    p = np_softmax(logits)
    h = np.asarray(features, np.float64)
    if bias:
      h = np.concatenate([h, np.ones((h.shape[0], 1))], axis=1)
    self.fishers = np.stack([ref_fisher(p[i], h[i]) for i in range(len(p))])
    self.labeled = np.asarray(labeled, bool)
    self.budget = budget
    n_l = int(self.labeled.sum())
    self.w_l, self.w_s = 1.0 / (n_l + budget), budget / (n_l + budget)
    self.pool_fisher = self.fishers.mean(0)
    dim = self.fishers.shape[-1]
    self.m_l = lam * np.eye(dim) + self.w_l * self.fishers[self.labeled].sum(0)

  def objective(self, chosen):
    m = self.m_l + self.w_s * self.fishers[list(chosen)].sum(0)
    return float(np.trace(np.linalg.inv(m) @ self.pool_fisher))

  def select(self):
    unlabeled = [i for i in range(len(self.labeled)) if not self.labeled[i]]
    chosen: list[int] = []
    for _ in range(min(2 * self.budget, len(unlabeled))):
      cand = [i for i in unlabeled if i not in chosen]
      vals = [self.objective(chosen + [i]) for i in cand]
      chosen.append(cand[int(np.argmin(vals))])  # ties to the lower index
    self.forward = list(chosen)
    while len(chosen) > self.budget:
      vals = [self.objective(chosen[:j] + chosen[j + 1 :]) for j in range(len(chosen))]
      del chosen[int(np.argmin(vals))]  # ties to the earlier pick
    return np.array(chosen), self.objective(chosen)


def make_pool(seed, n=N, d=D, k=K, num_labeled=6, temperature=2.0):
  rng = np.random.default_rng(seed)
  logits = (temperature * rng.normal(size=(n, k))).astype(np.float32)
  features = rng.normal(size=(n, d)).astype(np.float32)
  labeled = np.zeros(n, bool)
  labeled[rng.choice(n, num_labeled, replace=False)] = True
  return logits, features, labeled


def test_factorised_fisher_sums_equal_the_dense_definition():
  logits, features, labeled = make_pool(0)
  p = np_softmax(logits)
  dense = np.stack([ref_fisher(p[i], features[i].astype(np.float64)) for i in range(N)])
  w = np.stack([np.full(N, 1.0 / N), np.where(labeled, 0.5, 0.0)]).astype(np.float32)
  for chunk in (1, 7, N):
    got = bait_lib._fisher_sums(
      jnp.asarray(features), jnp.asarray(p, jnp.float32), jnp.asarray(w), chunk
    )
    got = np.asarray(got).reshape(2, K * D, K * D)
    np.testing.assert_allclose(got[0], dense.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1], 0.5 * dense[labeled].sum(0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
  ("seed", "budget", "num_labeled", "lam", "bias"),
  [
    (0, 5, 6, 1.0, False),
    (1, 3, 0, 1.0, False),
    (2, 8, 10, 0.1, False),
    (3, 5, 6, 1.0, True),
    (4, 1, 3, 0.01, False),
    (5, 12, 14, 1.0, True),  # 26 unlabeled: fewer than 2 * budget forward picks
  ],
)
def test_bait_matches_the_reference(seed, budget, num_labeled, lam, bias):
  logits, features, labeled = make_pool(seed, num_labeled=num_labeled)
  ref = Ref(logits, features, budget, labeled, lam=lam, bias=bias)
  want, want_obj = ref.select()
  got = selection.bait(
    logits, features, budget, labeled_mask=jnp.asarray(labeled), lam=lam, bias=bias
  )
  check_invariants(got, N, budget, labeled)
  np.testing.assert_array_equal(np.asarray(got), want)  # same picks, in forward order
  # The objective of the returned set, and the one tracked by the Woodbury updates.
  np.testing.assert_allclose(ref.objective(np.asarray(got)), want_obj, rtol=1e-12)
  # Both scorings: per-point downdates (the default) and rescoring from the dense blocks.
  # Their float32 Woodbury updates of M_L^{-1} lose about cond(M_L)^2 ulps (2.2e-4 relative
  # at lam = 0.01, where cond(M_L) = 70, under the suite's -O0 flags on an AVX-512 CPU).
  rtol = 4 * np.finfo(np.float32).eps * max(np.linalg.cond(ref.m_l) ** 2, 400.0)
  for incremental in (True, False):
    idx, obj = bait_lib.bait_core(
      jnp.asarray(logits),
      jnp.asarray(features),
      budget,
      jnp.asarray(labeled),
      jnp.float32(lam),
      bias,
      incremental,
    )
    np.testing.assert_array_equal(np.asarray(idx), want)
    np.testing.assert_allclose(float(obj), want_obj, rtol=rtol)


def test_the_scoring_falls_back_to_rescoring_when_the_point_arrays_do_not_fit(monkeypatch):
  logits, features, labeled = make_pool(2, num_labeled=10)
  want, _ = Ref(logits, features, 6, labeled).select()
  dense = bait_lib.dense_bytes(K, D)
  assert bait_lib.incremental_fits(N, K, D, dense + bait_lib.point_bytes(N, K))
  assert not bait_lib.incremental_fits(N, K, D, dense + bait_lib.point_bytes(N, K) - 1)
  core, taken = bait_lib.bait_core, []

  def spy(*args):
    taken.append(args[6])  # incremental
    return core(*args)

  monkeypatch.setattr(bait_lib, "bait_core", spy)
  for limit in (dense, bait_lib.DEFAULT_MEMORY_LIMIT):
    got = selection.bait(logits, features, 6, labeled_mask=jnp.asarray(labeled), memory_limit=limit)
    np.testing.assert_array_equal(np.asarray(got), want)
  assert taken == [False, True]


def test_pruning_is_not_the_forward_prefix():
  # Backward pruning does work: on this pool the kept set is not the first `budget` forward
  # picks, and its objective is lower than theirs.
  logits, features, labeled = make_pool(17, num_labeled=4)
  ref = Ref(logits, features, 6, labeled)
  want, _ = ref.select()
  forward = ref.forward
  assert len(forward) == 12 and set(want) <= set(forward)
  assert list(want) != forward[:6]
  got = selection.bait(logits, features, 6, labeled_mask=jnp.asarray(labeled))
  np.testing.assert_array_equal(np.asarray(got), want)
  assert ref.objective(want) <= ref.objective(forward[:6])


def test_bait_invariants_and_large_magnitudes():
  logits, features, labeled = make_pool(8, num_labeled=12)
  got = selection.bait(logits, features, 9, labeled_mask=jnp.asarray(labeled))
  check_invariants(got, N, 9, labeled)
  # Scaling the features by 2^40 and lam by 2^80 scales every Fisher term alike: same picks,
  # and no overflow although the Fisher entries of the scaled features exceed float32.
  big = selection.bait(
    logits, features * 2.0**40, 9, labeled_mask=jnp.asarray(labeled), lam=2.0**80
  )
  np.testing.assert_array_equal(np.asarray(big), np.asarray(got))
  # Saturated logits (one-hot predictions) and -inf classes stay finite.
  sat = logits * 1e4
  sat[:, 0] = -np.inf
  out = selection.bait(sat, features, 5, labeled_mask=jnp.asarray(labeled))
  check_invariants(out, N, 5, labeled)
  # Every unlabeled point taken.
  all_left = selection.bait(logits, features, N - 12, labeled_mask=jnp.asarray(labeled))
  check_invariants(all_left, N, N - 12, labeled)


def test_one_compile_per_shape():
  logits, features, labeled = make_pool(9)
  selection.bait(logits, features, 4, labeled_mask=jnp.asarray(labeled))
  other = labeled.copy()
  other[np.flatnonzero(~labeled)[:3]] = True
  with count_traces() as c:
    selection.bait(logits, features, 4, labeled_mask=jnp.asarray(other), lam=0.5)
    selection.bait(logits + 1.0, features * 2.0, 4, labeled_mask=None, lam=2.0)
  assert c["bait_core"] == 0


def test_memory_limit_error():
  logits, features, labeled = make_pool(10)
  need = bait_lib.DENSE_MATRICES * (K * D) ** 2 * 4
  with pytest.raises(ValueError, match=rf"{need} bytes, over memory_limit={need - 1} bytes"):
    selection.bait(logits, features, 3, labeled_mask=jnp.asarray(labeled), memory_limit=need - 1)
  with pytest.raises(ValueError, match="reduce the feature dimension"):
    bait_lib.check_memory(1000, 2048, bait_lib.DEFAULT_MEMORY_LIMIT, False)
  # With the bias: D = K * (d + 1).
  need_b = bait_lib.DENSE_MATRICES * (K * (D + 1)) ** 2 * 4
  with pytest.raises(ValueError, match=rf"\* {D + 1} with the bias\): {need_b} bytes"):
    selection.bait(logits, features, 3, bias=True, memory_limit=need_b - 1)
  selection.bait(logits, features, 3, bias=True, memory_limit=need_b)  # exactly fits


def test_the_memory_check_bounds_the_compiled_program():
  # XLA's own accounting of the compiled selection: its temporaries stay within the dense
  # matrices the check counts, plus O(N (K + d)) for the pool and the scoring chunk.
  # With the incremental scoring, the per-point arrays it is charged for come on top.
  for (n, k, d), incremental in itertools.product(
    ((60, 10, 40), (60, 4, 120), (300, 6, 50), (3000, 10, 8)), (True, False)
  ):
    compiled = bait_lib.bait_core.lower(
      jnp.zeros((n, k)),
      jnp.zeros((n, d)),
      5,
      jnp.zeros(n, bool),
      jnp.float32(1.0),
      False,
      incremental,
    ).compile()
    temp = compiled.memory_analysis().temp_size_in_bytes
    chunk_bytes = bait_lib._chunk(n, k, d) * k * k * d * 4  # one [chunk, K, K, d] block
    pool_bytes = 16 * n * (k + d) * 4
    points = bait_lib.point_bytes(n, k) if incremental else 0
    bound = bait_lib.dense_bytes(k, d) + 2 * chunk_bytes + pool_bytes + points
    assert temp <= bound, (n, k, d, incremental, temp)
    assert temp >= bait_lib.dense_bytes(k, d) // 2, (n, k, d, temp)  # the count is not loose


def test_bait_bad_input():
  logits, features, labeled = make_pool(11)
  mask = jnp.asarray(labeled)
  with pytest.raises(ValueError, match="larger than the 34 unlabeled"):
    selection.bait(logits, features, 35, labeled_mask=mask)
  with pytest.raises(ValueError, match="k must be a positive int"):
    selection.bait(logits, features, 0, labeled_mask=mask)
  with pytest.raises(TypeError, match="k must be a positive int"):
    selection.bait(logits, features, 2.0, labeled_mask=mask)
  with pytest.raises(ValueError, match="same number of points"):
    selection.bait(logits, features[:-1], 2)
  with pytest.raises(ValueError, match="features must have shape"):
    selection.bait(logits, features[:, :, None], 2)
  with pytest.raises(ValueError, match="lam must be a finite number > 0"):
    selection.bait(logits, features, 2, lam=0.0)
  with pytest.raises(TypeError, match="lam must be"):
    selection.bait(logits, features, 2, lam="1")
  with pytest.raises(TypeError, match="bias must be True or False"):
    selection.bait(logits, features, 2, bias=1)
  with pytest.raises(TypeError, match="labeled_mask must have dtype bool"):
    selection.bait(logits, features, 2, labeled_mask=mask.astype(jnp.int32))
  bad = features.copy()
  bad[3, 1] = np.nan
  with pytest.raises(ValueError, match="features of shape .* NaN or inf"):
    selection.bait(logits, bad, 2)
  bad_logits = logits.copy()
  bad_logits[5, 0] = np.inf
  with pytest.raises(ValueError, match="logits of shape .* NaN or \\+inf"):
    selection.bait(bad_logits, features, 2)
  with pytest.raises(TypeError, match="the call is bait"):
    selection.bait(logits, features, 2, mask)


def logits_only(params, x, dropout_key):
  del dropout_key
  return x @ params["w"]


@pytest.fixture(scope="module")
def mlp():
  x = jax.random.normal(jax.random.key(3), (N, 6))
  module = networks.MLP(num_classes=K, hidden=(D,))
  params = models.init_params(jax.random.key(4), module, x)
  labeled = np.zeros(N, bool)
  labeled[[0, 5, 7, 20, 33]] = True
  return models.from_linen(module), params, x, labeled


def test_bait_strategy_is_the_selection_on_the_model_outputs(mlp):
  model, params, x, labeled = mlp
  s = strategies.bait(lam=0.5)
  key = jax.random.key(7)
  idx = s.acquire(key, model, params, x, jnp.asarray(labeled), np.int64(6))
  check_invariants(idx, N, 6, labeled)
  np.testing.assert_array_equal(idx, s.acquire(key, model, params, x, jnp.asarray(labeled), 6))
  np.testing.assert_array_equal(  # deterministic: the key is not used
    idx, s.acquire(jax.random.key(8), model, params, x, jnp.asarray(labeled), 6)
  )
  logits, features = models.predict(model, params, x)
  ref, _ = Ref(logits, features, 6, labeled, lam=0.5).select()
  np.testing.assert_array_equal(np.asarray(idx), ref)
  assert strategies.get("bait").name == "bait"
  assert s.name == "bait"


def test_bait_strategy_errors(mlp):
  model, params, x, labeled = mlp
  mask = jnp.asarray(labeled)
  with pytest.raises(ValueError, match="larger than the 35 unlabeled"):
    strategies.bait().acquire(jax.random.key(0), model, params, x, mask, 36)
  with pytest.raises(ValueError, match="memory_limit=10 bytes"):
    strategies.bait(memory_limit=10).acquire(jax.random.key(0), model, params, x, mask, 2)
  with pytest.raises(TypeError, match="typed key"):
    strategies.bait().acquire(jax.random.PRNGKey(0), model, params, x, mask, 2)
  with pytest.raises(ValueError, match="penultimate features"):
    strategies.bait().acquire(
      jax.random.key(0), models.from_apply_fn(logits_only), {"w": jnp.ones((6, K))}, x, mask, 2
    )
  with pytest.raises(ValueError, match="the model rejects pool inputs"):
    strategies.bait().acquire(jax.random.key(0), model, params, x[:, :4], mask, 2)
  with pytest.raises(ValueError, match="lam must be"):
    strategies.bait(lam=-1.0)
  with pytest.raises(TypeError, match="memory_limit must be"):
    strategies.bait(memory_limit=2.5)
  with pytest.raises(TypeError, match="bias must be"):
    strategies.bait(bias="yes")
