"""BAIT selection time: jaxal's factorised, jitted selection against a NumPy port of the authors'.

    python benchmarks/bait.py            # N = 2,000 against NumPy, then N = 10,000 jaxal only
    python benchmarks/bait.py --quick    # smoke test

The reference is the authors' ``select`` (``query_strategies/bait_sampling.py`` of
github.com/JordanAsh/badge) in NumPy float32, on the dense ``[N, K, K·d]`` Fisher embeddings
they build: each forward pick computes ``X A Xᵀ`` and ``X A F A Xᵀ`` for every candidate
(``O(N K D²)``) and inverts ``[N, K, K]`` batches; Woodbury updates of ``A`` as theirs.
jaxal's :func:`jaxal.selection.bait` never builds the ``N × K × D`` array: it reads ``h_iᵀ G
h_i`` blocks (``O(N D²)`` per pick) inside one ``jax.lax`` loop. Both run the same greedy on
the same objective and weights; the picks are compared (float32 both, so a near tie may split
them; the table says how many agree). Times are the best of a few calls after the first
(compile included in the first).
"""

# run_all[quick]: --quick

from __future__ import annotations

import argparse

import _common
import jax.numpy as jnp
import numpy as np

from jaxal import selection


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
  p.add_argument("--quick", action="store_true")
  args = p.parse_args(argv)
  if args.quick:
    args.n, args.big, args.d, args.budget = 300, 1000, 8, 5
  info = _common.machine(argv)
  rows = []
  for n, with_ref in ((args.n, True), (args.big, False)):
    logits, features, labeled = pool(n, args.d, args.k)
    mask = jnp.asarray(labeled)
    lg, ft = jnp.asarray(logits), jnp.asarray(features)

    def run():
      return selection.bait(lg, ft, args.budget, labeled_mask=mask, lam=args.lam)

    first, best, median, idx = _common.first_and_best(run, repeats=3)
    row = {
      "N": f"{n:,}",
      "K x d": f"{args.k} x {args.d}",
      "budget": args.budget,
      "jaxal first (s)": f"{first:.2f}",
      "jaxal best (s)": f"{best:.3f}",
    }
    if with_ref:
      t_ref, ref = _common.once(
        lambda: numpy_bait(logits, features, args.budget, labeled, args.lam)
      )
      agree = len(set(np.asarray(idx).tolist()) & set(ref.tolist()))
      row |= {
        "NumPy port (s)": f"{t_ref:.2f}",
        "NumPy / jaxal best": f"{t_ref / best:.1f}x",
        "same picks": f"{agree} / {args.budget}",
      }
    else:
      row |= {"NumPy port (s)": "—", "NumPy / jaxal best": "—", "same picks": "—"}
    rows.append(row)
    print(row, flush=True)
  info["loadavg_at_end"] = _common.load_now()
  cols = list(rows[0])
  md = _common.header("BAIT selection time on CPU", info)
  md += [
    f"Random logits (scale 2) and Gaussian features, 5% labeled, λ = {args.lam}; 2 x budget "
    "forward picks, then pruning to budget. The NumPy port is the authors' algorithm on "
    "dense [N, K, K·d] embeddings (float32, NumPy's BLAS); jaxal's time is the best of 3 calls "
    "after the first (which includes the compile). The machine was shared (see the load).",
    "",
    *_common.table(rows, cols),
    "",
  ]
  _common.write("bait", {"meta": info, "rows": rows}, "\n".join(md), quick=args.quick)


if __name__ == "__main__":
  main()
