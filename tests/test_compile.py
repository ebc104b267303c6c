"""One compile per strategy core over a whole experiment, and the persistent compilation cache."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import count_traces

import jaxal
from jaxal import selection
from jaxal._src import compile_cache
from jaxal._src.experiment import config
from jaxal._src.experiment import runner
from jaxal._src.strategies import registry

# The jitted cores each strategy's acquisition runs (names as JAX logs their compiles).
CORES = {
  "entropy": ("_entropy_checked", "top_k_core"),
  "badge": ("_badge_core",),
  "coreset": ("k_center_greedy_core",),
  "batchbald": ("_batchbald",),
}


def test_a_small_run_compiles_each_strategy_core_once(tmp_path):
  """Rounds change the labeled set, never a shape: round 2 and 3 reuse round 1's executables."""
  cfg = config.Config(
    dataset="digits",
    strategies=tuple(CORES),
    rounds=3,
    budget=4,
    initial=10,
    seeds=1,
    num_steps=2,
    hidden=8,
    pool_subsample=120,
  ).validate()
  jax.clear_caches()  # an earlier test in this process may have compiled the same shapes
  with count_traces() as c:
    runner.run(cfg, str(tmp_path), progress=False)
  for strategy, cores in CORES.items():
    for core in cores:
      assert c[core] == 1, (strategy, core, dict(c.counts))
  # The training loop is shared: every strategy's train state has the same module and
  # optimiser objects, so one compiled fit serves all strategies and rounds.
  assert c["_fit"] == 1, dict(c.counts)


