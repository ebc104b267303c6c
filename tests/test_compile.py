"""One compile per strategy core over a whole experiment, and the persistent compilation cache."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import pytest
from conftest import count_traces

import jaxal
from jaxal._src import compile_cache
from jaxal._src.experiment import config
from jaxal._src.experiment import runner

# The jitted cores each strategy's acquisition runs (names as JAX logs their compiles).
CORES = {
  "entropy": ("_entropy_checked", "top_k_core"),
  "badge": ("_closed_form", "kmeans_pp_core"),
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


def test_jaxal_run_cache_options():
  from jaxal._src import cli

  parser = cli.build_parser()
  args = parser.parse_args(["run", "--compile-cache", "/tmp/jaxal-cache"])
  assert args.compile_cache == "/tmp/jaxal-cache" and not args.no_compile_cache
  args = parser.parse_args(["run", "--no-compile-cache"])
  assert args.no_compile_cache and args.compile_cache is None
