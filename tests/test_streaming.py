"""Pools on disk, streamed in chunks: equal to the in-memory functions, bounded memory."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import count_traces

from jaxal import scores, selection
from jaxal._src import streaming


def _neg_norm(chunk):
  return -(chunk * chunk).sum(-1)


def _entropy_of_logits(chunk):
  return scores.entropy(chunk)


@pytest.fixture
def pool(tmp_path):
  rng = np.random.default_rng(0)
  data = rng.normal(size=(1000, 6)).astype(np.float32)
  data[100:110] = data[5]  # ties
  path = tmp_path / "pool.f32"
  data.tofile(path)
  return np.memmap(path, dtype=np.float32, mode="r", shape=data.shape), data


@pytest.mark.parametrize("chunk_size", [64, 1000, 4096])
def test_streaming_top_k_equals_in_memory(pool, chunk_size):
  mm, data = pool
  mask = np.zeros(len(data), bool)
  mask[::7] = True
  for fn in (_neg_norm, _entropy_of_logits):
    want = selection.top_k(fn(data), 25, mask)
    got = streaming.top_k(fn, mm, 25, labeled_mask=mask, chunk_size=chunk_size)
    np.testing.assert_array_equal(got, want)


def test_streaming_top_k_one_compile(pool):
  mm, _ = pool
  with count_traces() as c:
    streaming.top_k(_neg_norm, mm, 5, chunk_size=128)
    streaming.top_k(_neg_norm, mm[:900], 5, chunk_size=128)
  assert c["_merge_step"] == 1


def test_streaming_bad_input(pool, tmp_path):
  mm, data = pool
  path = tmp_path / "f64"
  data.astype(np.float64).tofile(path)
  wrong = np.memmap(path, dtype=np.float64, mode="r", shape=data.shape)
  with pytest.raises(TypeError, match="must have dtype float32, got float64"):
    streaming.top_k(_neg_norm, wrong, 3)
  with pytest.raises(ValueError, match="chunk_size"):
    streaming.top_k(_neg_norm, mm, 3, chunk_size=0)
  with pytest.raises(ValueError, match="k=1001 is larger than the pool"):
    streaming.top_k(_neg_norm, mm, 1001)


MEMORY_SCRIPT = r"""
import sys, threading, time, numpy as np
import jax
from jaxal._src import streaming

def anon_kb():
  for line in open("/proc/self/status"):
    if line.startswith("RssAnon:"):
      return int(line.split()[1])

peak = [0]
stop = False
def sample():
  while not stop:
    peak[0] = max(peak[0], anon_kb())
    time.sleep(0.002)

def neg_norm(c):
  return -(c * c).sum(-1)

n, d, chunk = int(sys.argv[2]), 32, 16384
mm = np.memmap(sys.argv[1], dtype=np.float32, mode="w+", shape=(n, d))
for s in range(0, n, 100_000):
  mm[s:s + 100_000] = np.random.default_rng(s).normal(size=(min(100_000, n - s), d))
mm.flush(); del mm
mm = np.memmap(sys.argv[1], dtype=np.float32, mode="r", shape=(n, d))
streaming.top_k(neg_norm, mm[:50_000], 10, chunk_size=chunk)  # compile first
base = anon_kb()
t = threading.Thread(target=sample); t.start()
idx = streaming.top_k(neg_norm, mm, 10, chunk_size=chunk)
stop = True; t.join()
want = np.argsort(-(-(np.asarray(mm) ** 2).sum(-1)), kind="stable")[:10]
assert np.array_equal(np.asarray(idx), want), (idx, want)
print("GROWTH_MB", (peak[0] - base) / 1024, "FILE_MB", n * d * 4 / 2**20)
"""


def test_streaming_memory_is_bounded(tmp_path):
  """A 128 MB pool on disk streamed in 2 MB chunks: the process's own memory grows < 40 MB."""
  import subprocess
  import sys

  proc = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(tmp_path / "pool.f32"), "1000000"],
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("GROWTH_MB")][0]
  growth, file_mb = float(line.split()[1]), float(line.split()[3])
  assert file_mb == pytest.approx(122.07, rel=1e-3)
  assert growth < 40.0, line
