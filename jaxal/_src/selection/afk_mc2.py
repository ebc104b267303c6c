"""AFK-MC²: k-means++ seeding by Markov chains, with one pass over the pool.

Exact k-means++ reads the whole pool once per centre. AFK-MC² (Bachem, Lucic,
Hassani & Krause, NeurIPS 2016) reads it once, to build the proposal

.. math::
  q(x) = \\tfrac12 \\frac{d(x, c_1)^2}{\\sum_{x'} d(x', c_1)^2} + \\tfrac12 \\frac{1}{n},

then draws each further centre by a Metropolis chain of length ``m`` whose
stationary law is the D² law: from the current candidate ``x`` a proposal
``y ~ q`` is accepted with probability
``min(1, d(y, C)² q(x) / (d(x, C)² q(y)))``. Each step costs a distance to the
centres chosen so far, so seeding costs ``O(n d + k² m d)`` instead of
``O(n k d)``.

Every candidate for every centre (``k × m`` indices) is drawn up front from
``q`` by inverse CDF; the chains then run in one ``jax.lax.fori_loop`` over the
centres with a ``jax.lax.scan`` over the chain. Labeled points get ``q = 0``
and are never centres. A candidate that is already a centre has ``d = 0`` and
is never accepted; if a whole chain finds no new point (only possible when
``m`` proposals all hit chosen centres) the centre is drawn uniformly from the
remaining unlabeled points, so indices stay unique.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxal._src import distances
from jaxal._src import executables


@executables.jit(static_argnames=("k", "chain_length", "first"))
def afk_mc2(key, x, k, labeled_mask, chain_length, first):
  """``[k]`` int32 centres by AFK-MC²; see the module docstring."""
  x = distances.rescale(x)[0]  # entries in [-1, 1]: no finite input overflows a distance
  n = distances.num_points(x)
  m = chain_length
  k_first, k_prop, k_acc, k_fallback = jax.random.split(key, 4)
  sqn = distances.sq_norms(x)
  unl = ~labeled_mask
  if first == "max_norm":
    c1 = jnp.argmax(jnp.where(unl, sqn, -jnp.inf)).astype(jnp.int32)
  else:
    g = jax.random.gumbel(k_first, (n,))
    c1 = jnp.argmax(jnp.where(unl, g, -jnp.inf)).astype(jnp.int32)

  # The one pass over the pool: the proposal q.
  d1 = distances.sq_dist(x, distances.take(x, c1), sqn, sqn[c1])
  d1 = jnp.where(unl, d1, 0.0)
  num_unl = jnp.sum(unl).astype(jnp.float32)
  total = jnp.sum(d1)
  q = 0.5 * jnp.where(total > 0, d1 / jnp.where(total > 0, total, 1.0), 0.0)
  q = q + jnp.where(unl, 0.5 / num_unl, 0.0)
  q = jnp.where(total > 0, q, jnp.where(unl, 1.0 / num_unl, 0.0))
  cdf = jnp.cumsum(q)
  u = jax.random.uniform(k_prop, (max(k - 1, 1), m), minval=0.0, maxval=1.0) * cdf[-1]
  cand = jnp.clip(jnp.searchsorted(cdf, u, side="right"), 0, n - 1).astype(jnp.int32)
  # Guard against landing on a zero-mass point through rounding at the edges.
  cand = jnp.where(q[cand] > 0, cand, c1)
  log_acc_u = jnp.log(jax.random.uniform(k_acc, (max(k - 1, 1), m), minval=1e-12, maxval=1.0))

  centres = jnp.full((k,), c1, jnp.int32)
  centre_pts = jax.tree.map(lambda t: jnp.broadcast_to(distances.take(t, c1), (k, *t.shape[1:])), x)
  centre_sqn = jnp.full((k,), sqn[c1])
  chosen = jnp.zeros((n,), bool).at[c1].set(True)

  def step(t, carry):
    centres, centre_pts, centre_sqn, chosen = carry
    idx = cand[t - 1]  # [m]
    pts = distances.take(x, idx)
    d = distances.sq_dist(pts, centre_pts, sqn[idx], centre_sqn)  # [m, k]
    d = jnp.where(jnp.arange(k)[None, :] < t, d, jnp.inf)
    dmin = jnp.where(chosen[idx], 0.0, jnp.min(d, axis=1))  # [m]
    logw = jnp.log(dmin) - jnp.log(q[idx])  # -inf for chosen candidates

    def chain(state, j):
      cur, cur_logw = state
      accept = (logw[j] - cur_logw > log_acc_u[t - 1, j]) | (
        jnp.isneginf(cur_logw) & (logw[j] > -jnp.inf)
      )
      return (jnp.where(accept, idx[j], cur), jnp.where(accept, logw[j], cur_logw)), None

    (pick, pick_logw), _ = jax.lax.scan(chain, (idx[0], logw[0]), jnp.arange(1, m))
    fallback = jnp.argmax(
      jnp.where(unl & ~chosen, jax.random.gumbel(jax.random.fold_in(k_fallback, t), (n,)), -jnp.inf)
    ).astype(jnp.int32)
    pick = jnp.where(jnp.isneginf(pick_logw), fallback, pick)
    row = distances.take(x, pick)
    centre_pts = jax.tree.map(lambda b, r: b.at[t].set(r), centre_pts, row)
    return (
      centres.at[t].set(pick),
      centre_pts,
      centre_sqn.at[t].set(sqn[pick]),
      chosen.at[pick].set(True),
    )

  centres, *_ = jax.lax.fori_loop(1, k, step, (centres, centre_pts, centre_sqn, chosen))
  return centres
