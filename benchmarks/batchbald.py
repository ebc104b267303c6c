"""BatchBALD against its arithmetic floor and against batchbald_redux's algorithm.

    python benchmarks/batchbald.py                 # N = 10,000 and 100,000, batches of 100
    python benchmarks/batchbald.py --quick         # a smoke test of the script
    python benchmarks/batchbald.py --size gpu      # N = 10^6 and 10^7 (no reference)
    python benchmarks/batchbald.py --reference-big # also the reference at N = 100,000 (slow)
    python benchmarks/batchbald.py --redux-python .venv-redux/bin/python  # batchbald_redux itself
    python benchmarks/batchbald.py --sizes 100000 --name batchbald_100k    # one N, its own file

jaxal: ``jaxal.bayes.batchbald`` (one jitted call: two ``lax.fori_loop`` over
the picks; each pick bounds every candidate's gain by merging the configurations
into S groups, then evaluates exactly, in cache-sized blocks and highest bound
first, only the candidates whose bound can reach the best gain) on random MC log-probabilities
``[S=20, N, K=10]`` with ``num_joint_samples = max_exact_configs = 512`` (the
strategy's default). Reported: the first call (compilation included) and the
best later call.

Floors, measured in the same run (the arithmetic of evaluating every candidate;
pruning lets jaxal go below them): every pick multiplies the ``[M, S]`` posterior
weights of the M = 512 configurations by every candidate's ``[S, K]``
probabilities, ``N * M * S * K`` multiply-adds; the product floor is a jitted
product of exactly that shape (in the same cache-sized blocks, each reduced to a
number so that nothing else is written), times ``k``. The entropy of each of
the ``N * M`` conditional predictives needs a logarithm of each of the
``N * M * K`` products: the product-and-log floor adds exactly that.

Reference: batchbald_redux itself (Kirsch et al.'s code, ``get_batchbald_batch``
with ``DynamicJointEntropy``, PyTorch) when ``--redux-python`` names an
interpreter that has it (it runs in that interpreter's own process, see
``_batchbald_redux_worker.py`` for its set-up), on the same float32
log-probabilities. Without it, a NumPy float64 port of its algorithm, line for
line: exact joint table grown by outer
products while ``K ** |batch| <= 512``, else ``512 // S`` labels per network
resampled from every chosen point at every pick (``SampledJointEntropy.sample``)
and the importance-weighted joint entropy; the per-candidate ``[M, S] x [S, K]``
products batched over candidate chunks (the same arithmetic). Its picks in the
exact regime (the first three) are compared with jaxal's.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import tempfile

import _common
import jax
import jax.numpy as jnp
import numpy as np

from jaxal import bayes
from jaxal._src import bayes as bayes_lib

S, K, M = 20, 10, 512


def batchbald_redux_numpy(log_probs_s_n_k, batch_size, num_samples, rng, chunk=1024):
  """batchbald_redux's ``get_batchbald_batch`` in NumPy float64: ``[batch_size]`` indices."""
  lp = np.asarray(log_probs_s_n_k, np.float64).transpose(1, 0, 2)  # their [N, K(samples), C]
  lp = lp - np.logaddexp.reduce(lp, axis=-1, keepdims=True)
  probs = np.exp(lp)
  n, s, c = lp.shape
  cond = -np.sum(lp * probs, axis=(1, 2)) / s  # compute_conditional_entropy
  chosen: list[int] = []
  joint = np.ones((1, s))  # ExactJointEntropy.empty: joint_probs_M_K
  sampled = False
  scores = np.empty(n)
  for i in range(batch_size):
    if i > 0:  # DynamicJointEntropy.add_variables(latest)
      latest = chosen[-1]
      if c ** len(chosen) > num_samples:  # SampledJointEntropy.sample over every chosen point
        per = num_samples // s
        p_sel = probs[chosen]  # [b, K, C]
        cum = np.cumsum(p_sel, -1)
        u = rng.random((len(chosen), s, per, 1))
        choices = np.minimum((u > cum[:, :, None, :]).sum(-1), c - 1)  # [b, K, S']
        # probs_N_K_K_S[n, k, k', s'] = p_k(y_n = choice[n, k', s'])
        g = np.take_along_axis(
          p_sel[:, :, None, :], np.broadcast_to(choices[:, None], (len(chosen), s, s, per)), -1
        )
        joint = np.exp(np.sum(np.log(g), axis=0)).reshape(s, -1).T  # [M, K]
        sampled = True
      else:  # exact: grow the table by the new variable's outer product
        jt = joint.T[:, :, None] * probs[latest][:, None, :]  # [K, M, C]
        joint = jt.reshape(s, -1).T
    mm = joint.shape[0]
    q = joint.mean(1)[None, :, None]
    for start in range(0, n, chunk):  # compute_batch, candidates in chunks
      pb = np.matmul(joint, probs[start : start + chunk]) / s  # [b, M, C]
      with np.errstate(divide="ignore", invalid="ignore"):
        nats = np.where(pb > 0, -np.log(pb) * pb, 0.0)
      if sampled:
        scores[start : start + chunk] = np.sum(nats / q, axis=(1, 2)) / mm
      else:
        scores[start : start + chunk] = np.sum(nats, axis=(1, 2))
    scores -= cond + cond[chosen].sum()
    scores[chosen] = -np.inf
    chosen.append(int(np.argmax(scores)))
  return np.array(chosen)


