"""What every registered strategy picks, against a NumPy reference written from its definition.

One small linear model with dropout on its features (so MC samples differ) and one pool serve
every strategy. Deterministic strategies must return the reference's indices exactly;
stochastic ones are checked in law (pick frequencies over many keys against the reference
distribution, with an explicit tolerance). Every result is also checked for the invariants.
"""

from __future__ import annotations

import ast
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import check_invariants
from test_glister import ref_glister

from jaxal import adversarial
from jaxal import bayes
from jaxal import models
from jaxal import scores
from jaxal import strategies
from jaxal._src.strategies import registry

N, D, K = 24, 4, 3
BUDGET = 3
RATE = 0.5

# The factories at the time of writing: a new one must get its own reference here.
COVERED = {
  "badge", "bald", "batchbald", "bim", "coreset", "deepfool", "entropy", "fass", "glister",
  "kmeans_sampling", "least_confidence", "margin", "mc_entropy", "mc_least_confidence",
  "mc_margin", "mc_ratio", "mean_std", "power", "random", "ratio", "softmax", "softrank",
  "submodular", "variation_ratio",
}  # fmt: skip


def apply_fn(params, x, dropout_key):
  z = x
  if dropout_key is not None:
    keep = jax.random.bernoulli(dropout_key, 1.0 - RATE, z.shape)
    z = jnp.where(keep, z / (1.0 - RATE), 0.0)
  logits = z @ params["head"]["kernel"] + params["head"]["bias"][None, :]
  return logits, z


MODEL = models.from_apply_fn(apply_fn, head="head")


def _pool():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(N, D)).astype(np.float32)
  w = rng.normal(size=(D, K)).astype(np.float32)
  b = (0.3 * rng.normal(size=(K,))).astype(np.float32)
  labeled = np.zeros(N, bool)
  labeled[[2, 7, 11, 19]] = True
  params = {"head": {"kernel": jnp.asarray(w), "bias": jnp.asarray(b)}}
  return jnp.asarray(x), params, labeled, x.astype(np.float64), w.astype(np.float64), b


X, PARAMS, LABELED, XN, WN, BN = _pool()
MASK = jnp.asarray(LABELED)
KEY = jax.random.key(3)


def np_softmax(logits):
  logits = np.asarray(logits, np.float64)
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def np_entropy(p):
  return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)


def ref_top(score, k=BUDGET, labeled=LABELED):
  """The k highest unlabeled scores, ties to the lower index."""
  s = np.where(labeled, -np.inf, np.asarray(score, np.float64))
  return np.argsort(-s, kind="stable")[:k]


def logit_probs():
  return np_softmax(XN @ WN + BN)


def mc_probs(key, consistent=False, num_samples=20):
  mc = models.predict_mc(key, MODEL, PARAMS, X, num_samples=num_samples, consistent=consistent)
  return np_softmax(np.asarray(mc))


def top2(p):
  s = np.sort(p, axis=-1)
  return s[..., -1], s[..., -2]


SCORES = {
  "least_confidence": lambda p: 1.0 - p.max(-1),
  "margin": lambda p: 1.0 - (top2(p)[0] - top2(p)[1]),
  "ratio": lambda p: top2(p)[1] / top2(p)[0],
  "entropy": np_entropy,
}


def acquire(name, key=KEY, budget=BUDGET, **kwargs):
  idx = strategies.get(name, **kwargs).acquire(key, MODEL, PARAMS, X, MASK, budget)
  check_invariants(idx, N, budget, LABELED, name)
  return np.asarray(idx)


# Families whose NumPy references live beside their own tests (they need pools, query sets or
# clusterings of their own): name -> (test file, the reference test).
REFERENCED_ELSEWHERE = {
  "typiclust": ("test_strategies_low_budget.py", "test_typiclust_matches_the_reference"),
  "probcover": ("test_strategies_low_budget.py", "test_probcover_matches_the_reference"),
  "cluster_margin": (
    "test_strategies_low_budget.py", "test_cluster_margin_round_robin_matches_the_paper"
  ),
  "epig": ("test_strategies_bait_epig.py", "test_epig_strategy_top_k_matches_the_score"),
  "bait": ("test_bait.py", "test_bait_matches_the_reference"),
  "gradmatch": ("test_strategies_gradmatch_partitioned.py", "test_gradmatch_equals_reference"),
  "partitioned": (
    "test_strategies_gradmatch_partitioned.py", "test_partitioned_parts_shares_and_picks"
  ),
  "smi": ("test_strategies_targeted.py", "test_flqmi_with_class_query_is_the_numpy_greedy"),
  "scmi": ("test_strategies_targeted.py", "test_flcmi_with_index_sets_is_the_numpy_greedy"),
  "scg": ("test_strategies_targeted.py", "test_logdetcg_with_labeled_private_is_the_numpy_greedy"),
}  # fmt: skip