def test_enable_compilation_cache_folder_precedence(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXAL_COMPILATION_CACHE", str(tmp_path / "env"))
  assert compile_cache.resolve_cache_dir() == str(tmp_path / "env")
  assert compile_cache.resolve_cache_dir(tmp_path / "arg") == str(tmp_path / "arg")
  for off in ("0", "off", "False"):
    monkeypatch.setenv("JAXAL_COMPILATION_CACHE", off)
    assert compile_cache.resolve_cache_dir() is None
    assert jaxal.enable_compilation_cache() is None
  monkeypatch.delenv("JAXAL_COMPILATION_CACHE")
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert compile_cache.resolve_cache_dir() == os.path.join(str(tmp_path), "xdg", "jaxal", "jax")
  with pytest.raises(TypeError, match="path"):
    jaxal.enable_compilation_cache(3)


def test_enable_compilation_cache_writes_executables(tmp_path):
  before = jax.config.jax_compilation_cache_dir
  try:
    folder = jaxal.enable_compilation_cache(tmp_path / "cache")
    assert folder == jax.config.jax_compilation_cache_dir == str(tmp_path / "cache")
    jax.jit(lambda v: jnp.sin(v) * 3.25 + 0.125)(jnp.arange(7.0)).block_until_ready()
    assert os.listdir(folder)  # every compile is written, however short
  finally:
    if before:
      jaxal.enable_compilation_cache(before)
    else:  # the suite runs without a cache: leave none behind (tmp_path goes away)
      jax.config.update("jax_compilation_cache_dir", None)
      compile_cache._reset()


def test_cache_entries_are_published_whole(tmp_path, monkeypatch):
  """A write cut short (a process killed mid-write) never leaves a partial entry to read."""
  from jax._src import lru_cache

  before = jax.config.jax_compilation_cache_dir
  try:
    folder = jaxal.enable_compilation_cache(tmp_path / "cache")
    assert compile_cache._atomic_writes() and lru_cache.LRUCache.put.jaxal_atomic
    cache = lru_cache.LRUCache(folder, max_size=-1)
    cache.put("whole", b"x" * 1000)
    assert cache.get("whole") == b"x" * 1000

    def killed(src, dst):  # the process dies after writing, before publishing
      raise KeyboardInterrupt

    monkeypatch.setattr(compile_cache.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
      cache.put("cut", b"y" * 1000)
    monkeypatch.undo()
    assert cache.get("cut") is None  # a miss (recompiled), not a partial executable
    assert not [f for f in os.listdir(folder) if f.startswith("cut")]
    jax.jit(lambda v: jnp.cos(v) * 1.75 - 0.5)(jnp.arange(5.0)).block_until_ready()
    entries = os.listdir(folder)
    assert any(f.endswith("-cache") and f != "whole-cache" for f in entries), entries
  finally:
    if before:
      jaxal.enable_compilation_cache(before)
    else:
      jax.config.update("jax_compilation_cache_dir", None)
      compile_cache._reset()


def test_jaxal_run_cache_options():
  from jaxal._src import cli

  parser = cli.build_parser()
  args = parser.parse_args(["run", "--compile-cache", "/tmp/jaxal-cache"])
  assert args.compile_cache == "/tmp/jaxal-cache" and not args.no_compile_cache
  args = parser.parse_args(["run", "--no-compile-cache"])
  assert args.no_compile_cache and args.compile_cache is None


# FASS is left out of the count: its kernel's check reads only the filtered top_n * budget rows.
FUSED_CHECKS = ("coreset", "kmeans_sampling", "typiclust", "badge", "entropy")


def test_strategies_check_model_outputs_in_the_forward_compile():
  """The model's logits and features are checked finite with flags the compiled forward returns:
  no separate finiteness reduction (an extra pass over the pool and an extra compile)."""
  key = jax.random.key(0)
  x = jax.random.normal(key, (96, 6))
  module = jaxal.networks.MLP(num_classes=3, hidden=(8,))
  model, params = jaxal.models.from_linen(module), jaxal.models.init_params(key, module, x)
  mask = jnp.zeros((96,), bool).at[:10].set(True)
  jax.clear_caches()
  with count_traces() as c:
    for name in FUSED_CHECKS:
      idx = registry.REGISTRY[name]().acquire(key, model, params, x, mask, 4)
      assert idx.shape == (4,) and not bool(jnp.any(mask[idx])), name
  assert c["all_finite"] == 0, dict(c.counts)
  assert c["_predict_pool"] >= 1, dict(c.counts)


@pytest.mark.parametrize("name", (*FUSED_CHECKS, "fass"))
def test_strategies_name_non_finite_model_outputs(name):
  key = jax.random.key(0)
  x = jax.random.normal(key, (40, 6))
  module = jaxal.networks.MLP(num_classes=3, hidden=(8,))
  model, params = jaxal.models.from_linen(module), jaxal.models.init_params(key, module, x)
  bad = x.at[7, 2].set(jnp.nan)  # one NaN input row: NaN logits and features in row 7
  with pytest.raises(ValueError, match=r"(logits|features) of the model on the pool .*row 7"):
    registry.REGISTRY[name]().acquire(key, model, params, bad, None, 4)


# --- Public functions check their inputs' finiteness with flags from their own compiled call. ---

# The standalone value checks of jaxal._src.checks (a separate pass over the input each).
SEPARATE_CHECKS = ("all_finite", "logits_ok", "scores_ok", "_all_nonneg")
ROW = 7  # the row every case below poisons


def _arrays():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(30, 4)).astype(np.float32)
  y = rng.normal(size=(12, 4)).astype(np.float32)
  q, p = x[:3] + 0.1, x[-4:] - 0.1
  cos = lambda a, b: (
    (
      1.0
      + (a / np.linalg.norm(a, axis=1, keepdims=True))
      @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T
    )
    / 2.0
  )
  return {
    "x": x,
    "y": y,
    "feats": np.abs(x),
    "kernel": cos(x, x),
    "query": cos(x, q),
    "query_query": cos(q, q),
    "private": cos(x, p),
    "private_private": cos(p, p),
    "query_private": cos(q, p),
    "logits": rng.normal(size=(30, 3)).astype(np.float32),
    "log_probs": rng.normal(size=(4, 30, 3)).astype(np.float32),
    "scores": rng.uniform(0.1, 1.0, size=(30,)).astype(np.float32),
  }


def _poisoned(a, name):
  """``a`` with one NaN in row ``ROW`` (axis 1 of MC log-probs)."""
  a = np.array(a)
  if name == "log_probs":
    a[1, ROW, 2] = np.nan
  elif a.ndim == 1:
    a[ROW] = np.nan
  else:
    a[ROW, min(2, a.shape[1] - 1)] = np.nan
  return jnp.asarray(a)


def _info(fn, *blocks):
  def call(a, **kw):
    return fn(*(jnp.asarray(a[b]) for b in blocks), **kw)

  return call


KEY = jax.random.key(3)
# name -> (call(arrays, **kw), the argument poisoned, how the message names it)
FINITE_CASES = {
  "omp": (lambda a, **kw: selection.omp(jnp.asarray(a["x"]), 3, **kw), "x", "x"),
  "omp_target": (
    lambda a, **kw: selection.omp(a["x"].T[1:], 2, target=a["x"][:, 0], **kw),
    None,
    "target",
  ),
  "fixed_weight_matching": (
    lambda a, **kw: selection.fixed_weight_matching(jnp.asarray(a["x"]), 3, **kw),
    "x",
    "x",
  ),
  "agglomerative": (
    lambda a, **kw: jaxal.strategies.cluster_margin_clusters(a["x"], num_neighbors=4, **kw),
    "x",
    "x",
  ),
  "knn": (lambda a, **kw: jaxal.neighbors.knn(jnp.asarray(a["x"]), 3, **kw), "x", "x"),
  "knn_y": (
    lambda a, **kw: jaxal.neighbors.knn(jnp.asarray(a["y"]), 3, y=jnp.asarray(a["x"]), **kw),
    "x",
    "y",
  ),
  "similarity_kernel": (
    lambda a, **kw: jaxal.submodular.similarity_kernel(jnp.asarray(a["x"]), **kw),
    "x",
    "x",
  ),
  "knn_kernel": (
    lambda a, **kw: jaxal.submodular.knn_kernel(jnp.asarray(a["x"]), 4, **kw),
    "x",
    "x",
  ),
  **{
    name: (_info(getattr(jaxal.submodular, name), "kernel"), "kernel", "kernel")
    for name in ("facility_location", "graph_cut", "saturated_coverage", "sum_redundancy")
  },
  "facility_location_sparse": (
    lambda a, **kw: jaxal.submodular.facility_location(
      jaxal.submodular.SparseKernel(
        jnp.asarray(a["kernel"][:, :5]), jnp.tile(jnp.arange(5, dtype=jnp.int32), (30, 1))
      ),
      **kw,
    ),
    None,
    r"kernel\.values",
  ),
  "feature_based": (_info(jaxal.submodular.feature_based, "feats"), "feats", "features"),
  "flvmi": (_info(jaxal.submodular.flvmi, "kernel", "query"), "query", "query"),
  "flqmi": (_info(jaxal.submodular.flqmi, "query"), "query", "query"),
  "gcmi": (_info(jaxal.submodular.gcmi, "query"), "query", "query"),
  "logdetmi": (
    _info(jaxal.submodular.logdetmi, "kernel", "query", "query_query"),
    "kernel",
    "kernel",
  ),
  "flcg": (_info(jaxal.submodular.flcg, "kernel", "private"), "private", "private"),
  "gccg": (_info(jaxal.submodular.gccg, "kernel", "private"), "kernel", "kernel"),
  "logdetcg": (
    _info(jaxal.submodular.logdetcg, "kernel", "private", "private_private"),
    "private",
    "private",
  ),
  "flcmi": (_info(jaxal.submodular.flcmi, "kernel", "query", "private"), "kernel", "kernel"),
  "logdetcmi": (
    _info(
      jaxal.submodular.logdetcmi,
      "kernel",
      "query",
      "query_query",
      "private",
      "private_private",
      "query_private",
    ),
    "private",
    "private",
  ),
  "glister": (
    lambda a, **kw: jaxal.glister.glister(KEY, a["logits"], a["x"], 3, **kw),
    "x",
    "features",
  ),
  "glister_logits": (
    lambda a, **kw: jaxal.glister.glister(KEY, a["logits"], a["x"], 3, **kw),
    "logits",
    "logits",
  ),
  "batchbald": (
    lambda a, **kw: jaxal.bayes.batchbald(KEY, a["log_probs"], 3, num_joint_samples=8, **kw),
    "log_probs",
    "log_probs",
  ),
  "stochastic_batch": (
    lambda a, **kw: jaxal.bayes.stochastic_batch(KEY, a["scores"], 3, **kw),
    "scores",
    "scores",
  ),
}


def _finite_call(name, poison=False, **kw):
  call, arg, _ = FINITE_CASES[name]
  # Placed, not converted: jnp.asarray of a NumPy array compiles a program per shape, which
  # every test here would compile again after its jax.clear_caches().
  a = {k: jax.device_put(v) for k, v in _arrays().items()}
  if poison:
    if name == "omp_target":
      a["x"] = a["x"].at[ROW, 0].set(jnp.nan)  # the target is column 0 of x
    elif name == "facility_location_sparse":
      a["kernel"] = _poisoned(a["kernel"], "kernel")
    else:
      a[arg] = _poisoned(a[arg], arg)
  return call(a, **kw)


@pytest.mark.parametrize("name", FINITE_CASES)
def test_public_functions_check_finiteness_in_their_own_compile(name):
  """A finite call compiles no standalone finiteness check: the flags come out of the
  compiled call that does the work (no separate pass over a large input)."""
  jax.clear_caches()
  with count_traces() as c:
    jax.block_until_ready(jax.tree.leaves(_finite_call(name)))
  assert not [n for n in SEPARATE_CHECKS if c[n]], dict(c.counts)


@pytest.mark.parametrize("name", FINITE_CASES)
def test_public_functions_name_the_non_finite_argument_and_row(name):
  what = FINITE_CASES[name][2]
  # 1-D inputs: checks.check_finite writes "index (7,)", checks.check_finite_scores "index 7:".
  where = {"omp_target": rf"index \({ROW},\)", "stochastic_batch": rf"index {ROW}:"}.get(
    name, f"row {ROW}"
  )
  with pytest.raises(ValueError, match=rf"^{what} of shape .*{where}"):
    _finite_call(name, poison=True)


# A NaN private block cannot be positive definite: the LogDet measures still say so.
NOT_POSITIVE_DEFINITE = ("logdetcg", "logdetcmi")


@pytest.mark.parametrize("name", FINITE_CASES)
def test_public_functions_skip_the_check_on_request(name):
  jax.clear_caches()
  with count_traces() as c:
    if name in NOT_POSITIVE_DEFINITE:
      with pytest.raises(ValueError, match="not positive definite"):
        _finite_call(name, poison=True, check_finite=False)
    else:
      out = _finite_call(name, poison=True, check_finite=False)
      jax.block_until_ready(jax.tree.leaves(out))
      assert jax.tree.leaves(out)
  assert not [n for n in SEPARATE_CHECKS if c[n]], dict(c.counts)
