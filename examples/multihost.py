"""Multi-host selection: the same jaxal calls, with the pool sharded over every host's devices.

The recipe (README.md, "Pools across devices and hosts"):

1. every host runs this same script with its own ``--process-id``;
2. ``jax.distributed.initialize`` connects them (on TPU pods and SLURM/GKE
   clusters it needs no arguments; here the coordinator is explicit);
3. a 1-D mesh over ``jax.devices()`` (all devices of all hosts) and
   ``jax.make_array_from_callback`` build the pool, each host loading only
   the rows of its own devices;
4. jaxal's functions are called exactly as on one device; every process gets
   the same indices.

Try it on one machine with two processes of 4 simulated CPU devices each:

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python examples/multihost.py \\
        --coordinator 127.0.0.1:12355 --num-processes 2 --process-id 0 &
    XLA_FLAGS=--xla_force_host_platform_device_count=4 python examples/multihost.py \\
        --coordinator 127.0.0.1:12355 --num-processes 2 --process-id 1

Each process prints one JSON line with the selected indices and timings.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def pool_rows(n: int, d: int, rows: slice) -> np.ndarray:
  """The pool's rows ``rows``, as a host would read its own part of a dataset.

  Deterministic per row (seeded by row index), so every host agrees on the
  whole pool without any host holding it.
  """
  start, stop, _ = rows.indices(n)
  out = np.empty((stop - start, d), np.float32)
  for i in range(start, stop):
    out[i - start] = np.random.default_rng(i).normal(size=d)
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--coordinator", default=None, help="HOST:PORT of process 0")
  parser.add_argument("--num-processes", type=int, default=1)
  parser.add_argument("--process-id", type=int, default=0)
  parser.add_argument("--n", type=int, default=4096)
  parser.add_argument("--d", type=int, default=32)
  parser.add_argument("--k", type=int, default=16)
  args = parser.parse_args(argv)

  import jax

  if args.coordinator is not None:
    # CPU devices talk across processes through gloo (GPUs and TPUs use their own).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)

  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P

  from jaxal import scores
  from jaxal import selection

  mesh = jax.make_mesh((jax.device_count(),), ("pool",))
  n, d, k = args.n, args.d, args.k
  x = jax.make_array_from_callback(
    (n, d), NamedSharding(mesh, P("pool", None)), lambda idx: pool_rows(n, d, idx[0])
  )
  labeled = jax.make_array_from_callback(
    (n,), NamedSharding(mesh, P("pool")), lambda idx: np.arange(n)[idx[0]] < 8
  )
  logits = x[:, :10]  # stand-in logits, sharded like the pool

  t = time.perf_counter()
  top = selection.top_k(scores.entropy(logits), k, labeled_mask=labeled)
  kcenter = selection.k_center_greedy(None, x, k, labeled_mask=labeled)
  rand = selection.random(jax.random.key(0), n, k, labeled_mask=labeled)
  out = jax.block_until_ready((top, kcenter, rand))
  seconds = time.perf_counter() - t
  print(
    json.dumps(
      {
        "process": jax.process_index(),
        "processes": jax.process_count(),
        "devices": jax.device_count(),
        "entropy_top_k": np.asarray(out[0]).tolist(),
        "k_center_greedy": np.asarray(out[1]).tolist(),
        "random": np.asarray(out[2]).tolist(),
        "seconds": round(seconds, 3),
      }
    ),
    flush=True,
  )


if __name__ == "__main__":
  main()