def test_every_builtin_strategy_has_a_reference():
  # The names jaxal ships (a test or a doctest may register more under other names).
  builtin = set(registry.BUILTIN)
  assert builtin <= COVERED | set(REFERENCED_ELSEWHERE), (
    builtin - COVERED - set(REFERENCED_ELSEWHERE)
  )
  here = Path(__file__).parent
  for name, (file, test) in REFERENCED_ELSEWHERE.items():
    tree = ast.parse((here / file).read_text())
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert test in defined, (name, file, test)


@pytest.mark.parametrize("name", sorted(SCORES))
def test_single_pass_scores_pick_the_reference_top_k(name):
  np.testing.assert_array_equal(acquire(name), ref_top(SCORES[name](logit_probs())))


def ref_mc_score(name, p):  # p: [S, N, K]
  if name.startswith("mc_"):
    return SCORES[name[3:]](p.mean(0))
  if name == "bald":
    return np_entropy(p.mean(0)) - np_entropy(p).mean(0)
  if name == "mean_std":
    return p.std(0).mean(-1)
  votes = np.eye(K)[p.argmax(-1)].sum(0)  # variation ratio
  return 1.0 - votes.max(-1) / p.shape[0]


MC_NAMES = ["bald", "mc_entropy", "mc_least_confidence", "mc_margin", "mc_ratio", "mean_std"]


@pytest.mark.parametrize("name", MC_NAMES)
def test_mc_scores_pick_the_reference_top_k(name):
  # Ten picks, in order: BALD and mean std agree on the first five of this pool, not on ten.
  ref = ref_top(ref_mc_score(name, mc_probs(KEY)), 10)
  np.testing.assert_array_equal(acquire(name, budget=10), ref)


def test_variation_ratio_picks_the_most_disagreeing_votes():
  # Votes tie often: check that the picks hold the reference's top scores (ties by index).
  score = ref_mc_score("variation_ratio", mc_probs(KEY))
  got = acquire("variation_ratio")
  np.testing.assert_array_equal(got, ref_top(score))
  assert score[got].min() > 0  # the models' samples disagree on every pick


def ref_batchbald(p, k, labeled):
  """Greedy exact BatchBALD: p [S, N, K] from one network per sample for the whole pool."""
  s, n, c = p.shape
  cond = np_entropy(p).mean(0)
  chosen: list[int] = []
  joint = np.ones((s, 1))  # p_s(configuration) of the chosen batch, all configurations
  for _ in range(k):
    best, best_val = -1, -np.inf
    for i in range(n):
      if labeled[i] or i in chosen:
        continue
      table = (joint[:, :, None] * p[:, i, None, :]).reshape(s, -1)
      marg = table.mean(0)
      h = -np.sum(np.where(marg > 0, marg * np.log(np.where(marg > 0, marg, 1)), 0))
      val = h - cond[chosen + [i]].sum()
      if val > best_val + 1e-9:
        best, best_val = i, val
    chosen.append(best)
    joint = (joint[:, :, None] * p[:, best, None, :]).reshape(s, -1)
  return np.array(chosen)


def test_batchbald_picks_the_exact_greedy_joint_mutual_information():
  k_mc, _ = jax.random.split(KEY)
  p = mc_probs(k_mc, consistent=True)
  ref = ref_batchbald(p, BUDGET, LABELED)
  np.testing.assert_array_equal(acquire("batchbald"), ref)
  # With one mask per example instead, the reference picks something else: the test can tell.
  assert not np.array_equal(ref_batchbald(mc_probs(k_mc), BUDGET, LABELED), ref)


