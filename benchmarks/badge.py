"""BADGE selection: jaxal's k-means++ on the factorised embedding vs a dense NumPy reference.

    python benchmarks/badge.py            # both parts, writes benchmarks/results/badge.md
    python benchmarks/badge.py --quick    # smaller sizes, a smoke test of the script

Part 1 (N = 20,000, d = 512, K = 10, budget 500): ``jaxal.selection.kmeans_pp``
on a ``GradEmbedding`` against the same algorithm in NumPy on the dense
``[N, K*d]`` matrix the way DISTIL runs it (max-norm first centre, then per
centre one pass computing ``‖X − μ‖`` over the whole matrix, a min update, and
a draw ∝ D², redrawn while it hits a chosen index), in the same process.
Reported: time of the first call (compilation included) and of compiled calls,
the ratio to the reference, and bandwidth beside a plain jitted ``jnp.sum``
over the same ``N*(K+d)*4`` bytes. The "per-centre GB/s" counts the bytes a
one-pass-per-centre algorithm must read (``k * N * (K+d) * 4``) over the time;
jaxal reads the pool only once per batch of up to 32 centres (the rest are
drawn by exact rejection sampling), so it also reports the passes it made.

Part 2 (N = 200,000, K = 100, d = 512, budget 1,000; dense would be 41 GB):
time and peak memory in a separate process. Part 3: a million-point pool
(K = 10, d = 128, budget 100) to show it runs in bounded memory. Memory is also
reported as XLA's own analysis of the compiled selection (temporaries beyond
the inputs).

Peak memory is the process's peak RSS during the first call (``VmHWM``, reset
through ``/proc/self/clear_refs`` just before it), beside its RSS just before it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import _common
import jax
import jax.numpy as jnp
import numpy as np

# ---------------------------------------------------------------------------
# Helpers.


def make_embedding(n: int, k: int, d: int, seed: int = 0):
  """A realistic BADGE embedding: a = p − onehot(ŷ) from random logits, z ≥ 0 features."""
  rng = np.random.default_rng(seed)
  logits = rng.standard_normal((n, k), dtype=np.float32) * 2.0
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  a = p - np.eye(k, dtype=np.float32)[p.argmax(1)]
  z = np.maximum(rng.standard_normal((n, d), dtype=np.float32), 0.0)  # no float64 temporaries
  return a.astype(np.float32), z


def plain_read_gbps(nbytes: int, repeats: int = 30) -> float:
  x = jnp.ones((nbytes // 4,), jnp.float32)
  f = jax.jit(jnp.sum)
  _, best, _, _ = _common.first_and_best(lambda: f(x), repeats)  # the first call compiles
  return nbytes / best / 1e9


def numpy_badge_reference(
  x: np.ndarray, k: int, seed: int = 0, row_chunk: int = 2048
) -> np.ndarray:
  """k-means++ on the dense matrix as DISTIL's ``init_centers`` does it, vectorised per centre.

  First centre: largest norm. Then for each new centre μ, one pass computing
  ``‖x_i − μ‖`` for every row (``torch.nn.PairwiseDistance`` in DISTIL; here
  NumPy over row chunks so temporaries stay small), ``D = min(D, ‖x − μ‖)``,
  and a draw with probability ``D² / ΣD²``, redrawn while it is already chosen.
  """
  rng = np.random.default_rng(seed)
  n = len(x)
  ind = int(np.argmax(np.einsum("ij,ij->i", x, x)))
  chosen = [ind]
  dist = np.full(n, np.inf, np.float64)
  while len(chosen) < k:
    mu = x[chosen[-1]]
    for s in range(0, n, row_chunk):
      diff = x[s : s + row_chunk] - mu
      dist[s : s + row_chunk] = np.minimum(
        dist[s : s + row_chunk], np.sqrt(np.einsum("ij,ij->i", diff, diff))
      )
    p = dist**2
    p /= p.sum()
    ind = int(rng.choice(n, p=p))
    while ind in chosen:
      ind = int(rng.choice(n, p=p))
    chosen.append(ind)
  return np.asarray(chosen)


def potential(points, idx) -> float:
  """k-means cost Σ_i min_c ‖x_i − c‖² of a selection (factorised distances, chunked)."""
  from jaxal._src import distances

  d, _ = distances.min_sq_dist(points, distances.take(points, jnp.asarray(idx)), chunk_size=256)
  return float(jnp.sum(d))


# ---------------------------------------------------------------------------
# Stages (each run in its own process).


def stage_select(n: int, k: int, d: int, budget: int, run_reference: bool) -> dict:
  from jaxal import selection
  from jaxal._src.selection import kmeans_pp
  from jaxal.embeddings import GradEmbedding

  a, z = make_embedding(n, k, d)
  emb = GradEmbedding(jnp.asarray(a), jnp.asarray(z))
  jax.block_until_ready(emb)
  del a, z
  bytes_per_pass = n * (k + d) * 4
  out: dict = {
    "N": n,
    "K": k,
    "d": d,
    "budget": budget,
    "bytes_per_pass_MB": bytes_per_pass / 1e6,
    "backend": jax.default_backend(),
    "accelerator": _common.accelerator(),
  }

  _common.reset_peak_rss()
  rss0, _ = _common.rss_mib()
  first, idx = _common.once(lambda: selection.kmeans_pp(jax.random.key(0), emb, budget))
  out["jaxal_first_call_s"] = first
  out["jaxal_rss_before_MB"] = rss0
  out["jaxal_peak_rss_MB"] = _common.rss_mib()[1]
  times = sorted(
    _common.once(lambda i=i: selection.kmeans_pp(jax.random.key(i), emb, budget))[0]
    for i in range(1, 6)
  )
  out["jaxal_compiled_best_s"] = times[0]
  out["jaxal_compiled_median_s"] = times[len(times) // 2]
  _, passes, proposals = kmeans_pp.kmeans_pp_exact(
    jax.random.key(0), emb, budget, jnp.zeros((n,), bool), "max_norm", 2048
  )
  out["jaxal_passes_over_pool"] = int(passes)
  out["jaxal_proposals"] = int(proposals)
  compiled = kmeans_pp.kmeans_pp_exact.lower(
    jax.random.key(0), emb, budget, jnp.zeros((n,), bool), "max_norm", 2048
  ).compile()
  mem = compiled.memory_analysis()
  out["xla_temp_MB"] = mem.temp_size_in_bytes / 1e6 if mem is not None else float("nan")
  out["plain_read_GBps"] = plain_read_gbps(bytes_per_pass)
  med = out["jaxal_compiled_median_s"]
  out["jaxal_per_centre_equivalent_GBps"] = budget * bytes_per_pass / med / 1e9
  out["jaxal_actual_read_GBps"] = int(passes) * bytes_per_pass / med / 1e9
  idx = np.asarray(idx)
  assert len(set(idx.tolist())) == budget
  out["jaxal_potential"] = potential(emb, idx)

  if run_reference:
    dense = np.asarray(emb.dense())  # [N, K*d] float32
    out["dense_matrix_MB"] = dense.nbytes / 1e6
    out["numpy_reference_s"], ref = _common.once(lambda: numpy_badge_reference(dense, budget))
    out["ratio_numpy_over_jaxal_compiled"] = out["numpy_reference_s"] / med
    out["ratio_numpy_over_jaxal_first_call"] = out["numpy_reference_s"] / out["jaxal_first_call_s"]
    out["reference_first_centre_equal"] = bool(ref[0] == idx[0])
    out["numpy_potential"] = potential(emb, ref)
  return out


# ---------------------------------------------------------------------------
# Driver.


def run_stage(args: list[str]) -> dict:
  proc = subprocess.run(
    [sys.executable, os.path.abspath(__file__), "--stage", *args],
    capture_output=True,
    text=True,
    check=False,
  )
  if proc.returncode != 0:
    raise RuntimeError(f"stage {args} failed:\n{proc.stdout}\n{proc.stderr}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt(v, digits=3):
  return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--stage", nargs=5, metavar=("N", "K", "D", "BUDGET", "REF"))
  args = parser.parse_args()
  if args.stage:
    n, k, d, b, ref = args.stage
    print(json.dumps(stage_select(int(n), int(k), int(d), int(b), ref == "1")))
    return

  info = _common.machine(devices=False)  # the stages hold the devices, each in its own process
  small = ("2000", "10", "64", "50", "1") if args.quick else ("20000", "10", "512", "500", "1")
  big = ("20000", "100", "512", "100", "0") if args.quick else ("200000", "100", "512", "1000", "0")
  huge = ("50000", "10", "32", "50", "0") if args.quick else ("1000000", "10", "128", "100", "0")
  part1 = run_stage(list(small))
  part2 = run_stage(list(big))
  part3 = run_stage(list(huge))
  info["loadavg_at_end"] = _common.load_now()
  info["backend"] = part1["backend"]  # what the stages ran on
  info["machine"] = _common.describe_machine(part1["accelerator"])
  result = {"info": info, "part1": part1, "part2": part2, "part3": part3}

  p1, p2, p3 = part1, part2, part3
  lines = _common.header(f"BADGE selection benchmark{' (quick)' if args.quick else ''}", info) + [
    "Both sides of every ratio ran in the same process, so the ratios depend on the load less "
    "than the timings do.",
    "",
    f"## Part 1: N = {p1['N']:,}, d = {p1['d']}, K = {p1['K']}, budget {p1['budget']}",
    "",
    "| | time (s) |",
    "| --- | ---: |",
    f"| jaxal `kmeans_pp` on `GradEmbedding`, first call (compilation included) | {fmt(p1['jaxal_first_call_s'])} |",
    f"| jaxal, compiled (median of 5 keys; best {fmt(p1['jaxal_compiled_best_s'])}) | {fmt(p1['jaxal_compiled_median_s'])} |",
    f"| NumPy reference, dense {p1.get('dense_matrix_MB', 0):,.0f} MB matrix, one pass per centre (DISTIL's way) | {fmt(p1.get('numpy_reference_s', float('nan')), 1)} |",
    "",
    f"Ratio NumPy / jaxal: **{fmt(p1.get('ratio_numpy_over_jaxal_compiled', float('nan')), 0)}×** compiled, "
    f"{fmt(p1.get('ratio_numpy_over_jaxal_first_call', float('nan')), 0)}× against the first call.",
    "",
    "Bandwidth: one pass over the factorised pool reads "
    f"N·(K+d)·4 = {p1['bytes_per_pass_MB']:.1f} MB.",
    "",
    "| | GB/s |",
    "| --- | ---: |",
    f"| plain jitted `jnp.sum` over the same bytes (the memory-bandwidth floor) | {fmt(p1['plain_read_GBps'], 1)} |",
    f"| jaxal, per-centre equivalent (budget × bytes per pass / time) | {fmt(p1['jaxal_per_centre_equivalent_GBps'], 1)} |",
    f"| jaxal, bytes it actually read ({p1['jaxal_passes_over_pool']} passes) / time | {fmt(p1['jaxal_actual_read_GBps'], 1)} |",
    "",
    f"jaxal read the pool {p1['jaxal_passes_over_pool']} times for {p1['budget']} centres "
    f"({p1['jaxal_proposals']} proposals, the rest rejected by the exact rejection step); "
    "a one-pass-per-centre algorithm reads it once per centre. Peak RSS of the process during "
    f"the first call: {p1['jaxal_peak_rss_MB']:.0f} MB (RSS just before it: "
    f"{p1['jaxal_rss_before_MB']:.0f} MB, which includes the pool and the JAX runtime).",
    "",
    "Sanity (same algorithm): k-means potential Σ min D² of the selection, jaxal "
    f"{p1['jaxal_potential']:.4g} vs NumPy {p1.get('numpy_potential', float('nan')):.4g} (different "
    "random streams, so close but not equal); same max-norm first centre: "
    f"{p1.get('reference_first_centre_equal')}.",
    "",
    f"## Part 2: N = {p2['N']:,}, K = {p2['K']}, d = {p2['d']}, budget {p2['budget']:,}",
    "",
    f"The dense matrix would be {p2['N'] * p2['K'] * p2['d'] * 4 / 1e9:.0f} GB; the factorised pool is "
    f"{p2['bytes_per_pass_MB']:.0f} MB.",
    "",
    "| | |",
    "| --- | ---: |",
    f"| first call, compilation included (s) | {fmt(p2['jaxal_first_call_s'], 2)} |",
    f"| compiled, median of 5 keys (s) | {fmt(p2['jaxal_compiled_median_s'], 2)} |",
    f"| passes over the pool / proposals | {p2['jaxal_passes_over_pool']} / {p2['jaxal_proposals']} |",
    f"| peak RSS of the process during the first call (MB) | {p2['jaxal_peak_rss_MB']:.0f} |",
    f"| RSS just before it: the pool ({p2['bytes_per_pass_MB']:.0f} MB), the JAX runtime, freed buffers (MB) | {p2['jaxal_rss_before_MB']:.0f} |",
    f"| per-centre equivalent GB/s (plain read: {p2['plain_read_GBps']:.1f} GB/s) | {p2['jaxal_per_centre_equivalent_GBps']:.1f} |",
    f"| XLA temporaries of the compiled selection, beyond the pool (MB) | {p2['xla_temp_MB']:.1f} |",
    "",
    f"## Part 3: a pool of N = {p3['N']:,} (K = {p3['K']}, d = {p3['d']}), budget {p3['budget']}",
    "",
    f"Factorised pool {p3['bytes_per_pass_MB']:.0f} MB (dense: {p3['N'] * p3['K'] * p3['d'] * 4 / 1e9:.1f} GB). "
    f"First call {p3['jaxal_first_call_s']:.2f} s, compiled {p3['jaxal_compiled_median_s']:.2f} s "
    f"({p3['jaxal_passes_over_pool']} passes); XLA temporaries beyond the pool "
    f"{p3['xla_temp_MB']:.1f} MB: memory stays O(N) floats plus a chunk.",
    "",
    f"XLA temporaries in part 1: {p1['xla_temp_MB']:.1f} MB.",
    "",
  ]
  _common.write("badge", result, "\n".join(lines), quick=args.quick)


if __name__ == "__main__":
  main()
