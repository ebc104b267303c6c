"""BatchBALD and stochastic batch acquisition against NumPy references; consistent MC masks."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import count_traces

from jaxal import bayes
from jaxal import models
from jaxal import scores
from jaxal import selection
from jaxal._src import bayes as bayes_lib

# ---------------------------------------------------------------------------
# NumPy references, float64, written from Kirsch et al. (2019)'s definitions.


def np_probs(log_probs):
  x = np.asarray(log_probs, np.float64)
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def np_entropy(p):
  with np.errstate(divide="ignore", invalid="ignore"):
    return -np.sum(np.where(p > 0, p * np.log(p), 0.0), axis=-1)


def ref_joint_mi(p, batch):
  """Brute force: H[y_batch] over all K^|batch| configurations, minus Σ E_s H[y_i | θ_s]."""
  _, _, k = p.shape
  joint = 0.0
  for config in itertools.product(range(k), repeat=len(batch)):
    q = np.mean(np.prod([p[:, i, y] for i, y in zip(batch, config)], axis=0))
    if q > 0:
      joint -= q * np.log(q)
  return joint - sum(np.mean(np_entropy(p[:, i])) for i in batch)


def ref_batchbald(log_probs, k, labeled=None):
  """Greedy: each step adds the candidate maximising the brute-force joint MI (lowest index on ties)."""
  p = np_probs(log_probs)
  n = p.shape[1]
  labeled = np.zeros(n, bool) if labeled is None else np.asarray(labeled)
  batch, mis, gaps = [], [], []
  for _ in range(k):
    cands = [c for c in range(n) if c not in batch and not labeled[c]]
    vals = np.array([ref_joint_mi(p, batch + [c]) for c in cands])
    order = np.argsort(-vals, kind="stable")
    batch.append(cands[order[0]])
    mis.append(vals[order[0]])
    gaps.append(vals[order[0]] - vals[order[1]] if len(cands) > 1 else np.inf)
  return np.array(batch), np.array(mis), np.array(gaps)


def mc_problem(seed, s=5, n=7, k=3, scale=2.0):
  return scale * jax.random.normal(jax.random.key(seed), (s, n, k))


# ---------------------------------------------------------------------------
# BatchBALD.


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batchbald_exact_matches_brute_force_greedy(seed):
  lp = mc_problem(seed)
  labeled = np.zeros(7, bool)
  labeled[seed] = True
  ref_idx, ref_mi, gaps = ref_batchbald(lp, 4, labeled)
  assert gaps.min() > 1e-4  # the reference's choices are not float32 coin flips
  # 3^3 = 27 configurations before the 4th pick: every step is exact.
  idx, mi = bayes_lib._batchbald(jax.random.key(0), lp, jnp.asarray(labeled), 4, 64, 64)
  np.testing.assert_array_equal(idx, ref_idx)
  np.testing.assert_allclose(mi, ref_mi, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(
    bayes.batchbald(
      jax.random.key(0), lp, 4, labeled_mask=jnp.asarray(labeled), num_joint_samples=64
    ),
    ref_idx,
  )


def test_batchbald_sampled_estimate_is_close_to_brute_force():
  lp = mc_problem(3, s=6, n=8, k=3)
  p = np_probs(lp)
  # max_exact_configs=1: only the first pick is exact; later ones use 6000 sampled configurations.
  idx, mi = bayes_lib._batchbald(jax.random.key(1), lp, jnp.zeros(8, bool), 5, 6000, 1)
  assert len(set(np.asarray(idx).tolist())) == 5
  ref = [ref_joint_mi(p, list(np.asarray(idx[: t + 1]))) for t in range(5)]
  # Monte Carlo error of the entropy estimate ~ std / sqrt(6000) ≈ 0.01-0.02 nats.
  np.testing.assert_allclose(mi, ref, rtol=0, atol=0.05)
  np.testing.assert_allclose(mi[0], ref[0], rtol=1e-5, atol=1e-5)  # first pick is exact


@pytest.mark.parametrize("seed", [4, 5, 6, 7])
def test_batchbald_first_pick_is_bald_argmax(seed):
  lp = mc_problem(seed, s=8, n=40, k=4)
  mask = jnp.arange(40) % 7 == 0
  idx = bayes.batchbald(jax.random.key(0), lp, 3, labeled_mask=mask, num_joint_samples=64)
  assert idx[0] == selection.top_k(scores.bald(lp), 1, labeled_mask=mask)[0]


def test_batchbald_never_duplicates_identical_points():
  one = mc_problem(8, s=4, n=1, k=3)
  lp = jnp.tile(one, (1, 6, 1))  # six identical points
  idx = bayes.batchbald(jax.random.key(0), lp, 6, num_joint_samples=32, max_exact_configs=8)
  assert sorted(np.asarray(idx).tolist()) == list(range(6))
  assert idx.dtype == jnp.int32 and idx.shape == (6,)


def test_batchbald_budget_equals_unlabeled_and_saturated_logits():
  lp = 1e4 * mc_problem(9, s=4, n=12, k=3)  # saturated: probabilities are exactly 0 and 1
  mask = jnp.arange(12) < 5
  idx, mi = bayes_lib._batchbald(jax.random.key(0), lp, mask, 7, 64, 9)
  assert np.isfinite(np.asarray(mi)).all()
  assert sorted(np.asarray(idx).tolist()) == list(range(5, 12))


def test_batchbald_conditional_entropy_blocks_do_not_change_the_result():
  lp = mc_problem(10, s=4, n=13, k=3)
  probs = jnp.exp(jax.nn.log_softmax(lp))
  log_q = jax.random.normal(jax.random.key(1), (4, 9))
  rho = jnp.full((9,), 1 / 9, jnp.float32)

  def term(chunk):
    blocks = bayes_lib._candidate_blocks(probs, chunk)
    return bayes_lib._expected_conditional_entropy(log_q, rho, blocks, 13, 3)

  full = term(13)
  for chunk in (1, 4, 5):
    np.testing.assert_allclose(term(chunk), full, rtol=1e-6, atol=1e-6)


def test_batchbald_same_key_same_result_and_one_compile():
  lp = mc_problem(11, s=3, n=17, k=3)
  with count_traces() as c:
    a = bayes.batchbald(jax.random.key(0), lp, 5, num_joint_samples=16, max_exact_configs=4)
    b = bayes.batchbald(jax.random.key(0), lp, 5, num_joint_samples=16, max_exact_configs=4)
    bayes.batchbald(
      jax.random.key(1),
      lp,
      5,
      labeled_mask=jnp.arange(17) < 3,
      num_joint_samples=16,
      max_exact_configs=4,
    )
  np.testing.assert_array_equal(a, b)
  assert c["_batchbald"] == 1


# The pruned pick (upper bound by grouped configurations, exact evaluation of the candidates
# that can reach the best gain) against evaluating every candidate.


def test_grouped_term_is_an_upper_bound_and_exact_for_few_configurations():
  s, n, k = 6, 37, 4
  probs = jnp.exp(jax.nn.log_softmax(mc_problem(20, s=s, n=n, k=k)))
  blocks = bayes_lib._candidate_blocks(probs, 5)  # 37 = 7 * 5 + 2: a partial last block
  p = np_probs(mc_problem(20, s=s, n=n, k=k))
  for live, c in [(3, 8), (6, 6), (40, 40)]:
    log_q = jax.random.normal(jax.random.key(live), (s, c))
    log_q = jnp.where(jnp.arange(c) < live, log_q, -jnp.inf)
    w = bayes_lib._posterior_weights(log_q)
    rho = jax.nn.softmax(jax.random.normal(jax.random.key(c), (c,)))
    rho = jnp.where(jnp.arange(c) < live, rho, 0.0)
    term = bayes_lib._weighted_entropy(w.T, rho, blocks, n, k)
    wt_g, rho_g = bayes_lib._grouped_weights(w, rho, live)
    bound = bayes_lib._weighted_entropy(wt_g, rho_g, blocks, n, k)
    # NumPy: sum_j rho_j H[sum_s w_sj p_s(y_c)].
    wn, rn = np.asarray(w, np.float64), np.asarray(rho, np.float64)
    ref = np.array([np.sum(rn * np_entropy(wn.T @ p[:, i])) for i in range(n)])
    np.testing.assert_allclose(term, ref, rtol=1e-5, atol=1e-5)
    margin = bayes_lib._prune_margin(c, s, k)
    assert (np.asarray(bound) >= np.asarray(term) - margin).all()
    np.testing.assert_allclose(rho_g.sum(), rho.sum(), rtol=1e-6)
    if live <= s:  # one configuration a group: the bound is the term
      np.testing.assert_allclose(bound, term, rtol=1e-6, atol=1e-6)
    else:
      assert (np.asarray(bound) > np.asarray(term) + 1e-4).any()  # a real bound, not the term


@pytest.mark.parametrize("chunk", [1, 4, 5, 37, 64])
def test_pruned_best_is_the_argmax_of_every_gain(chunk):
  s, n, k, c = 5, 37, 3, 30
  lp = mc_problem(21, s=s, n=n, k=k)
  probs = jnp.exp(jax.nn.log_softmax(lp))
  cond = jnp.asarray(np.mean(np_entropy(np_probs(lp)), axis=0), jnp.float32)
  chunk = min(chunk, n)
  blocks = bayes_lib._candidate_blocks(probs, chunk)
  rows = jnp.transpose(probs, (1, 0, 2))
  for seed in range(4):
    log_q = 3.0 * jax.random.normal(jax.random.key(seed), (s, c))
    w = bayes_lib._posterior_weights(log_q)
    rho = jnp.full((c,), 1.0 / c, jnp.float32)
    excluded = jax.random.uniform(jax.random.key(100 + seed), (n,)) < 0.3
    wt_g, rho_g = bayes_lib._grouped_weights(w, rho, c)
    best, term_best = bayes_lib._pruned_best(
      w.T, rho, wt_g, rho_g, blocks, rows, cond, excluded, chunk, bayes_lib._prune_margin(c, s, k)
    )
    term = bayes_lib._weighted_entropy(w.T, rho, blocks, n, k)
    gain = np.where(excluded, -np.inf, np.asarray(term - cond))
    assert int(best) == int(np.argmax(gain))
    np.testing.assert_allclose(term_best, term[int(best)], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
  "seed,s,n,k,budget,joint,exact",
  [
    (30, 8, 203, 5, 12, 64, 64),  # N not a multiple of the block of 2^19 / (64 * 5) = 1638
    (31, 20, 1500, 10, 9, 512, 512),  # blocks of 102: 15 blocks, the last one partial
    (32, 4, 77, 3, 20, 32, 1),  # sampled from the second pick
    (33, 3, 50, 2, 30, 16, 1000),  # exact throughout (2^30 > 1000: the 11th pick samples)
  ],
)
def test_batchbald_pruned_picks_equal_every_candidate_evaluated(
  seed, s, n, k, budget, joint, exact
):
  lp = mc_problem(seed, s=s, n=n, k=k)
  mask = jnp.arange(n) % 11 == 3
  key = jax.random.key(seed)
  got = bayes_lib._batchbald(key, lp, mask, budget, joint, exact)
  want = bayes_lib._batchbald(key, lp, mask, budget, joint, exact, prune=False)
  np.testing.assert_array_equal(got[0], want[0])
  np.testing.assert_allclose(got[1], want[1], rtol=1e-6, atol=1e-6)
  assert not np.asarray(mask)[np.asarray(got[0])].any()
  assert len(set(np.asarray(got[0]).tolist())) == budget


def test_batchbald_pruned_ties_go_to_the_lowest_index():
  one = mc_problem(34, s=4, n=3, k=3)
  lp = jnp.tile(one, (1, 5, 1))  # points i, i + 3, i + 6, ...: identical gains, exact ties
  for exact in (1, 64):
    got = bayes_lib._batchbald(jax.random.key(0), lp, jnp.zeros(15, bool), 8, 32, exact)
    want = bayes_lib._batchbald(
      jax.random.key(0), lp, jnp.zeros(15, bool), 8, 32, exact, prune=False
    )
    np.testing.assert_array_equal(got[0], want[0])


# ---------------------------------------------------------------------------
# Finiteness: the flags come out of the compiled call that does the work.

SEPARATE_CHECKS = ("all_finite", "logits_ok", "scores_ok", "_all_nonneg")


def _poisoned_mc():
  lp = np.array(mc_problem(40, s=3, n=12, k=4))
  lp[1, 7, 2] = np.nan  # row 7 of [S, N, K]
  return jnp.asarray(lp)


def _poisoned_scores():
  u = np.array(jax.random.uniform(jax.random.key(41), (12,)))
  u[7] = np.nan
  return jnp.asarray(u)


def test_batchbald_and_stochastic_batch_check_finiteness_in_their_own_compile():
  lp, u = mc_problem(40, s=3, n=12, k=4), jax.random.uniform(jax.random.key(41), (12,))
  jax.clear_caches()
  with count_traces() as c:
    idx = bayes.batchbald(jax.random.key(0), lp, 3, num_joint_samples=16)
    sb = bayes.stochastic_batch(jax.random.key(0), u, 3)
    jax.block_until_ready((idx, sb))
  assert not [name for name in SEPARATE_CHECKS if c[name]], dict(c.counts)
  assert c["_batchbald"] == 1 and c["_stochastic_batch"] == 1
  np.testing.assert_array_equal(
    idx, bayes.batchbald(jax.random.key(0), lp, 3, num_joint_samples=16, check_finite=False)
  )


def test_batchbald_and_stochastic_batch_name_the_non_finite_row():
  with pytest.raises(ValueError, match=r"^log_probs of shape \(3, 12, 4\) .*row 7"):
    bayes.batchbald(jax.random.key(0), _poisoned_mc(), 3, num_joint_samples=16)
  for mode in bayes.MODES:
    with pytest.raises(ValueError, match=r"^scores of shape \(12,\) .*index 7:"):
      bayes.stochastic_batch(jax.random.key(0), _poisoned_scores(), 3, mode=mode)
  inf = _poisoned_scores().at[7].set(jnp.inf)
  with pytest.raises(ValueError, match=r"^scores of shape \(12,\) holds 1 NaN or \+inf .*index 7:"):
    bayes.stochastic_batch(jax.random.key(0), inf, 3)


def test_batchbald_and_stochastic_batch_skip_the_check_on_request():
  jax.clear_caches()
  with count_traces() as c:
    idx = bayes.batchbald(
      jax.random.key(0), _poisoned_mc(), 3, num_joint_samples=16, check_finite=False
    )
    sb = bayes.stochastic_batch(jax.random.key(0), _poisoned_scores(), 3, check_finite=False)
    jax.block_until_ready((idx, sb))
  assert not [name for name in SEPARATE_CHECKS if c[name]], dict(c.counts)
  assert idx.shape == (3,) and len(set(np.asarray(idx).tolist())) == 3
  assert 7 not in np.asarray(sb).tolist()  # NaN: probability 0 while other points remain


def test_batchbald_bad_input():
  key = jax.random.key(0)
  with pytest.raises(ValueError, match=r"log_probs must have shape \[num_samples, num_points"):
    bayes.batchbald(key, jnp.zeros((4, 3)), 1)
  with pytest.raises(ValueError, match="at least 2 Monte Carlo samples"):
    bayes.batchbald(key, jnp.zeros((1, 4, 3)), 1)
  with pytest.raises(TypeError, match="typed key"):
    bayes.batchbald(jax.random.PRNGKey(0), jnp.zeros((2, 4, 3)), 1)
  with pytest.raises(ValueError, match="unlabeled"):
    bayes.batchbald(key, jnp.zeros((2, 4, 3)), 3, labeled_mask=jnp.array([1, 1, 0, 0], bool))
  with pytest.raises(ValueError, match="num_joint_samples"):
    bayes.batchbald(key, jnp.zeros((2, 4, 3)), 1, num_joint_samples=0)


def test_batchbald_takes_numpy_integers_and_refuses_bools():
  lp, key = mc_problem(3, s=3, n=9), jax.random.key(0)
  want = bayes.batchbald(key, lp, 4, num_joint_samples=16, max_exact_configs=4)
  got = bayes.batchbald(
    key, lp, np.int32(4), num_joint_samples=np.int64(16), max_exact_configs=np.int64(4)
  )
  np.testing.assert_array_equal(got, want)
  with pytest.raises(TypeError, match="k must be a positive int .* got True of type bool"):
    bayes.batchbald(key, lp, True)
  with pytest.raises(TypeError, match="num_joint_samples must be a positive int"):
    bayes.batchbald(key, lp, 2, num_joint_samples=True)
  with pytest.raises(TypeError, match="max_exact_configs must be a positive int"):
    bayes.batchbald(key, lp, 2, max_exact_configs=4.0)
  with pytest.raises(ValueError, match=r"num_joint_samples must be a positive int <= 1048576"):
    bayes.batchbald(key, lp, 2, num_joint_samples=bayes_lib.MAX_CONFIGS + 1)


# ---------------------------------------------------------------------------
# Consistent MC-dropout masks (models.predict_mc(..., consistent=True)).


def test_predict_mc_consistent_masks_are_shared_across_examples():
  module = models.MLP(num_classes=3, hidden=(32,), dropout_rate=0.5)
  x0 = jax.random.normal(jax.random.key(0), (1, 6))
  params = models.init_params(jax.random.key(1), module, x0)
  model = models.from_linen(module)
  x = jnp.tile(x0, (9, 1))  # nine identical examples
  key = jax.random.key(2)
  cons = models.predict_mc(key, model, params, x, num_samples=4, batch_size=4, consistent=True)
  indep = models.predict_mc(key, model, params, x, num_samples=4, batch_size=4)
  np.testing.assert_array_equal(cons, jnp.broadcast_to(cons[:, :1], cons.shape))
  assert not np.allclose(indep, indep[:, :1])  # per-example masks differ
  assert all(
    not np.allclose(cons[i], cons[j]) for i in range(4) for j in range(i)
  )  # samples differ
  # Sample s is the network with dropout key fold_in(split(key, S)[s], 0).
  keys = jax.random.split(key, 4)
  for s in range(4):
    ref, _ = models.apply(model, params, x[:1], jax.random.fold_in(keys[s], 0))
    np.testing.assert_allclose(cons[s, 0], ref[0], rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------
# Stochastic batches: the sampling law by chi-square on first (and second) picks.

S_SMALL = jnp.array([0.1, 0.5, 1.0, 2.0, 0.0, 0.7], jnp.float32)
NUM_DRAWS = 20000
# Chi-square critical values at significance 1e-3 (scipy.stats.chi2.ppf(0.999, df)).
CHI2_999 = {4: 18.467, 5: 20.515, 29: 58.301}


def ref_law(mode, s, temperature):
  s = np.asarray(s, np.float64)
  beta = 1.0 / temperature
  if mode == "power":
    w = s**beta
  elif mode == "softmax":
    w = np.exp(beta * s)
  else:
    rank = np.empty(len(s))
    rank[np.argsort(-s, kind="stable")] = np.arange(1, len(s) + 1)
    w = rank**-beta
  return w / w.sum()


def chi2(counts, p):
  keep = p > 0
  expected = NUM_DRAWS * p[keep]
  return float(np.sum((counts[keep] - expected) ** 2 / expected)), int(keep.sum()) - 1


@pytest.mark.parametrize(
  "mode,temperature",
  [("power", 0.5), ("power", 1.0), ("softmax", 0.7), ("softrank", 1.0), ("softrank", 0.4)],
)
def test_stochastic_batch_first_pick_law(mode, temperature):
  keys = jax.random.split(jax.random.key(123), NUM_DRAWS)
  draw = jax.vmap(
    lambda k: bayes.stochastic_batch(k, S_SMALL, 3, mode=mode, temperature=temperature)
  )
  idx = np.asarray(draw(keys))
  p = ref_law(mode, S_SMALL, temperature)
  counts = np.bincount(idx[:, 0], minlength=6)
  stat, df = chi2(counts, p)
  assert stat < CHI2_999[df], (stat, counts, p * NUM_DRAWS)
  assert (counts[p == 0] == 0).all()  # power: a zero score is never drawn while others remain
  assert all(len(set(row)) == 3 for row in idx[:200].tolist())


def test_stochastic_batch_second_pick_is_successive_sampling():
  keys = jax.random.split(jax.random.key(7), NUM_DRAWS)
  idx = np.asarray(jax.vmap(lambda k: bayes.stochastic_batch(k, S_SMALL, 2, mode="softmax"))(keys))
  p = ref_law("softmax", S_SMALL, 1.0)
  pairs = [(i, j) for i in range(6) for j in range(6) if i != j]
  law = np.array([p[i] * p[j] / (1 - p[i]) for i, j in pairs])
  counts = np.array([np.sum((idx[:, 0] == i) & (idx[:, 1] == j)) for i, j in pairs])
  stat, df = chi2(counts, law)
  assert df == 29 and stat < CHI2_999[29], stat


def test_stochastic_batch_invariants_and_one_compile():
  s = jax.random.uniform(jax.random.key(0), (23,))
  mask = jnp.arange(23) % 3 == 0
  with count_traces() as c:
    for t in (0.1, 1.0, 5.0):  # the temperature is not static
      idx = bayes.stochastic_batch(
        jax.random.key(1), s, 15, mode="softrank", temperature=t, labeled_mask=mask
      )
      assert idx.dtype == jnp.int32 and len(set(np.asarray(idx).tolist())) == 15
      assert not np.asarray(mask)[np.asarray(idx)].any()
  assert c["_stochastic_batch"] == 1
  a = bayes.stochastic_batch(jax.random.key(5), s, 4)
  np.testing.assert_array_equal(a, bayes.stochastic_batch(jax.random.key(5), s, 4))
  # Zero-probability points fill the batch last when nothing else is left.
  z = jnp.array([0.0, 1.0, 0.0, 2.0])
  assert sorted(np.asarray(bayes.stochastic_batch(jax.random.key(0), z, 4)).tolist()) == [
    0,
    1,
    2,
    3,
  ]
  assert set(np.asarray(bayes.stochastic_batch(jax.random.key(0), z, 2)).tolist()) == {1, 3}


def test_stochastic_batch_cold_limit_is_top_k():
  s = jnp.array([0.3, 0.9, 0.1, 0.5, 0.8])
  for mode in bayes.MODES:
    idx = bayes.stochastic_batch(jax.random.key(0), s, 2, mode=mode, temperature=1e-4)
    assert sorted(np.asarray(idx).tolist()) == [1, 4]


def test_stochastic_batch_bad_input():
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="non-negative scores"):
    bayes.stochastic_batch(key, jnp.array([0.1, -0.2, 0.3]), 1, mode="power")
  with pytest.raises(ValueError, match="unknown mode"):
    bayes.stochastic_batch(key, jnp.ones(3), 1, mode="gumbel")
  with pytest.raises(ValueError, match="temperature"):
    bayes.stochastic_batch(key, jnp.ones(3), 1, temperature=0.0)
  with pytest.raises(ValueError, match=r"scores must have shape \[num_points\]"):
    bayes.stochastic_batch(key, jnp.ones((3, 2)), 1)


def test_stochastic_batch_takes_numpy_numbers_and_refuses_bools():
  key, s = jax.random.key(1), jnp.array([0.3, 0.9, 0.1, 0.5, 0.8])
  want = bayes.stochastic_batch(key, s, 3, temperature=0.5)
  for k, t in [(np.int64(3), np.float32(0.5)), (np.int32(3), jnp.float32(0.5)), (3, 0.5)]:
    np.testing.assert_array_equal(bayes.stochastic_batch(key, s, k, temperature=t), want)
  with pytest.raises(TypeError, match="k must be a positive int"):
    bayes.stochastic_batch(key, s, True)
  with pytest.raises(TypeError, match="temperature must be"):
    bayes.stochastic_batch(key, s, 2, temperature=True)
  with pytest.raises(TypeError, match=r"temperature must be a positive scalar, got .*shape \(2,\)"):
    bayes.stochastic_batch(key, s, 2, temperature=jnp.ones(2))
  with pytest.raises(ValueError, match="temperature must be a finite number > 0, got nan"):
    bayes.stochastic_batch(key, s, 2, temperature=np.float64("nan"))