def frequencies(name, num_keys, budget=1, **kwargs):
  counts = np.zeros(N)
  for i in range(num_keys):
    counts[acquire(name, jax.random.key(100 + i), budget, **kwargs)] += 1
  return counts / num_keys


def assert_law(freq, prob, num_keys, what):
  """Every frequency within 4.5 standard deviations (binomial) of its probability."""
  sd = np.sqrt(prob * (1 - prob) / num_keys) + 1e-12
  z = np.abs(freq - prob) / sd
  assert np.all((z < 4.5) | (np.abs(freq - prob) < 1e-12)), (what, freq, prob)


def test_random_is_uniform_over_the_unlabeled_points():
  n = 200
  prob = np.where(LABELED, 0.0, 1.0 / (~LABELED).sum())
  assert_law(frequencies("random", n), prob, n, "random")


@pytest.mark.parametrize("mode", ["power", "softmax", "softrank"])
def test_stochastic_batches_follow_their_law(mode):
  temperature = 0.5
  score = np_entropy(logit_probs())
  unl = ~LABELED
  if mode == "power":
    w = score ** (1 / temperature)
  elif mode == "softmax":
    w = np.exp((score - score.max()) / temperature)
  else:
    rank = np.empty(N)
    order = np.argsort(-np.where(unl, score, -np.inf), kind="stable")
    rank[order] = np.arange(1, N + 1)
    w = rank ** (-1 / temperature)
  w = np.where(unl, w, 0.0)
  # The strategy's batch is the stochastic draw on its scores, with the second half of the key.
  logits = models.predict(MODEL, PARAMS, X, features=False).logits
  s = scores.entropy(logits)
  for i in range(4):
    key = jax.random.key(100 + i)
    got = acquire(mode, key, BUDGET, score="entropy", temperature=temperature)
    want = bayes.stochastic_batch(
      jax.random.split(key)[1], s, BUDGET, mode=mode, temperature=temperature, labeled_mask=MASK
    )
    np.testing.assert_array_equal(got, np.asarray(want))
  # That draw's law, over many keys (vmapped: one compile): the first pick ∝ the weights.
  n = 20_000
  first = jax.vmap(
    lambda k: bayes.stochastic_batch(
      k, s, 1, mode=mode, temperature=temperature, labeled_mask=MASK
    )[0]
  )(jax.random.split(jax.random.key(7), n))
  freq = np.bincount(np.asarray(first), minlength=N) / n
  assert_law(freq, w / w.sum(), n, mode)
  # The test tells the law from a neighbour: with entropy in bits instead of nats (softmax) or
  # a temperature off by that factor, the same frequencies fall outside the band.
  wrong = w ** np.log2(np.e) if mode != "softrank" else np.where(unl, rank ** (-2.9), 0.0)
  with pytest.raises(AssertionError):
    assert_law(freq, wrong / wrong.sum(), n, mode)


def test_stochastic_default_bald_is_cold_top_k():
  # Very cold: the batch is BALD's top-k of the MC samples drawn from the first half of the key.
  k_mc, _ = jax.random.split(KEY)
  ref = ref_top(ref_mc_score("bald", mc_probs(k_mc)))
  got = acquire("power", temperature=1e-4)
  np.testing.assert_array_equal(np.sort(got), np.sort(ref))


def grad_embedding(p, x):
  """(p - onehot(argmax p)) ⊗ [x, 1], dense [N, K * (D + 1)]."""
  a = p - np.eye(K)[p.argmax(-1)]
  z = np.concatenate([x, np.ones((len(x), 1))], axis=1)
  return (a[:, :, None] * z[:, None, :]).reshape(len(x), -1)


def test_badge_first_pick_is_the_largest_gradient_and_second_follows_d2():
  g = grad_embedding(logit_probs(), XN)
  norms = np.where(LABELED, -np.inf, (g * g).sum(1))
  first = int(np.argmax(norms))
  n = 200
  counts = np.zeros(N)
  for i in range(n):
    idx = acquire("badge", jax.random.key(500 + i), 2)
    assert idx[0] == first
    counts[idx[1]] += 1
  d2 = ((g - g[first]) ** 2).sum(1)
  d2[LABELED] = 0.0
  d2[first] = 0.0
  assert_law(counts / n, d2 / d2.sum(), n, "badge D²")


