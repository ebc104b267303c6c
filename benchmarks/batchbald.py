"""BatchBALD time against the pool size N and the batch size k, with a NumPy reference.

    python benchmarks/batchbald.py           # the full grid, writes results/batchbald.md
    python benchmarks/batchbald.py --quick   # a smoke test of the script

jaxal: ``jaxal.bayes.batchbald`` (one jitted call: two ``lax.fori_loop`` over
the picks, candidates vectorised in blocks) on random MC log-probabilities
``[S=20, N, K=10]`` with ``num_joint_samples = max_exact_configs = 512`` (the
strategy's default). Reported: the first call (compilation included) and the
best of the later calls.

Reference, timed in the same run on the smaller sizes: the same algorithm
written the way batchbald_redux (Kirsch et al.'s PyTorch code) runs it, in
NumPy float32: a Python loop over the k picks; the exact joint table grown
by outer products while K^|batch| <= 512, else 512 configurations resampled
from the joint each pick; for each pick the joint entropy of every candidate,
vectorised over candidates in blocks. The ratio is reference / jaxal (compiled).
The exact-phase picks of both are compared (the sampled phase draws different
random configurations, so later picks may legitimately differ).
"""

from __future__ import annotations

import argparse

import _common
import jax
import numpy as np

from jaxal import bayes

S, K, M = 20, 10, 512


def np_batchbald(log_probs, k, m, rng, block=256):
  """NumPy reference (batchbald_redux's structure): Python loop over picks."""
  probs = np.exp(log_probs - log_probs.max(-1, keepdims=True)).astype(np.float32)
  probs /= probs.sum(-1, keepdims=True)
  s, n, c = probs.shape
  with np.errstate(divide="ignore", invalid="ignore"):
    cond = np.mean(-np.sum(np.where(probs > 0, probs * np.log(probs), 0.0), -1), 0)  # [N]
  chosen = []
  table = np.ones((s, 1), np.float32)  # exact joint probabilities of the batch's configurations
  for _ in range(k):
    if table.shape[1] <= m:
      configs, weight = table, None
    else:  # resample m configurations of the batch from the joint: θ uniform, then y_i ~ p_θ
      theta = np.arange(m) % s
      configs = np.ones((s, m), np.float32)
      for i in chosen:
        cum = np.cumsum(probs[theta, i, :], -1)
        y = np.minimum((rng.random((m, 1)) > cum).sum(-1), c - 1)
        configs *= probs[:, i, y]
      weight = configs.mean(0)  # q(y^m)
    scores = np.empty(n, np.float32)
    for start in range(0, n, block):
      p = probs[:, start : start + block, :]
      joint = np.einsum("sj,scy->cjy", configs, p) / s  # p(config, y_c)
      with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(joint > 0, joint * np.log(joint), 0.0)
      if weight is None:
        h = -plogp.sum((1, 2))
      else:
        h = -(plogp / weight[None, :, None]).sum((1, 2)) / configs.shape[1]
      scores[start : start + block] = h - cond[start : start + block]
    scores[chosen] = -np.inf
    best = int(np.argmax(scores))
    chosen.append(best)
    if table.shape[1] * c <= m:
      table = (table[:, :, None] * probs[:, best, None, :]).reshape(s, -1)
    else:
      table = np.ones((s, m + 1), np.float32)  # marks the sampled phase from now on
  return np.array(chosen)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--quick", action="store_true")
  args = parser.parse_args()
  meta = _common.machine()
  if args.quick:
    grid_n, grid_k, ref_n, ref_k, repeats = (500, 1000), (4, 8), (500,), (4, 8), 1
  else:
    grid_n, grid_k, ref_n, ref_k, repeats = (
      (1000, 4000, 16000),
      (5, 10, 20),
      (1000, 4000),
      (5, 10),
      2,
    )
  rows = []
  for n in grid_n:
    lp = jax.nn.log_softmax(2.0 * jax.random.normal(jax.random.key(n), (S, n, K)), -1)
    for k in grid_k:
      key = jax.random.key(k)
      first, best, _, idx = _common.first_and_best(
        lambda: bayes.batchbald(key, lp, k, num_joint_samples=M), repeats
      )
      row = {
        "N": n,
        "k": k,
        "jaxal_first_s": round(first, 3),
        "jaxal_s": round(best, 4),
        "jaxal_ms_per_pick": round(1e3 * best / k, 2),
      }
      if n in ref_n and k in ref_k:
        ref_s, ref = _common.once(
          lambda: np_batchbald(np.asarray(lp), k, M, np.random.default_rng(0))
        )
        row["numpy_s"] = round(ref_s, 3)
        row["ratio_numpy_over_jaxal"] = round(row["numpy_s"] / best, 2)
        exact = min(k, 3)  # K=10, 512 configurations: picks 1-3 are exact
        row["exact_picks_agree"] = bool(np.array_equal(np.asarray(idx)[:exact], ref[:exact]))
      rows.append(row)
      print(row, flush=True)
  meta["loadavg_at_end"] = _common.load_now()
  meta["setup"] = f"S={S} MC samples, K={K} classes, num_joint_samples=max_exact_configs={M}"
  lines = _common.header("BatchBALD: time against N and k", meta) + [
    f"Setup: {meta['setup']}; random log-probabilities.",
    "",
    "| N | k | jaxal first call (s) | jaxal compiled (s) | ms / pick | NumPy reference (s) "
    "| reference / jaxal | exact picks agree |",
    "|---:|---:|---:|---:|---:|---:|---:|:---:|",
  ]
  for r in rows:
    lines.append(
      f"| {r['N']} | {r['k']} | {r['jaxal_first_s']} | {r['jaxal_s']} | "
      f"{r['jaxal_ms_per_pick']} | {r.get('numpy_s', '—')} | "
      f"{r.get('ratio_numpy_over_jaxal', '—')} | {r.get('exact_picks_agree', '—')} |"
    )
  _common.write("batchbald", {"meta": meta, "rows": rows}, "\n".join(lines), quick=args.quick)


if __name__ == "__main__":
  main()