@jax.jit
def floor_one_pick(w, blocks):
  """``N * M * S * K`` multiply-adds in the blocks BatchBALD uses, each block reduced to a sum."""
  wt = w.T
  return jnp.sum(jax.lax.map(lambda pb: jnp.sum(wt @ pb), blocks))


@jax.jit
def floor_log_one_pick(w, blocks):
  """The same products and one logarithm of each of the ``N * M * K`` results (the entropy's)."""
  wt = w.T
  return jnp.sum(jax.lax.map(lambda pb: jnp.sum(jnp.log(wt @ pb)), blocks))


def floor_seconds(n, k, repeats):
  """``(product floor, product-and-log floor)`` of ``k`` picks, in seconds."""
  rng = np.random.default_rng(0)
  probs = jnp.asarray(rng.random((S, n, K), np.float32))
  chunk = max(1, min(n, bayes_lib._BLOCK_ELEMENTS // (M * K)))
  blocks = bayes_lib._candidate_blocks(probs, chunk)
  w = jnp.asarray(rng.random((S, M), np.float32))
  _, best, _, _ = _common.first_and_best(lambda: floor_one_pick(w, blocks), repeats)
  _, best_log, _, _ = _common.first_and_best(lambda: floor_log_one_pick(w, blocks), repeats)
  return best * k, best_log * k


def run_redux(python, lp, k):
  """batchbald_redux itself, in ``python``'s own process: ``(seconds, indices, description)``."""
  with tempfile.TemporaryDirectory() as tmp:
    inp, out = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.json")
    np.savez(inp, log_probs=np.asarray(lp, np.float32), k=k, num_samples=M)
    worker = os.path.join(_common.HERE, "_batchbald_redux_worker.py")
    env = dict(os.environ, TQDM_DISABLE="1")
    subprocess.run([python, worker, inp, out], check=True, env=env)
    with open(out) as f:
      res = json.load(f)
  what = (
    f"batchbald_redux {res['batchbald_redux']} (PyTorch {res['torch']}, {res['threads']} "
    "threads), get_batchbald_batch on the same float32 log-probabilities"
  )
  return res["seconds"], np.array(res["indices"]), what


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--size", choices=("cpu", "gpu"), default="cpu")
  parser.add_argument("--reference-big", action="store_true", help="reference at N=100,000 too")
  parser.add_argument(
    "--sizes",
    type=lambda v: {int(n) for n in v.split(",")},
    default=None,
    help="only these N of the grid (comma-separated)",
  )
  parser.add_argument("--name", default="batchbald", help="results file name")
  parser.add_argument(
    "--redux-python",
    default=os.environ.get("JAXAL_BATCHBALD_REDUX_PYTHON"),
    help="an interpreter with PyTorch and batchbald_redux: the reference is then the library "
    "itself (see benchmarks/_batchbald_redux_worker.py), else its NumPy port",
  )
  args = parser.parse_args()
  meta = _common.machine()
  if args.quick:
    grid, ref_n, repeats = ((2000, 10),), (2000,), 1
  elif args.size == "gpu":
    grid, ref_n, repeats = ((1_000_000, 100), (10_000_000, 100)), (), 1
  else:
    grid, ref_n, repeats = ((10_000, 100), (100_000, 100)), (10_000,), 2
    if args.reference_big:
      ref_n = (10_000, 100_000)
  if args.sizes:
    grid = tuple((n, k) for n, k in grid if n in args.sizes)
  rows = []
  for n, k in grid:
    lp = jax.nn.log_softmax(2.0 * jax.random.normal(jax.random.key(n), (S, n, K)), -1)
    key = jax.random.key(k)
    reps = repeats if n <= 10_000 else 1
    # Floors before and after (the lower of each): a change of load during jaxal's calls
    # cannot flatter the ratio.
    before = floor_seconds(n, k, 3)
    first, best, _, idx = _common.first_and_best(
      lambda: bayes.batchbald(key, lp, k, num_joint_samples=M), reps
    )
    after = floor_seconds(n, k, 3)
    floor, floor_log = min(before[0], after[0]), min(before[1], after[1])
    row = {
      "N": n,
      "k": k,
      "jaxal_first_s": round(first, 3),
      "jaxal_s": round(best, 3),
      "jaxal_ms_per_pick": round(1e3 * best / k, 2),
      "floor_s": round(floor, 3),
      "jaxal_over_floor": round(best / floor, 2),
      "floor_log_s": round(floor_log, 3),
      "jaxal_over_floor_log": round(best / floor_log, 2),
    }
    if n in ref_n:
      if args.redux_python:
        ref_s, ref, meta["reference"] = run_redux(args.redux_python, lp, k)
      else:
        ref_s, ref = _common.once(
          lambda: batchbald_redux_numpy(np.asarray(lp), k, M, np.random.default_rng(0))
        )
        meta["reference"] = "NumPy float64 port of batchbald_redux's get_batchbald_batch"
      row["reference_s"] = round(ref_s, 2)
      row["reference_over_jaxal"] = round(ref_s / best, 1)
      exact = min(k, 1 + int(math.log(M, K)))  # K=10, 512 configurations: picks 1-3 are exact
      row["exact_picks_agree"] = bool(np.array_equal(np.asarray(idx)[:exact], ref[:exact]))
      row["picks_in_common"] = len(set(np.asarray(idx).tolist()) & set(ref.tolist()))
    rows.append(row)
    print(row, flush=True)
  meta["loadavg_at_end"] = _common.load_now()
  meta["setup"] = f"S={S} MC samples, K={K} classes, num_joint_samples=max_exact_configs={M}"
  cols = [
    "N",
    "k",
    "jaxal_first_s",
    "jaxal_s",
    "jaxal_ms_per_pick",
    "floor_s",
    "jaxal_over_floor",
    "floor_log_s",
    "jaxal_over_floor_log",
    "reference_s",
    "reference_over_jaxal",
    "exact_picks_agree",
    "picks_in_common",
  ]
  lines = _common.header("BatchBALD: against the arithmetic floor and batchbald_redux", meta) + [
    f"Setup: {meta['setup']}; random log-probabilities. `floor_s`: k products of the "
    "N·M·S·K shape a pick multiplies, in the same blocks (measured in the same run); "
    "`floor_log_s`: the same products plus one logarithm of each of their N·M·K entries, "
    "which the entropy of every candidate under every configuration needs. "
    f"Reference: {meta.get('reference', '—')}; `exact_picks_agree`: the "
    "first three picks (the exact regime, 10^|batch| <= 512 configurations) are the same; "
    "later picks come from sampled configurations, so they may differ (`picks_in_common` of k).",
    "",
    *_common.table(rows, cols),
    "",
  ]
  _common.write(args.name, {"meta": meta, "rows": rows}, "\n".join(lines), quick=args.quick)


if __name__ == "__main__":
  main()