def test_coreset_is_farthest_first_from_the_labeled_set():
  d = np.min(((XN[:, None] - XN[LABELED][None]) ** 2).sum(-1), axis=1)
  chosen = []
  for _ in range(BUDGET):
    dd = np.where(LABELED, -np.inf, d)
    dd[chosen] = -np.inf
    j = int(np.argmax(dd))
    chosen.append(j)
    d = np.minimum(d, ((XN - XN[j]) ** 2).sum(-1))
  np.testing.assert_array_equal(acquire("coreset"), chosen)


def test_kmeans_sampling_picks_the_point_nearest_each_cluster():
  rng = np.random.default_rng(5)
  centres = np.array([[20.0, 0, 0, 0], [0, 20.0, 0, 0], [0, 0, 20.0, 0]])
  x = (centres[np.arange(N) % 3] + rng.normal(size=(N, D))).astype(np.float32)
  labeled = LABELED
  ref = set()
  for c in range(3):
    members = np.flatnonzero((np.arange(N) % 3 == c) & ~labeled)
    mean = x[members].mean(0)
    ref.add(int(members[np.argmin(((x[members] - mean) ** 2).sum(1))]))
  for seed in range(3):
    idx = strategies.get("kmeans_sampling").acquire(
      jax.random.key(seed), MODEL, PARAMS, jnp.asarray(x), MASK, 3
    )
    check_invariants(idx, N, 3, labeled)
    assert set(np.asarray(idx).tolist()) == ref


def ref_facility_location(feats, cand, k):
  u = feats / np.linalg.norm(feats, axis=1, keepdims=True)
  s = (1 + np.clip(u @ u.T, -1, 1)) / 2
  np.fill_diagonal(s, 1.0)
  ground = np.asarray(cand)
  cover = np.zeros(len(feats))
  chosen = []
  for _ in range(k):
    gains = (np.maximum(s - cover[None, :], 0) * ground[None, :]).sum(1)
    gains[~ground] = -np.inf
    gains[chosen] = -np.inf
    j = int(np.argmax(gains))
    chosen.append(j)
    cover = np.maximum(cover, s[j])
  return np.array(chosen)


def test_submodular_is_greedy_facility_location_over_the_unlabeled_pool():
  np.testing.assert_array_equal(acquire("submodular"), ref_facility_location(XN, ~LABELED, BUDGET))


def test_fass_filters_by_entropy_then_maximises_facility_location():
  top_n = 2
  filtered = ref_top(np_entropy(logit_probs()), top_n * BUDGET)
  sub = ref_facility_location(XN[filtered], np.ones(len(filtered), bool), BUDGET)
  np.testing.assert_array_equal(acquire("fass", top_n=top_n), filtered[sub])


def test_glister_matches_its_greedy_reference():
  logits = XN @ WN + BN
  hyp = logits.argmax(1)  # without oracle labels, labeled points stand at the predictions
  ref = ref_glister(logits, XN, BUDGET, LABELED, hyp, None, 1e-3)
  np.testing.assert_array_equal(acquire("glister"), ref)


def linear_boundary_distance():
  """The exact L2 distance to the nearest decision boundary of the affine classifier."""
  f = XN @ WN + BN
  y = f.argmax(1)
  d = np.full(N, np.inf)
  for c in range(K):
    other = c != y
    dw = np.linalg.norm(WN[:, c][:, None] - WN[:, y], axis=0)  # [N]
    gap = f[np.arange(N), y] - f[:, c]
    d = np.where(other, np.minimum(d, gap / np.where(other, dw, 1.0)), d)
  return d


def test_deepfool_picks_the_points_closest_to_the_boundary():
  ref = ref_top(-linear_boundary_distance())
  np.testing.assert_array_equal(acquire("deepfool"), ref)


def test_bim_picks_the_smallest_bim_distances():
  dist = np.asarray(adversarial.bim(MODEL, PARAMS, X).distance, np.float64)
  ref = ref_top(-dist)
  got = acquire("bim")
  # BIM distances are multiples of the step: equal distances may come in either order.
  np.testing.assert_array_equal(np.sort(dist[got]), np.sort(dist[ref]))
  # And they are the smallest: no unpicked unlabeled point is strictly closer.
  rest = np.setdiff1d(np.flatnonzero(~LABELED), got)
  assert dist[rest].min() >= dist[got].max()
