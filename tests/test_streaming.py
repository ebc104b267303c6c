"""Pools on disk, streamed in chunks: equal to the in-memory functions, bounded memory."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import count_traces

from jaxal import scores
from jaxal import selection
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
    want = selection.top_k(fn(data), 25, labeled_mask=mask)
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
streaming.k_center_greedy(jax.random.key(0), mm[:50_000], 2, chunk_size=chunk)
jax.block_until_ready(streaming.kmeans_pp(jax.random.key(0), mm[:50_000], 3, chunk_size=chunk))
base = anon_kb()
t = threading.Thread(target=sample); t.start()
idx = streaming.top_k(neg_norm, mm, 10, chunk_size=chunk)
kc = streaming.k_center_greedy(jax.random.key(0), mm, 3, chunk_size=chunk)
pp = streaming.kmeans_pp(jax.random.key(0), mm, 3, chunk_size=chunk)
jax.block_until_ready((kc, pp))
stop = True; t.join()
want = np.argsort(-(-(np.asarray(mm) ** 2).sum(-1)), kind="stable")[:10]
assert np.array_equal(np.asarray(idx), want), (idx, want)
print("GROWTH_MB", (peak[0] - base) / 1024, "FILE_MB", n * d * 4 / 2**20)
"""


def test_streaming_memory_is_bounded(tmp_path):
  """A 122 MB pool on disk streamed in 2 MB chunks (top-k, k-center, k-means++): the process's
  own (anonymous) memory grows < 60 MB (measured: about 30 MB)."""
  import subprocess
  import sys

  proc = subprocess.run(
    [sys.executable, "-c", MEMORY_SCRIPT, str(tmp_path / "pool.f32"), "1000000"],
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("GROWTH_MB")][0]
  growth, file_mb = float(line.split()[1]), float(line.split()[3])
  assert file_mb == pytest.approx(122.07, rel=1e-3)
  assert growth < 60.0, line  # the pool itself is 122 MB


def test_streaming_k_center_equals_in_memory(pool):
  mm, data = pool
  mask = np.zeros(len(data), bool)
  mask[[3, 500, 999]] = True
  for labeled in (mask, None):
    want = selection.k_center_greedy(jax.random.key(3), data, 12, labeled_mask=labeled)
    for chunk_size in (128, 1000):
      got = streaming.k_center_greedy(
        jax.random.key(3), mm, 12, labeled_mask=labeled, chunk_size=chunk_size
      )
      np.testing.assert_array_equal(got, want)


def test_streaming_kmeans_pp_chunk_invariant_and_valid(pool):
  mm, data = pool
  mask = np.zeros(len(data), bool)
  mask[::9] = True
  for first in ("max_norm", "random"):
    a = streaming.kmeans_pp(
      jax.random.key(1), mm, 15, labeled_mask=mask, first=first, chunk_size=100
    )
    b = streaming.kmeans_pp(
      jax.random.key(1), mm, 15, labeled_mask=mask, first=first, chunk_size=1000
    )
    np.testing.assert_array_equal(a, b)
    a = np.asarray(a)
    assert len(set(a.tolist())) == 15 and not mask[a].any()
  norms = np.where(mask, -np.inf, (data.astype(np.float64) ** 2).sum(1))
  first = streaming.kmeans_pp(jax.random.key(1), mm, 1, labeled_mask=mask)
  assert int(first[0]) == int(np.argmax(norms))


def test_streaming_kmeans_pp_second_centre_follows_d2_law(tmp_path):
  """Second centre over many keys vs D²(x) / sum D² (chi-square, p = 0.001)."""
  pts = np.array(
    [[0, 0], [1, 0], [0, 2], [3, 0], [0, 0], [2, 2]], np.float32
  )  # point 4 duplicates 0
  path = tmp_path / "tiny.f32"
  pts.tofile(path)
  mm = np.memmap(path, dtype=np.float32, mode="r", shape=pts.shape)
  trials = 1500
  seconds = [
    int(streaming.kmeans_pp(jax.random.key(s), mm, 2, chunk_size=4)[1]) for s in range(trials)
  ]
  first = int(np.argmax((pts**2).sum(1)))  # max norm: point 3 (norm² 9) vs point 5 (8)
  d2 = ((pts - pts[first]) ** 2).sum(1)
  d2[first] = 0
  p = d2 / d2.sum()
  counts = np.bincount(seconds, minlength=len(pts))
  assert counts[first] == 0
  support = p > 0
  expected = trials * p[support]
  chi2 = float(np.sum((counts[support] - expected) ** 2 / expected))
  assert chi2 < 18.47, (counts, expected)  # 4 degrees of freedom, p = 0.001


def test_streaming_selectors_bad_input(pool):
  mm, data = pool
  with pytest.raises(ValueError, match="key is required"):
    streaming.k_center_greedy(None, mm, 3)
  with pytest.raises(TypeError, match="typed key"):
    streaming.kmeans_pp(jax.random.PRNGKey(0), mm, 3)
  with pytest.raises(ValueError, match=r"shape \[num_points, dim\]"):
    streaming.k_center_greedy(jax.random.key(0), data[:, 0].copy(), 3)


def test_streaming_k_center_old_spelling_names_the_new_one(pool):
  mm, _ = pool
  with pytest.raises(TypeError, match=r"k_center_greedy\(key, x, k, \*, labeled_mask=None"):
    streaming.k_center_greedy(mm, 3, key=jax.random.key(0))
  with pytest.raises(TypeError, match=r"k_center_greedy\(key, x, k, \*, labeled_mask=None"):
    streaming.k_center_greedy(mm, 3, labeled_mask=np.arange(1000) < 5)


def test_streaming_selectors_accept_numpy_integers(pool):
  mm, data = pool
  mask = np.arange(len(data)) < 5
  np.testing.assert_array_equal(
    streaming.top_k(_neg_norm, mm, np.int64(4), chunk_size=np.int32(256)),
    streaming.top_k(_neg_norm, mm, 4, chunk_size=256),
  )
  np.testing.assert_array_equal(
    streaming.k_center_greedy(None, mm, np.int64(3), labeled_mask=mask, chunk_size=np.int32(256)),
    streaming.k_center_greedy(None, mm, 3, labeled_mask=mask, chunk_size=256),
  )
  np.testing.assert_array_equal(
    streaming.kmeans_pp(jax.random.key(0), mm, np.int64(3), chunk_size=np.int32(256)),
    streaming.kmeans_pp(jax.random.key(0), mm, 3, chunk_size=256),
  )
