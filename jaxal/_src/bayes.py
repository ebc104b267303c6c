"""Bayesian batch acquisition: BatchBALD and stochastic (power, softmax, soft-rank) batches.

Both work on arrays only. :func:`batchbald` takes Monte Carlo log-probabilities
``[num_samples, num_points, num_classes]`` whose sample ``s`` comes from *one*
sampled network applied to every pool point (for MC dropout: the same dropout
mask for every example, ``models.predict_mc(..., consistent=True)``), because
it needs the joint predictive of several points,
:math:`p(y_1, \\dots, y_b) = \\frac1S \\sum_s \\prod_i p_s(y_i)`.
:func:`stochastic_batch` turns any ``[num_points]`` score into a random batch
by Gumbel top-k.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P
from jax.typing import ArrayLike

from jaxal._src import checks
from jaxal._src import executables
from jaxal._src import scores as scores_lib
from jaxal._src import sharding

# Elements of one [configurations, classes, chunk] block of conditional
# predictives: about 2 MiB in float32, so that a block stays in a core's cache
# between the product that makes it and the entropy that reads it.
_BLOCK_ELEMENTS = 1 << 19
# The largest configuration count of BatchBALD's estimators (num_joint_samples,
# max_exact_configs): its [num_samples, configurations] tables stay small.
MAX_CONFIGS = 1 << 20


def _entropy_p(p: jax.Array) -> jax.Array:
  """Entropy over the last axis of probabilities ``p``, with ``0 log 0 = 0``."""
  pos = p > 0
  return -jnp.sum(jnp.where(pos, p * jnp.log(jnp.where(pos, p, 1.0)), 0.0), axis=-1)


def _posterior_weights(log_q: jax.Array) -> jax.Array:
  """``softmax`` over samples (axis 0) of ``log_q [S, C]``; all ``-inf`` columns → 0."""
  top = jnp.max(log_q, axis=0, keepdims=True)
  finite = jnp.isfinite(top)
  w = jnp.exp(log_q - jnp.where(finite, top, 0.0))
  return w / jnp.where(finite, jnp.sum(w, axis=0, keepdims=True), 1.0)


def _log_marginal(log_q: jax.Array) -> jax.Array:
  """``log (1/S) sum_s q[s, c]`` for ``log_q [S, C]`` → ``[C]`` (``-inf`` stays)."""
  return jax.nn.logsumexp(log_q, axis=0) - jnp.log(jnp.float32(log_q.shape[0]))


def _candidate_blocks(probs: jax.Array, chunk: int) -> jax.Array:
  """``probs [S, N, K]`` as ``[num_blocks, S, K * chunk]``, class-major within a block.

  Candidates are zero-padded to whole blocks. With the class axis before the
  candidates, the entropy's sum over classes adds contiguous vectors.
  """
  s, n, k = probs.shape
  num_chunks = -(-n // chunk)
  padded = jnp.pad(probs, ((0, 0), (0, num_chunks * chunk - n), (0, 0)))
  blocks = jnp.transpose(padded.reshape(s, num_chunks, chunk, k), (1, 0, 3, 2))
  return blocks.reshape(num_chunks, s, k * chunk)


def _block_term(wt: jax.Array, rho: jax.Array, pb: jax.Array, k: int) -> jax.Array:
  r"""``[chunk]``: :math:`\sum_j \rho_j H[\sum_s w_{sj}\, p_s(y_c)]` for one block of candidates.

  Args:
    wt: ``[C, S]`` weights, transposed (one ``[C, S] x [S, K * chunk]`` product,
      no transpose after it).
    rho: ``[C]`` weights of the rows of ``wt``.
    pb: ``[S, K * chunk]`` the block's probabilities, class-major (as
      :func:`_candidate_blocks` lays them out).
    k: the number of classes.
  """
  tiny = jnp.finfo(jnp.float32).tiny
  cond = wt @ pb  # [C, K * chunk]: p(y_candidate | configuration j), class-major
  # cond >= 0, and 0 * log(tiny) = 0: one max instead of two selects. The weighted sum over
  # configurations is one reduction that reads cond once (no second [C, K * chunk] array).
  plogp = cond * jnp.log(jnp.maximum(cond, tiny))
  return -jnp.sum(rho[:, None] * plogp, axis=0).reshape(k, -1).sum(0)


def _expected_conditional_entropy(
  log_q: jax.Array, rho: jax.Array, blocks: jax.Array, n: int, k: int
) -> jax.Array:
  r"""For every candidate ``c``: :math:`\sum_j \rho_j H[\sum_s w_{sj}\, p_s(y_c)]`.

  ``w[:, j]`` is the posterior over the ``S`` samples given configuration ``j``
  of the batch's labels (``softmax_s log_q[s, j]``), so the inner term is the
  entropy of ``y_c`` given that configuration.

  Args:
    log_q: ``[S, C]`` log-probabilities of ``C`` label configurations of the
      current batch under each sample.
    rho: ``[C]`` weights of the configurations.
    blocks: ``[num_blocks, S, K * chunk]`` per-sample class probabilities of
      the candidates, as :func:`_candidate_blocks` lays them out.
    n: the number of candidates (the rest is padding).
    k: the number of classes.

  Returns:
    ``[N]`` float32.
  """
  wt = _posterior_weights(log_q).T  # [C, S]
  return _weighted_entropy(wt, rho, blocks, n, k)


def _weighted_entropy(wt, rho, blocks, n, k):
  """:func:`_block_term` over every block: ``[N]``."""
  return jax.lax.map(lambda pb: _block_term(wt, rho, pb, k), blocks).reshape(-1)[:n]


def _grouped_weights(w: jax.Array, rho: jax.Array, live: int | jax.Array):
  r"""Configurations merged into ``S`` groups: ``(wt_g [S, S], rho_g [S])``.

  Entropy is concave, so for any grouping
  :math:`\sum_j \rho_j H[q_j] \le \sum_g \rho_g H[\sum_{j \in g} \tfrac{\rho_j}{\rho_g} q_j]`:
  the grouped term is an upper bound of the full one, at ``S / C`` of its cost.
  The mixture of a group is again a mixture of the samples, with weights
  :math:`\sum_{j \in g} \rho_j w_{sj} / \rho_g`. Configuration ``j`` goes to
  the group of the sample its posterior favours most (after a few picks the
  posterior of a configuration is nearly one sample, so the bound is nearly
  tight); while there are at most ``S`` live configurations each has a group
  of its own (the bound is the term itself).

  Args:
    w: ``[S, C]`` posterior weights of the configurations.
    rho: ``[C]`` their weights.
    live: how many of the ``C`` configurations are live (the rest have weight 0).
  """
  s, c = w.shape
  j = jnp.arange(c)
  group = jnp.where(live <= s, j, jnp.argmax(w, axis=0))  # [C]; j >= s has rho 0 when live <= s
  onehot = (group[:, None] == jnp.arange(s)[None, :]).astype(jnp.float32)  # [C, S]
  rho_g = rho @ onehot  # [S]
  wg = (w * rho[None, :]) @ onehot  # [S, S]: sum over j in g of rho_j w_sj
  wg = wg / jnp.where(rho_g > 0, rho_g, 1.0)[None, :]
  return wg.T, rho_g


def _prune_margin(num_configs: int, s: int, k: int) -> float:
  """How far the float32 bound may fall below the float32 term it bounds, at most.

  Rounding of the ``S``-term mixtures, the ``K``-term entropies and the
  ``C``-term sum over configurations, each at most ``eps`` per term and
  entropies at most ``log K``; twice (the term and its bound), doubled again.
  A candidate whose bound is below the best gain by more than this cannot be
  the argmax of the computed gains.
  """
  eps = float(np.finfo(np.float32).eps)
  return 4.0 * (num_configs + s + k) * eps * (1.0 + float(np.log(k)))


def _pruned_best(
  wt, rho, wt_g, rho_g, blocks, rows, cond_entropy, excluded, chunk, margin
) -> tuple[jax.Array, jax.Array]:
  """The argmax of the gains ``term - cond_entropy`` and its term, evaluating few candidates.

  Every candidate's upper bound (the grouped term, :func:`_grouped_weights`)
  is computed, cheaply; candidates are then evaluated exactly in blocks of
  ``chunk``, highest bound first, until the next bound is below the best gain
  found by more than ``margin`` (none of the rest can beat it). The result is
  that of the argmax over every candidate's computed gain, lowest index on
  ties, as :func:`_dense_best`.

  Args:
    wt: ``[C, S]`` transposed posterior weights; ``rho [C]`` their weights.
    wt_g: ``[G, S]`` grouped weights; ``rho_g [G]`` theirs.
    blocks: ``[num_blocks, S, K * chunk]`` (:func:`_candidate_blocks`).
    rows: ``[N, S, K]`` the probabilities, one candidate per row.
    cond_entropy: ``[N]``; ``excluded``: ``[N]`` bool (chosen or labeled).
    chunk: the block size; ``margin``: :func:`_prune_margin`.

  Returns:
    ``(index, term at index)``: int32 and float32 scalars.
  """
  n, s, k = rows.shape
  lowest = jnp.finfo(jnp.float32).min
  bound = _gain(_weighted_entropy(wt_g, rho_g, blocks, n, k), cond_entropy, excluded)
  order = jnp.argsort(-bound).astype(jnp.int32)  # highest bound first
  num_blocks = -(-n // chunk)
  pad = num_blocks * chunk - n
  order = jnp.pad(order, (0, pad))
  sorted_bound = jnp.pad(bound[order[:n]], (0, pad), constant_values=-jnp.inf)

  def more(state):
    i, best_gain, _, _ = state
    return (i < num_blocks) & (
      sorted_bound[jnp.minimum(i, num_blocks - 1) * chunk] >= best_gain - margin
    )

  def block(state):
    i, best_gain, best_idx, best_term = state
    ids = jax.lax.dynamic_slice(order, (i * chunk,), (chunk,))
    live = jax.lax.dynamic_slice(sorted_bound, (i * chunk,), (chunk,)) > -jnp.inf
    pb = jnp.transpose(rows[ids], (1, 2, 0)).reshape(s, k * chunk)  # class-major, as blocks
    term = _block_term(wt, rho, pb, k)
    gain = term - cond_entropy[ids]
    gain = jnp.where(live, jnp.where(jnp.isnan(gain), lowest, gain), -jnp.inf)
    top = jnp.max(gain)
    pos = jnp.argmin(jnp.where(gain == top, ids, n))  # lowest index among the block's ties
    better = (top > best_gain) | ((top == best_gain) & (ids[pos] < best_idx))
    return (
      i + 1,
      jnp.where(better, top, best_gain),
      jnp.where(better, ids[pos], best_idx),
      jnp.where(better, term[pos], best_term),
    )

  init = (jnp.int32(0), jnp.float32(-jnp.inf), jnp.int32(n), jnp.float32(0.0))
  _, _, best, term_best = jax.lax.while_loop(more, block, init)
  return best, term_best


def _gain(term, cond_entropy, excluded):
  """``term - cond_entropy``, NaN as the lowest float (still pickable), excluded as ``-inf``."""
  gain = term - cond_entropy
  gain = jnp.where(jnp.isnan(gain), jnp.finfo(jnp.float32).min, gain)
  return jnp.where(excluded, -jnp.inf, gain)


def _dense_best(log_q, rho, probs, blocks, chunk, ps, cond_entropy, excluded):
  """Every candidate's gain, then its argmax: ``(index, term at index)``.

  ``probs`` may be sharded along N (``ps``): each device runs the blocked loop
  over the candidates it holds; only the small ``log_q`` and ``rho`` are
  replicated. Unsharded, ``blocks`` (laid out once, outside the pick loop) is used.
  """
  k = probs.shape[2]
  if ps is None:
    term = _expected_conditional_entropy(log_q, rho, blocks, probs.shape[1], k)
  else:

    def local(lq, r, pb):
      return _expected_conditional_entropy(lq, r, _candidate_blocks(pb, chunk), pb.shape[1], k)

    term = jax.shard_map(
      local,
      mesh=ps.mesh,
      in_specs=(P(), P(), P(None, ps.axis, None)),
      out_specs=P(ps.axis),
    )(log_q, rho, probs)
  best = jnp.argmax(_gain(term, cond_entropy, excluded)).astype(jnp.int32)
  return best, sharding.take(term, best, ps)


def _exact_steps(num_classes: int, max_exact_configs: int) -> int:
  """How many greedy steps keep ``K ** |batch| <= max_exact_configs`` (at least 1)."""
  steps, configs = 1, num_classes
  while configs <= max_exact_configs:
    steps += 1
    configs *= num_classes
  return steps


@executables.jit(
  static_argnames=("k", "num_joint_samples", "max_exact_configs", "ps", "prune", "flagged"),
)
def _batchbald(
  key,
  log_probs,
  labeled_mask,
  k,
  num_joint_samples,
  max_exact_configs,
  ps=None,
  prune=True,
  flagged=False,
):
  """Greedy BatchBALD: ``(indices [k] int32, joint mutual information [k] float32)``.

  ``scores[t]`` is the (estimated) joint mutual information of the first
  ``t + 1`` picks. ``ps``: the pool sharding of ``log_probs`` along N (axis
  1), or None; sharded, each device scores the candidates it holds and the
  chosen point's ``[S, K]`` log-probabilities are fetched with
  :func:`sharding.take_along` (the pool is never gathered).

  ``prune`` (unsharded only): each pick evaluates exactly only the candidates
  whose upper bound can reach the best gain (:func:`_pruned_best`); the picks
  are those of evaluating every candidate (``prune=False``). ``flagged``: also
  return :func:`checks.logits_ok` of ``log_probs``, computed in this call.
  """
  logp = scores_lib.log_probs(log_probs)  # [S, N, K] float32
  s, n, c = logp.shape
  probs = jnp.exp(logp)
  cond_entropy = jnp.mean(scores_lib.entropy_from_logp(logp), axis=0)  # [N] E_s H[y_i | θ_s]
  table = max_exact_configs
  m = num_joint_samples
  n_local = n if ps is None else n // ps.num_shards
  exact_chunk = max(1, min(n_local, _BLOCK_ELEMENTS // (table * c)))
  sampled_chunk = max(1, min(n_local, _BLOCK_ELEMENTS // (m * c)))
  # Candidates laid out in cache-sized blocks once, outside the pick loops.
  exact_blocks = None if ps is not None else _candidate_blocks(probs, exact_chunk)
  sampled_blocks = None if ps is not None else _candidate_blocks(probs, sampled_chunk)
  prune = prune and ps is None
  rows = jnp.transpose(probs, (1, 0, 2)) if prune else None  # [N, S, K]: one candidate a row
  theta_of_sample = jnp.arange(m) % s  # stratified: configuration j drawn under θ_(j mod S)

  def best_of(log_q, rho, live, blocks, chunk, excluded):
    if not prune:
      return _dense_best(log_q, rho, probs, blocks, chunk, ps, cond_entropy, excluded)
    w = _posterior_weights(log_q)  # [S, C]
    wt_g, rho_g = _grouped_weights(w, rho, live)
    margin = _prune_margin(log_q.shape[1], s, c)
    return _pruned_best(w.T, rho, wt_g, rho_g, blocks, rows, cond_entropy, excluded, chunk, margin)

  def pick(t, carry, best_of_batch, joint_entropy_of_batch):
    idx, taken, sum_cond, out_scores, log_table, log_samp = carry
    best, term_best = best_of_batch(taken | labeled_mask)
    cond_best = sharding.take(cond_entropy, best, ps)
    mi = joint_entropy_of_batch + term_best - sum_cond - cond_best
    logp_best = sharding.take_along(logp, best, ps, axis=1)  # [S, K]
    # Extend every sampled configuration by a draw of y_best under its own θ,
    # which keeps them exact draws from the joint predictive of the batch.
    draw = jax.random.categorical(jax.random.fold_in(key, t), logp_best[theta_of_sample])
    log_samp = log_samp + logp_best[:, draw]
    return (
      idx.at[t].set(best),
      taken.at[best].set(True),
      sum_cond + cond_best,
      out_scores.at[t].set(mi),
      log_table,
      log_samp,
    ), logp_best

  def exact_step(t, carry):
    log_table = carry[4]
    log_p_batch = _log_marginal(log_table)  # [C] log p(configuration)
    p_batch = jnp.exp(log_p_batch)
    h_batch = -jnp.sum(jnp.where(p_batch > 0, p_batch * log_p_batch, 0.0))
    live = c**t  # configurations of the batch so far (t picks)

    def best_of_batch(excluded):
      return best_of(log_table, p_batch, live, exact_blocks, exact_chunk, excluded)

    carry, logp_best = pick(t, carry, best_of_batch, h_batch)
    # Configuration j of the grown batch = (configuration j // K, class j % K);
    # -inf padding propagates, so only the first K^(t+1) columns are live.
    j = jnp.arange(table)
    grown = carry[4][:, j // c] + logp_best[:, j % c]
    return carry[:4] + (grown,) + carry[5:]

  def sampled_step(t, carry):
    log_samp = carry[5]
    h_batch = -jnp.mean(_log_marginal(log_samp))
    rho = jnp.full((m,), 1.0 / m, jnp.float32)

    def best_of_batch(excluded):
      return best_of(log_samp, rho, m, sampled_blocks, sampled_chunk, excluded)

    carry, _ = pick(t, carry, best_of_batch, h_batch)
    return carry

  log_table = jnp.full((s, table), -jnp.inf, jnp.float32).at[:, 0].set(0.0)
  carry = (
    jnp.zeros((k,), jnp.int32),
    jnp.zeros((n,), bool),
    jnp.float32(0.0),
    jnp.zeros((k,), jnp.float32),
    log_table,
    jnp.zeros((s, m), jnp.float32),
  )
  num_exact = min(k, _exact_steps(c, table))
  carry = jax.lax.fori_loop(0, num_exact, exact_step, carry)
  carry = jax.lax.fori_loop(num_exact, k, sampled_step, carry)
  if flagged:
    return carry[0], carry[3], checks.logits_ok(log_probs)
  return carry[0], carry[3]


def check_joint_samples(num_joint_samples: Any, max_exact_configs: Any = None) -> tuple[int, int]:
  """BatchBALD's estimator sizes, validated: ``(num_joint_samples, max_exact_configs)``.

  Internal API (a strategy validates its hyperparameters here when it is built).

  Args:
    num_joint_samples: configurations of the sampled estimator, ``1 ..`` :data:`MAX_CONFIGS`.
    max_exact_configs: largest configuration count summed exactly, ``1 ..``
      :data:`MAX_CONFIGS`; None stands for ``num_joint_samples``.

  Returns:
    Both as Python ints (static arguments of the jitted core).

  Raises:
    TypeError: not an integer (a float, a bool).
    ValueError: out of range.
  """
  num_joint_samples = checks.check_positive_int(
    num_joint_samples, "num_joint_samples", high=MAX_CONFIGS
  )
  if max_exact_configs is None:
    return num_joint_samples, num_joint_samples
  return num_joint_samples, checks.check_positive_int(
    max_exact_configs, "max_exact_configs", high=MAX_CONFIGS
  )


def batchbald(
  key: jax.Array,
  log_probs: ArrayLike,
  k: int,
  *,
  labeled_mask: ArrayLike | None = None,
  num_joint_samples: int = 1000,
  max_exact_configs: int | None = None,
  check_finite: bool = True,
) -> jax.Array:
  r"""BatchBALD: greedily maximise the joint mutual information of a batch.

  .. math::
    a(x_{1:b}) = H[y_1, \dots, y_b] - \tfrac1S \textstyle\sum_s \sum_i H[y_i \mid \theta_s],
    \qquad p(y_{1:b}) = \tfrac1S \textstyle\sum_s \prod_i p_s(y_i).

  Each step adds the unlabeled point that maximises :math:`a` of the batch so
  far plus that point (a :math:`1 - 1/e` approximation, :math:`a` being
  submodular). The joint entropy is written
  :math:`H[y_B, y_c] = H[y_B] + \mathbb{E}_{y_B}\, H[y_c \mid y_B]`, the
  conditional predictive of :math:`y_c` given a configuration of the batch's
  labels being a posterior-weighted mixture of the samples; everything is in
  log space, so long batches do not underflow.

  * Exact while the batch's configuration count :math:`K^{|B|}` is at most
    ``max_exact_configs``: the sum runs over every configuration.
  * Sampled beyond: over ``num_joint_samples`` configurations drawn from the
    joint predictive (sample ``j`` under network ``j mod S``, each label drawn
    from that network's predictive, extended by one draw per pick), as in
    Kirsch et al.'s estimator.

  The first pick is BALD's argmax. A chosen point is masked out, so no index
  is picked twice, even among identical points. Each pick first bounds every
  candidate's gain from above at ``O(S · N · S · K)`` (the configurations
  merged into ``S`` groups, entropy being concave), then evaluates exactly,
  in cache-sized blocks and highest bound first, only the candidates whose
  bound can still reach the best gain found: ``O(S · n · C · K)`` for those
  ``n`` (``C`` the configuration count). Once each configuration's posterior
  has settled on about one network the bound is nearly tight and ``n`` is a
  block or two; the picks are those of evaluating every candidate. One
  compile per shape.

  Args:
    key: a ``jax.random.key`` (used by the sampled estimator only).
    log_probs: ``[num_samples, num_points, num_classes]`` MC log-probabilities
      or logits (normalised here), ``num_samples >= 2``; sample ``s`` must
      come from one network for the whole pool (consistent dropout masks).
    k: batch size (static), ``1 <= k <=`` the number of unlabeled points.
    labeled_mask: optional ``[num_points]`` bool, True where already labeled.
    num_joint_samples: configurations of the sampled estimator (static).
    max_exact_configs: largest configuration count summed exactly (static);
      defaults to ``num_joint_samples``.
    check_finite: check ``log_probs`` for NaN or ``+inf`` entries (the flag
      is computed in the same compiled call, the error raised after it);
      False for callers that checked already.

  Returns:
    ``[k]`` int32 indices in the order picked: unique, unlabeled.

  Raises:
    ValueError: NaN or ``+inf`` log-probabilities (naming the first offending
      sample and row), fewer than 2 samples, ``k`` larger than the unlabeled count.
    TypeError: a legacy key, non-float log-probabilities, a non-bool mask.

  References:
    Kirsch, van Amersfoort & Gal, BatchBALD: Efficient and Diverse Batch
    Acquisition for Deep Bayesian Active Learning, NeurIPS 2019.
  """
  checks.check_key(key)
  original = log_probs
  log_probs = checks.check_mc_logits(log_probs, "log_probs", min_samples=2)
  check_finite = checks.check_bool(check_finite, "check_finite")
  n = log_probs.shape[1]
  labeled_mask = checks.check_labeled_mask(labeled_mask, n)
  k = checks.check_budget(k, n, labeled_mask)
  num_joint_samples, max_exact_configs = check_joint_samples(num_joint_samples, max_exact_configs)
  out = _batchbald_placed(
    key, log_probs, k, labeled_mask, num_joint_samples, max_exact_configs, flagged=check_finite
  )
  if check_finite:  # the flag comes from the same compiled call: no separate pass over the pool
    checks.check_finite_logits(log_probs, "log_probs", ok=out[2], original=original)
  return out[0]


def batchbald_core(
  key: jax.Array,
  log_probs: jax.Array,
  k: int,
  labeled_mask: jax.Array,
  num_joint_samples: int,
  max_exact_configs: int,
) -> jax.Array:
  """:func:`batchbald` on arguments already validated: no checks, same result.

  Internal API for callers that validated ``key``, ``labeled_mask`` and ``k``
  at their own entry (a strategy's acquire), so nothing is validated twice.

  Args:
    key: a typed key of shape ``()``.
    log_probs: ``[num_samples, num_points, num_classes]`` float, ``num_samples >= 2``.
    k: a Python int, ``1 <= k <=`` the number of unlabeled points.
    labeled_mask: ``[num_points]`` bool.
    num_joint_samples: as :func:`check_joint_samples` returns it.
    max_exact_configs: as :func:`check_joint_samples` returns it (never None).

  Returns:
    ``[k]`` int32 indices in the order picked.
  """
  return _batchbald_placed(key, log_probs, k, labeled_mask, num_joint_samples, max_exact_configs)[0]


def _batchbald_placed(
  key, log_probs, k, labeled_mask, num_joint_samples, max_exact_configs, flagged=False
):
  """:func:`_batchbald` with the pool placed along its sharding (if any)."""
  ps = _mc_pool_sharding(log_probs, labeled_mask)
  log_probs, labeled_mask = sharding.place(log_probs, ps, 1), sharding.replicate(labeled_mask, ps)
  return _batchbald(
    key, log_probs, labeled_mask, k, num_joint_samples, max_exact_configs, ps=ps, flagged=flagged
  )


def _mc_pool_sharding(log_probs, labeled_mask) -> sharding.PoolSharding | None:
  """The pool sharding of ``log_probs [S, N, K]`` (along N) or of the mask, or None."""
  ps = sharding.pool_sharding(log_probs, "log_probs", pool_axis=1)
  ps_mask = sharding.pool_sharding(labeled_mask, "labeled_mask")
  if ps is not None and ps_mask is not None and ps != ps_mask:
    raise ValueError("log_probs and labeled_mask are sharded over different meshes or axes")
  return ps if ps is not None else ps_mask


# ---------------------------------------------------------------------------
# Stochastic batch acquisition.

MODES = ("power", "softmax", "softrank")


@executables.jit(static_argnames=("k", "mode", "flagged"))
def _stochastic_batch(key, scores, labeled_mask, temperature, k, mode, flagged=False):
  """The ``[k]`` indices; ``flagged``: and :func:`checks.scores_ok` of ``scores`` (no ``+inf``)."""
  s = scores.astype(jnp.float32)
  beta = 1.0 / temperature.astype(jnp.float32)
  n = s.shape[0]
  if mode == "softmax":
    log_p = beta * s
  elif mode == "power":
    log_p = beta * jnp.log(jnp.maximum(s, 0.0))  # s == 0 → -inf: probability 0
  else:  # softrank: rank 1 = highest unlabeled score; ties by lower index
    ranked = jnp.where(labeled_mask | jnp.isnan(s), -jnp.inf, s)
    order = jnp.argsort(-ranked, stable=True)
    rank = jnp.zeros((n,), jnp.float32).at[order].set(jnp.arange(1, n + 1, dtype=jnp.float32))
    log_p = -beta * jnp.log(rank)
  # Gumbel top-k: k draws without replacement, each ∝ exp(log_p) (Plackett-Luce).
  perturbed = log_p + jax.random.gumbel(key, (n,), jnp.float32)
  lowest = jnp.finfo(jnp.float32).min
  perturbed = jnp.where(jnp.isnan(perturbed) | jnp.isneginf(perturbed), lowest, perturbed)
  perturbed = jnp.where(labeled_mask, -jnp.inf, perturbed)
  idx = jax.lax.top_k(perturbed, k)[1].astype(jnp.int32)
  return (idx, checks.scores_ok(s, allow_posinf=False)) if flagged else idx


def stochastic_batch(
  key: jax.Array,
  scores: ArrayLike,
  k: int,
  *,
  mode: str = "power",
  temperature: float = 1.0,
  labeled_mask: ArrayLike | None = None,
  check_finite: bool = True,
) -> jax.Array:
  r"""A random batch drawn with probabilities that grow with a score.

  With :math:`\beta = 1 / \text{temperature}` (Kirsch et al.'s "coldness"),
  the ``k`` points are drawn without replacement, each draw from the
  remaining unlabeled points with probability proportional to

  * ``"power"``: :math:`s_i^{\beta}` (scores must be non-negative: BALD,
    entropy, ...; a zero score has probability 0),
  * ``"softmax"``: :math:`\exp(\beta s_i)`,
  * ``"softrank"``: :math:`r_i^{-\beta}`, :math:`r_i` the rank of
    :math:`s_i` among the unlabeled points (1 = highest; ties broken toward
    the lower index).

  Sampling is Gumbel top-k: the top ``k`` of :math:`\log p_i + g_i`,
  :math:`g_i` standard Gumbel, which is exactly successive sampling without
  replacement. Points of probability 0 (or NaN score) are chosen only when
  nothing else is left, lowest index first. As the temperature goes to 0 the
  batch tends to the top-k; as it grows, to uniform random.

  Args:
    key: a ``jax.random.key``.
    scores: ``[num_points]`` scores, higher = more informative.
    k: batch size (static), ``1 <= k <=`` the number of unlabeled points.
    mode: ``"power"``, ``"softmax"`` or ``"softrank"``.
    temperature: positive; not static (changing it does not recompile).
    labeled_mask: optional ``[num_points]`` bool, True where already labeled.
    check_finite: NaN or ``+inf`` scores are an error (the flag is computed
      in the same compiled call as the batch); with False they behave as
      described above (NaN: probability 0).

  Returns:
    ``[k]`` int32 indices in the order drawn: unique, unlabeled.

  Raises:
    ValueError: NaN or ``+inf`` scores (with ``check_finite``), negative
      scores with ``mode="power"``, a bad temperature, ``k`` too large.
    TypeError: a legacy key, non-float scores, a non-bool mask.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxal import bayes
    >>> s = jnp.array([0.1, 0.9, 0.5])
    >>> bayes.stochastic_batch(jax.random.key(0), s, 2, temperature=1e-3)  # cold: the top-2
    Array([1, 2], dtype=int32)

  References:
    Kirsch, Farquhar, Atighehchian, Jesson, Branchaud-Charron & Gal,
    Stochastic Batch Acquisition: A Simple Baseline for Deep Active
    Learning, TMLR 2023.
  """
  checks.check_key(key)
  checks.check_one_of(mode, MODES, "mode")
  original = scores
  scores = checks.check_float_array(scores, "scores", 1, "[num_points]")
  check_finite = checks.check_bool(check_finite, "check_finite")
  n = scores.shape[0]
  labeled_mask = checks.check_labeled_mask(labeled_mask, n)
  k = checks.check_budget(k, n, labeled_mask)
  temperature = check_temperature(temperature)
  out = stochastic_batch_core(key, scores, k, labeled_mask, mode, temperature, flagged=check_finite)
  if not check_finite:
    return out
  # The flag comes from the same compiled call: no separate pass over the scores.
  checks.check_finite_scores(scores, "scores", allow_posinf=False, original=original, ok=out[1])
  return out[0]


def check_temperature(temperature: Any) -> jax.Array:
  """A positive finite scalar temperature as a float32 array of shape ``()``.

  A Python or NumPy number, or a 0-d array; a traced one is checked for shape
  only (its value is not known).

  Raises:
    TypeError: not a scalar number (an array of rank >= 1, a bool, a str).
    ValueError: zero, negative, NaN or inf.
  """
  if hasattr(temperature, "shape") and hasattr(temperature, "dtype"):  # an array or NumPy scalar
    if tuple(temperature.shape) != ():
      raise TypeError(f"temperature must be a positive scalar, got {checks.describe(temperature)}")
    if not checks.is_concrete(temperature):
      return jnp.asarray(temperature, jnp.float32)
    temperature = temperature.item()
  return jnp.float32(checks.check_float(temperature, "temperature", low=0, low_open=True))


def stochastic_batch_core(
  key: jax.Array,
  scores: jax.Array,
  k: int,
  labeled_mask: jax.Array,
  mode: str,
  temperature: jax.Array,
  flagged: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
  """:func:`stochastic_batch` on arguments already validated.

  Internal API for callers that validated ``key``, ``labeled_mask`` and ``k``
  at their own entry. Only the value check that depends on the scores
  (``mode="power"`` needs non-negative unlabeled scores) runs here.

  Args:
    key: a typed key of shape ``()``.
    scores: ``[num_points]`` float.
    k: a Python int, ``1 <= k <=`` the number of unlabeled points.
    labeled_mask: ``[num_points]`` bool.
    mode: one of :data:`MODES`.
    temperature: as :func:`check_temperature` returns it.
    flagged: also return :func:`checks.scores_ok` of ``scores`` (``+inf`` not
      allowed), computed in the same compiled call, for
      :func:`checks.check_finite_scores`'s ``ok=``.

  Returns:
    ``[k]`` int32 indices in the order drawn; with ``flagged``, ``(indices, ok)``.
  """
  if mode == "power" and checks.is_concrete(scores) and checks.is_concrete(labeled_mask):
    neg = (np.asarray(jax.device_get(scores)) < 0) & ~np.asarray(jax.device_get(labeled_mask))
    if neg.any():
      raise ValueError(
        f"mode='power' needs non-negative scores (p ∝ s^β); scores of shape {scores.shape} hold "
        f"{int(neg.sum())} negative unlabeled values (first at index {int(np.argmax(neg))}); "
        "use mode='softmax' or 'softrank' for signed scores"
      )
  return _stochastic_batch(key, scores, labeled_mask, temperature, k, mode, flagged=flagged)
