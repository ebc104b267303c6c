"""batchbald_redux's own ``get_batchbald_batch`` (PyTorch) on log-probabilities from a file.

Run by ``benchmarks/batchbald.py --redux-python PYTHON`` under an interpreter that has PyTorch
and batchbald_redux (they are not jaxal's dependencies)::

    python -m venv .venv-redux
    .venv-redux/bin/pip install torch numpy toma tqdm
    .venv-redux/bin/pip install --no-deps batchbald-redux

    PYTHON _batchbald_redux_worker.py IN.npz OUT.json

``IN.npz`` holds ``log_probs`` ``[S, N, K]`` (jaxal's layout), ``k`` and ``num_samples``;
``OUT.json`` gets the indices picked, the seconds the call took and the versions.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main(inp: str, out: str) -> None:
  import numpy as np
  import torch
  from batchbald_redux import batchbald

  data = np.load(inp)
  lp = torch.from_numpy(np.ascontiguousarray(data["log_probs"].transpose(1, 0, 2)))  # [N, S, K]
  k, m = int(data["k"]), int(data["num_samples"])
  torch.manual_seed(0)
  start = time.perf_counter()
  # The library's defaults: float32 log-probabilities (as jaxal's), its default dtype.
  batch = batchbald.get_batchbald_batch(lp, k, m, device="cpu")
  seconds = time.perf_counter() - start
  with open(out, "w") as f:
    json.dump(
      {
        "indices": [int(i) for i in batch.indices],
        "seconds": seconds,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batchbald_redux": _version("batchbald_redux"),
      },
      f,
    )


def _version(name: str) -> str | None:
  import importlib.metadata

  try:
    return importlib.metadata.version(name.replace("_", "-"))
  except importlib.metadata.PackageNotFoundError:
    return None


if __name__ == "__main__":
  if len(sys.argv) != 3:
    sys.exit(f"usage: {os.path.basename(sys.argv[0])} IN.npz OUT.json")
  main(sys.argv[1], sys.argv[2])
