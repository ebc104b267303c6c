"""BAIT selection time: jaxal's factorised, jitted selection against a NumPy port of the authors'.

    python benchmarks/bait.py            # N = 2,000 against NumPy, then N = 10,000 jaxal only
    python benchmarks/bait.py --quick    # smoke test

The reference is the authors' ``select`` (``query_strategies/bait_sampling.py`` of
github.com/JordanAsh/badge) in NumPy float32, on the dense ``[N, K, K·d]`` Fisher embeddings
they build: each forward pick computes ``X A Xᵀ`` and ``X A F A Xᵀ`` for every candidate
(``O(N K D²)``) and inverts ``[N, K, K]`` batches; Woodbury updates of ``A`` as theirs.
jaxal's :func:`jaxal.selection.bait` never builds the ``N × K × D`` array: its set-up reads
``h_iᵀ G h_i`` blocks once (``O(N D²)``), then downdates every point's ``K × K`` matrices after
each pick (``O(N K² d)``), inside one ``jax.lax`` loop. Beside it, the same selection rescoring
every point from the blocks at every pick (``O(N D²)`` per pick: its fallback when the per-point
arrays do not fit, and the previous algorithm). All run the same greedy on the same objective
and weights; the picks are compared (float32 throughout, so a near tie may split them).
jaxal's time is the best of a few calls after the first (compile included in the first); the
rescoring and the NumPy port are timed once (the rescoring compiled beforehand).
"""

# run_all[quick]: --quick

from __future__ import annotations

import argparse

import _common
import jax.numpy as jnp
import numpy as np

from jaxal._src.selection import bait as bait_lib


def numpy_bait(logits, features, budget, labeled, lam):
  """The authors' forward-backward greedy, in NumPy float32 on dense Fisher embeddings."""
  z = logits - logits.max(-1, keepdims=True)
  p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
  n, k = p.shape
  eye_k = np.eye(k, dtype=np.float32)
  # X[i, c] = sqrt(p_ic) (e_c - p_i) ⊗ h_i: [N, K, K * d], class-major.
  x = (np.sqrt(p)[:, :, None, None] * (eye_k[None] - p[:, None, :])[..., None]) * features[
    :, None, None, :
  ]
  x = x.reshape(n, k, -1).astype(np.float32)
  dim = x.shape[-1]
  fisher = np.einsum("nkd,nke->de", x, x) / n
  n_l = int(labeled.sum())
  init = np.einsum("nkd,nke->de", x[labeled], x[labeled]) / max(n_l, 1)
  unl = np.flatnonzero(~labeled)
  a = np.linalg.inv(lam * np.eye(dim, dtype=np.float32) + init * n_l / (n_l + budget))
  xu = x[unl] * np.float32(np.sqrt(budget / (n_l + budget)))

  def woodbury(a, v, sign):
    u = a @ v.T
    s = eye_k + sign * v @ u
    return a - sign * u @ np.linalg.inv(s) @ u.T

  chosen: list[int] = []
  for _ in range(min(2 * budget, len(unl))):
    xa = xu @ a
    inner = np.linalg.inv(eye_k[None] + np.einsum("nkd,nld->nkl", xa, xu))
    gain = np.einsum("nkl,nlk->n", np.einsum("nkd,nld->nkl", xa @ fisher, xa), inner)
    gain[chosen] = -np.inf
    j = int(np.argmax(gain))
    chosen.append(j)
    a = woodbury(a, xu[j], 1.0)
  while len(chosen) > budget:
    xs = xu[chosen]
    xa = xs @ a
    inner = np.linalg.inv(-eye_k[None] + np.einsum("nkd,nld->nkl", xa, xs))
    est = np.einsum("nkl,nlk->n", np.einsum("nkd,nld->nkl", xa @ fisher, xa), inner)
    s = int(np.argmin(-est))
    a = woodbury(a, xs[s], -1.0)
    del chosen[s]
  return unl[np.array(chosen)]


