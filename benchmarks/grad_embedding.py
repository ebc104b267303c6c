"""Exact ``vmap(grad)`` gradient embeddings vs the factorised closed form: time and peak memory.

    python benchmarks/grad_embedding.py           # the full grid, writes results/grad_embedding.md
    python benchmarks/grad_embedding.py --quick   # a small grid, a smoke test of the script

Grid: N in {10^3, 10^4, 10^5}, d in {128, 512}, K in {10, 100}. The model is a
Dense(32 → d) + ReLU body and a Dense(d → K) head on ``[N, 32]`` inputs; both
methods include the forward pass over the pool in batches of 256.

* closed form: ``models.predict`` (logits and features) then
  ``embeddings.closed_form_gradient_embedding``, a factorised ``GradEmbedding``
  of ``N * (K + d + 1)`` floats.
* exact: ``embeddings.gradient_embedding``, the ``[N, K * (d + 1)]`` matrix of
  per-example gradients. Where that matrix would exceed ``--max-dense-gb``
  (default 2.5 GB; the machine has 23 GB shared with other jobs) it is not
  materialised: the same jitted per-batch ``vmap(grad)`` step runs over the
  pool and each batch is discarded ("exact, streamed"), which times the
  computation in bounded memory.

Each (config, method) runs in its own process; time is the second call (the
first compiles; reported too, and its output is kept alive so the timed call
cannot reuse its buffers), peak memory is the process's peak RSS (``VmHWM``,
reset before the call) above its RSS just before the call.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import _common

IN_DIM = 32


def stage(n: int, d: int, k: int, method: str) -> dict:
  import flax.linen as nn
  import jax
  import jax.numpy as jnp

  from jaxal import embeddings
  from jaxal import models
  from jaxal._src.embeddings import gradients as emb_lib

  class Net(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
      f = nn.relu(nn.Dense(d, name="body")(x))
      return nn.Dense(k, name="head")(f), f

  x = jax.random.normal(jax.random.key(0), (n, IN_DIM))
  module = Net()
  params = models.init_params(jax.random.key(1), module, x)
  model = models.from_linen(module)

  if method == "alloc":  # first touch of a fresh buffer the size of the dense matrix

    def run():
      return jnp.zeros((n, k * (d + 1)), jnp.float32)
  elif method == "closed":

    def run():
      logits, features = models.predict(model, params, x)
      return embeddings.closed_form_gradient_embedding(logits, features)
  elif method == "exact":

    def run():
      return embeddings.gradient_embedding(model, params, x)
  else:  # exact, streamed: the same per-batch vmap(grad) step, each batch discarded
    head = embeddings.resolve_head(model, params, x)

    def run():
      last = None
      for _, b, xb in _batches(x, 256):
        last = emb_lib._grad_embedding_batch(model, params, xb, head, True)[:b]
        last.block_until_ready()
      return last

  first, keep = _common.once(run)  # kept alive, so the timed call cannot reuse its buffers
  _common.reset_peak_rss()
  rss0, _ = _common.rss_mib()
  second, out = _common.once(run)
  peak = _common.rss_mib()[1] - rss0
  nbytes = sum(v.nbytes for v in jax.tree.leaves(out))
  del keep
  return {
    "N": n,
    "d": d,
    "K": k,
    "method": method,
    "backend": jax.default_backend(),
    "accelerator": _common.accelerator(),
    "first_s": first,
    "time_s": second,
    "peak_rss_over_start_MB": peak,
    "rss_before_MB": rss0,
    "output_MB": nbytes / 1e6,
  }


def _batches(x, batch_size):
  from jaxal._src import models as models_lib

  return models_lib.batches(x, batch_size)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--max-dense-gb", type=float, default=2.5)
  parser.add_argument("--stage", nargs=4, metavar=("N", "D", "K", "METHOD"))
  args = parser.parse_args()
  if args.stage:
    n, d, k, method = args.stage
    print(json.dumps(stage(int(n), int(d), int(k), method)))
    return

  info = _common.machine(devices=False)  # the stages hold the devices, each in its own process
  ns = (1000, 10000) if args.quick else (1000, 10000, 100000)
  ds = (128,) if args.quick else (128, 512)
  ks = (10,) if args.quick else (10, 100)
  rows = []
  for n in ns:
    for d in ds:
      for k in ks:
        dense_gb = n * k * (d + 1) * 4 / 1e9
        exact = "exact" if dense_gb <= args.max_dense_gb else "exact_streamed"
        for method in ("closed", exact):
          proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--stage", str(n), str(d), str(k), method],
            capture_output=True,
            text=True,
            check=False,
          )
          if proc.returncode != 0:
            row = {"N": n, "d": d, "K": k, "method": method, "error": proc.stderr.strip()[-300:]}
          else:
            row = json.loads(proc.stdout.strip().splitlines()[-1])
          row["dense_GB"] = dense_gb
          rows.append(row)
          print(row, flush=True)
  # What materialising alone costs here: allocating (first touch of) the largest dense
  # matrix that was materialised, in a fresh process.
  biggest = max(
    (r for r in rows if r.get("method") == "exact" and "error" not in r),
    key=lambda r: r["dense_GB"],
    default=None,
  )
  alloc = None
  if biggest is not None:
    proc = subprocess.run(
      [
        sys.executable,
        os.path.abspath(__file__),
        "--stage",
        str(biggest["N"]),
        str(biggest["d"]),
        str(biggest["K"]),
        "alloc",
      ],
      capture_output=True,
      text=True,
      check=False,
    )
    if proc.returncode == 0:
      alloc = json.loads(proc.stdout.strip().splitlines()[-1])
      alloc["dense_GB"] = biggest["dense_GB"]
      rows.append(alloc)
  info["loadavg_at_end"] = _common.load_now()
  measured = next((r for r in rows if "backend" in r), None)
  if measured is not None:  # what the stages ran on
    info["backend"] = measured["backend"]
    info["machine"] = _common.describe_machine(measured["accelerator"])

  by = {(r["N"], r["d"], r["K"], r["method"].split("_")[0]): r for r in rows}
  lines = _common.header(
    f"Gradient embeddings: exact vmap(grad) vs closed form{' (quick)' if args.quick else ''}", info
  ) + [
    "Both include the forward pass over the pool (batches of 256). Time: a compiled call "
    "(the first call, with compilation, in parentheses). Memory: peak RSS during the call above "
    'the RSS before it. "streamed": the exact matrix would exceed '
    f"{args.max_dense_gb:g} GB, so each batch's gradients were computed and discarded.",
    "",
    "| N | d | K | dense K·(d+1) matrix | closed form: time (s) | peak MB | exact: time (s) | peak MB | exact / closed time |",
    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ]
  for n in ns:
    for d in ds:
      for k in ks:
        c, e = by.get((n, d, k, "closed")), by.get((n, d, k, "exact"))
        if c is None or e is None or "error" in c or "error" in e:
          lines.append(
            f"| {n:,} | {d} | {k} | | error: {(c or {}).get('error', '')} {(e or {}).get('error', '')} |"
          )
          continue
        tag = " (streamed)" if e["method"] == "exact_streamed" else ""
        lines.append(
          f"| {n:,} | {d} | {k} | {c['dense_GB']:.2f} GB | {c['time_s']:.3f} ({c['first_s']:.2f}) | "
          f"{c['peak_rss_over_start_MB']:.0f} | {e['time_s']:.3f} ({e['first_s']:.2f}){tag} | "
          f"{e['peak_rss_over_start_MB']:.0f} | {e['time_s'] / c['time_s']:.1f}× |"
        )
  lines.append("")
  if alloc is not None:
    lines += [
      f"For scale: in this VM, allocating and first touching a fresh {alloc['dense_GB']:.2f} GB "
      f"buffer (`jnp.zeros` of the dense shape for N = {alloc['N']:,}, d = {alloc['d']}, "
      f"K = {alloc['K']}) took {alloc['time_s']:.2f} s by itself (page faults): compare with the "
      "exact time of that row. The streamed rows reuse one batch buffer and avoid it.",
      "",
    ]
  _common.write("grad_embedding", {"info": info, "rows": rows}, "\n".join(lines), quick=args.quick)


if __name__ == "__main__":
  main()