def pool(n, d, k, seed=0):
  rng = np.random.default_rng(seed)
  logits = (2.0 * rng.normal(size=(n, k))).astype(np.float32)
  features = rng.normal(size=(n, d)).astype(np.float32)
  labeled = np.zeros(n, bool)
  labeled[rng.choice(n, n // 20, replace=False)] = True
  return logits, features, labeled


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--n", type=int, default=2000)
  p.add_argument("--big", type=int, default=10_000)
  p.add_argument("--d", type=int, default=32)
  p.add_argument("--k", type=int, default=10)
  p.add_argument("--budget", type=int, default=20)
  p.add_argument("--lam", type=float, default=1.0)
  p.add_argument(
    "--usual-d", type=int, default=128, help="feature dimension of the quality runs' network"
  )
  p.add_argument("--usual-budget", type=int, default=100)
  p.add_argument("--quick", action="store_true")
  args = p.parse_args(argv)
  if args.quick:
    args.n, args.big, args.d, args.budget = 300, 1000, 8, 5
    args.usual_d, args.usual_budget = 16, 10
  info = _common.machine(argv)
  rows = []
  # (N, d, budget, with the NumPy port); the last is the quality runs' size.
  sizes = (
    (args.n, args.d, args.budget, True),
    (args.big, args.d, args.budget, False),
    (args.big, args.usual_d, args.usual_budget, False),
  )
  for n, d, budget, with_ref in sizes:
    logits, features, labeled = pool(n, d, args.k)
    mask = jnp.asarray(labeled)
    lg, ft = jnp.asarray(logits), jnp.asarray(features)

    def run(incremental):
      return bait_lib.bait_core(lg, ft, budget, mask, jnp.float32(args.lam), False, incremental)

    first, best, _, (idx, _) = _common.first_and_best(lambda: run(True), repeats=3)
    # The per-pick rescoring (the previous algorithm): compiled first, then one timed call.
    run_old = bait_lib.bait_core.lower(
      lg, ft, budget, mask, jnp.float32(args.lam), False, False
    ).compile()
    t_old, (idx_old, _) = _common.once(lambda: run_old(lg, ft, mask, jnp.float32(args.lam)))
    same_old = len(set(np.asarray(idx).tolist()) & set(np.asarray(idx_old).tolist()))
    row = {
      "N": f"{n:,}",
      "K x d": f"{args.k} x {d}",
      "budget": budget,
      "jaxal first (s)": f"{first:.2f}",
      "jaxal best (s)": f"{best:.3f}",
      "rescoring (s)": f"{t_old:.2f}",
      "rescoring / jaxal": f"{t_old / best:.1f}x",
      "same picks as rescoring": f"{same_old} / {budget}",
    }
    if with_ref:
      t_ref, ref = _common.once(lambda: numpy_bait(logits, features, budget, labeled, args.lam))
      agree = len(set(np.asarray(idx).tolist()) & set(ref.tolist()))
      row |= {
        "NumPy port (s)": f"{t_ref:.2f}",
        "NumPy / jaxal best": f"{t_ref / best:.1f}x",
        "same picks as NumPy": f"{agree} / {budget}",
      }
    else:
      row |= {"NumPy port (s)": "—", "NumPy / jaxal best": "—", "same picks as NumPy": "—"}
    rows.append(row)
    print(row, flush=True)
  info["loadavg_at_end"] = _common.load_now()
  cols = list(rows[0])
  md = _common.header("BAIT selection time on CPU", info)
  md += [
    f"Random logits (scale 2) and Gaussian features, 5% labeled, λ = {args.lam}; 2 x budget "
    "forward picks, then pruning to budget. `jaxal`: `selection.bait`'s default scoring, "
    "which keeps every point's `V A Vᵀ` and `V AFA Vᵀ` and downdates them after each pick "
    "(`O(N K² d)` per pick); its time is the best of 3 calls after the first (which includes "
    "the compile). `rescoring`: the same selection rescoring every point from the dense "
    "`[K·d, K·d]` blocks at every pick (`O(N (K·d)²)` per pick; what `selection.bait` falls "
    "back to when the per-point arrays do not fit in `memory_limit`, and its only algorithm "
    "before), compiled first, one call timed. The NumPy port is the authors' algorithm on "
    "dense [N, K, K·d] embeddings (float32, NumPy's BLAS, `O(N K (K·d)²)` per pick). The "
    f"last row is the size of the quality runs (N = {args.big:,}, {args.usual_d} hidden "
    "units). Picks are compared as sets (float32 throughout, so a near tie may split them).",
    "",
    *_common.table(rows, cols),
    "",
  ]
  _common.write("bait", {"meta": info, "rows": rows}, "\n".join(md), quick=args.quick)


if __name__ == "__main__":
  main()
