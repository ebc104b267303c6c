"""jaxal's whole-executable cache (jaxal._src.executables): a later process runs a loaded
executable with no trace, every input its trace depends on is in the key, and whatever cannot be
keyed (user code, tracers, several devices, debug modes) is an ordinary jax.jit call."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import count_traces

import jaxal
from jaxal import models
from jaxal import selection
from jaxal import strategies
from jaxal._src import compile_cache
from jaxal._src import executables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _restore_jax_cache(before: str | None) -> None:
  executables.disable()
  executables.clear_memory()
  if before:
    jaxal.enable_compilation_cache(before, executables=False)
  else:  # the suite runs without a cache: leave none behind (tmp_path goes away)
    jax.config.update("jax_compilation_cache_dir", None)
    compile_cache._reset()


@pytest.fixture
def folder(tmp_path):
  """Both caches on, in fresh folders: an executable is written only when XLA compiled it (one
  JAX read from its own cache is not), so JAX's cache must not hold the suite's programs."""
  before = jax.config.jax_compilation_cache_dir
  jaxal.enable_compilation_cache(tmp_path / "cache", executables=True)
  executables.clear_memory()
  yield executables.folder()
  _restore_jax_cache(before)


def _delta(before: dict) -> dict:
  now = executables.stats()
  return {k: now[k] - before[k] for k in now}


def _points(n=300, d=8, seed=0):
  return jax.random.normal(jax.random.key(seed), (n, d), jnp.float32)


def _mask(n=300):
  return jnp.zeros((n,), bool).at[::10].set(True)


# A fresh process: enable the cache in the folder given, run k-center, BADGE and BAIT (whose
# program calls LAPACK) on a jaxal MLP; print the picks, the cache's counters and the traces of
# the k-center and BADGE cores.
_PROCESS = """
import json, sys
import jax, jax.numpy as jnp
import jaxal
from jaxal import loop, models, selection, strategies
from jaxal._src import executables
sys.path.insert(0, {tests!r})
from conftest import count_traces
jaxal.enable_compilation_cache({cache!r}, executables=True)
if {wait!r}:
  executables.wait_prefetch()  # the folder's recent entries loaded before the first call
x = jax.random.normal(jax.random.key(0), (400, 12), jnp.float32)
mask = jnp.zeros((400,), bool).at[::8].set(True)
y = jax.random.randint(jax.random.key(1), (400,), 0, 3)
ts = loop.create_train_state(jax.random.key(2), models.MLP(num_classes=3, hidden=(16,)), x)
model, params = models.from_train_state(ts)
with count_traces() as c:
  kc = selection.k_center_greedy(jax.random.key(3), x, 20, labeled_mask=mask)
  bd = strategies.badge().acquire(jax.random.key(4), model, params, x, mask, 20)
  ba = strategies.bait().acquire(jax.random.key(5), model, params, x, mask, 5)  # LAPACK calls
print(json.dumps({{"k_center": kc.tolist(), "badge": bd.tolist(), "bait": ba.tolist(),
  "stats": executables.stats(),
  "traces": {{n: c[n] for n in ("k_center_greedy_core", "_badge_core")}}}}))
"""


def _fresh_process(cache: str, wait: bool = False) -> dict:
  env = dict(os.environ)
  env.pop(compile_cache.EXECUTABLES_ENV, None)
  code = _PROCESS.format(tests=os.path.join(ROOT, "tests"), cache=cache, wait=wait)
  out = subprocess.run(
    [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600
  )
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def _first_process(tmp_path_factory) -> tuple[str, dict]:
  """A folder a first fresh process wrote (it compiles everything: about 6 s) and its output,
  made once per module; tests take copies (:func:`written_folder`)."""
  cache = str(tmp_path_factory.mktemp("executables") / "cache")
  return cache, _fresh_process(cache)


@pytest.fixture
def written_folder(_first_process, tmp_path) -> tuple[str, dict]:
  """``(folder, first process's output)``: a copy of the first process's folder, this test's
  own to change."""
  cache, first = _first_process
  copy = str(tmp_path / "cache")
  shutil.copytree(cache, copy)
  return copy, first


def test_a_later_process_runs_the_loaded_executables_without_tracing(written_folder):
  cache, first = written_folder
  compiled = first["stats"]["compiled"]
  assert compiled >= 4 and first["stats"]["hits_disk"] == 0, first  # k-center, BADGE, BAIT's 2
  assert first["traces"] == {"k_center_greedy_core": 1, "_badge_core": 1}, first
  entries = os.listdir(os.path.join(cache, compile_cache.EXECUTABLES_SUBFOLDER))
  assert len([e for e in entries if e.endswith(executables.SUFFIX)]) == compiled, entries
  assert not [e for e in entries if e.endswith(".tmp")], entries
  second = _fresh_process(cache)  # the first calls race the background loads
  loaded = second["stats"]["hits_disk"] + second["stats"]["hits_preloaded"]
  assert loaded == compiled and second["stats"]["compiled"] == 0, second
  assert second["traces"] == {"k_center_greedy_core": 0, "_badge_core": 0}, second
  for name in ("k_center", "badge", "bait"):
    assert second[name] == first[name], name
  # Waiting for the background loads: every entry is in memory before the first call, those
  # calling LAPACK (BAIT's) loaded last, once LAPACK's table is initialised.
  folder = os.path.join(cache, compile_cache.EXECUTABLES_SUBFOLDER)
  lapack = 0
  for e in os.listdir(folder):
    with open(os.path.join(folder, e), "rb") as f:
      lapack += bool(pickle.load(f)[2])
  assert 1 <= lapack < compiled
  third = _fresh_process(cache, wait=True)
  s = third["stats"]
  assert s["preloaded"] == compiled and s["hits_preloaded"] == compiled, s
  assert s["hits_disk"] == 0 and s["compiled"] == 0, s
  for name in ("k_center", "badge", "bait"):
    assert third[name] == first[name], name


def test_background_loads_skip_entries_of_another_environment(written_folder):
  """An entry another jax, jaxlib, jaxal or configuration wrote is never loaded (its native
  code may not run here): the background thread reads its header and leaves it."""
  cache, first = written_folder
  folder = os.path.join(cache, compile_cache.EXECUTABLES_SUBFOLDER)
  for e in sorted(os.listdir(folder)):
    path = os.path.join(folder, e)
    with open(path, "rb") as f:
      entry = list(pickle.load(f))
    if not entry[2]:  # a copy of the entry under another name, from "another environment"
      entry[3] = "0" * 64
      with open(os.path.join(folder, "f" * 64 + e[:8] + executables.SUFFIX), "wb") as f:
        pickle.dump(tuple(entry), f)
  third = _fresh_process(cache, wait=True)
  s = third["stats"]
  assert s["preloaded"] == first["stats"]["compiled"], s  # the copies were left


def test_loaded_and_compiled_executables_give_the_jit_results(folder):
  x, mask = _points(), _mask()
  before = executables.stats()
  compiled = selection.k_center_greedy(jax.random.key(1), x, 15, labeled_mask=mask)
  again = selection.k_center_greedy(jax.random.key(1), x, 15, labeled_mask=mask)
  executables.clear_memory()  # the next call reads the folder
  loaded = selection.k_center_greedy(jax.random.key(1), x, 15, labeled_mask=mask)
  d = _delta(before)
  assert d["compiled"] == 1 and d["hits_memory"] == 1 and d["hits_disk"] == 1, d
  executables.disable()
  plain = selection.k_center_greedy(jax.random.key(1), x, 15, labeled_mask=mask)
  for idx in (compiled, again, loaded):
    np.testing.assert_array_equal(np.asarray(idx), np.asarray(plain))


def _key(fn, *args, **kwargs) -> str:
  return fn._key(args, kwargs)


def test_the_key_covers_shapes_dtypes_weak_types_statics_and_keywords():
  from jaxal._src.selection import top_k

  s = jnp.arange(10.0)
  m = jnp.zeros((10,), bool)
  base = _key(top_k.top_k_core, s, 3, m)
  assert _key(top_k.top_k_core, s, 3, m) == base  # deterministic
  assert _key(top_k.top_k_core, jnp.arange(11.0), 3, jnp.zeros((11,), bool)) != base  # shape
  assert _key(top_k.top_k_core, s.astype(jnp.bfloat16), 3, m) != base  # dtype
  assert _key(top_k.top_k_core, s, 4, m) != base  # a static argument
  assert _key(top_k.top_k_core, s, k=3, labeled_mask=m) != base  # by keyword: another in_tree
  weak = jnp.full((10,), 1.0)  # from a Python float: weakly typed float32
  assert weak.aval.weak_type and weak.dtype == s.dtype
  assert _key(top_k.top_k_core, weak, 3, m) != _key(top_k.top_k_core, jnp.ones((10,)), 3, m)


def test_the_key_covers_jaxal_source_and_jax_configuration(monkeypatch):
  from jaxal._src.selection import top_k

  args = (jnp.arange(10.0), 3, jnp.zeros((10,), bool))
  base = _key(top_k.top_k_core, *args)
  monkeypatch.setattr(executables, "_source_digest", lambda: "an edited jaxal")
  executables._env_cache[0] = None
  edited = _key(top_k.top_k_core, *args)
  monkeypatch.undo()
  executables._env_cache[0] = None
  assert edited != base and _key(top_k.top_k_core, *args) == base
  with jax.numpy_dtype_promotion("standard"):  # the suite runs with "strict"
    assert _key(top_k.top_k_core, *args) != base
  assert _key(top_k.top_k_core, *args) == base


def test_the_key_covers_the_model_module_and_its_fields():
  x = _points(50, 6)
  mask = _mask(50)
  key = jax.random.key(0)
  from jaxal._src.strategies import badge as badge_lib

  keys = set()
  for module in (
    jaxal.networks.MLP(num_classes=3, hidden=(8,)),
    jaxal.networks.MLP(num_classes=3, hidden=(9,)),
    jaxal.networks.MLP(num_classes=3, hidden=(8,), dropout_rate=0.1),
  ):
    model = models.from_linen(module)
    params = models.init_params(key, module, x)
    keys.add(_key(badge_lib._badge_core, key, model, params, x, mask, 5, 50, True, "max_norm", 50))
  assert len(keys) == 3


class _UserPair(NamedTuple):
  """A pytree class defined outside jaxal."""

  scores: jax.Array
  mask: jax.Array


@executables.jit
def _top_k_of_pair(pair):
  from jaxal._src.selection import top_k

  return top_k.top_k_core(pair.scores, 2, pair.mask)


class _UserMLP(nn.Module):
  """A module defined outside jaxal: its code is not in any key."""

  @nn.compact
  def __call__(self, x):
    h = nn.relu(nn.Dense(8)(x))
    return nn.Dense(3)(h), h


def test_user_code_tracers_and_debug_modes_are_ordinary_jit_calls(folder):
  x = _points(60, 6)
  mask = _mask(60)
  key = jax.random.key(0)
  module = _UserMLP()
  model, params = models.from_linen(module), models.init_params(key, module, x)
  before = executables.stats()
  with count_traces() as c:
    idx = strategies.badge().acquire(key, model, params, x, mask, 5)
  assert c["_badge_core"] == 1 and _delta(before)["uncached"] >= 1
  executables.disable()
  np.testing.assert_array_equal(
    np.asarray(strategies.badge().acquire(key, model, params, x, mask, 5)), np.asarray(idx)
  )
  executables.enable(folder)
  # Under an enclosing trace: the inner core is part of that trace, never looked up.
  from jaxal._src.selection import top_k

  before = executables.stats()
  out = jax.jit(lambda s: top_k.top_k_core(s, 2, jnp.zeros((6,), bool)))(jnp.arange(6.0))
  assert sorted(np.asarray(out).tolist()) == [4, 5] and _delta(before) == dict.fromkeys(before, 0)
  with jax.debug_nans(True):
    before = executables.stats()
    top_k.top_k_core(jnp.arange(6.0), 2, jnp.zeros((6,), bool))
    assert _delta(before) == dict.fromkeys(before, 0)
  # numpy arguments are keyed as jax.jit keys them; a user's pytree class is not describable.
  before = executables.stats()
  out = top_k.top_k_core(np.arange(6.0, dtype=np.float32), 2, np.zeros((6,), bool))
  assert sorted(np.asarray(out).tolist()) == [4, 5] and _delta(before)["compiled"] == 1
  before = executables.stats()
  pair = _UserPair(jnp.arange(6.0), jnp.zeros((6,), bool))
  assert sorted(np.asarray(_top_k_of_pair(pair)).tolist()) == [4, 5]
  assert _delta(before)["uncached"] == 1


def test_an_unreadable_entry_is_compiled_again_and_replaced(folder, tmp_path):
  from jaxal._src.selection import top_k

  args = (jnp.arange(12.0), 4, jnp.zeros((12,), bool))
  expected = np.asarray(top_k.top_k_core(*args))
  (entry,) = [e for e in os.listdir(folder) if e.endswith(executables.SUFFIX)]
  with open(os.path.join(folder, entry), "wb") as f:
    f.write(b"not an executable")
  # JAX's cache in another fresh folder and its in-memory caches cleared: XLA compiles again.
  jaxal.enable_compilation_cache(tmp_path / "other", executables=False)
  executables.enable(folder)
  executables.clear_memory()
  jax.clear_caches()
  before = executables.stats()
  np.testing.assert_array_equal(np.asarray(top_k.top_k_core(*args)), expected)
  assert _delta(before)["compiled"] == 1
  executables.clear_memory()
  before = executables.stats()
  np.testing.assert_array_equal(np.asarray(top_k.top_k_core(*args)), expected)
  assert _delta(before)["hits_disk"] == 1  # the replacement reads back


def test_enable_compilation_cache_switches_the_executable_cache(tmp_path, monkeypatch):
  before = jax.config.jax_compilation_cache_dir
  try:
    folder = jaxal.enable_compilation_cache(tmp_path / "cache", executables=True)
    assert executables.folder() == os.path.join(folder, compile_cache.EXECUTABLES_SUBFOLDER)
    jaxal.enable_compilation_cache(tmp_path / "cache", executables=False)
    assert executables.folder() is None
    monkeypatch.delenv(compile_cache.EXECUTABLES_ENV, raising=False)
    jaxal.enable_compilation_cache(tmp_path / "cache")  # the default: on
    assert executables.folder() is not None
    monkeypatch.setenv(compile_cache.EXECUTABLES_ENV, "off")
    jaxal.enable_compilation_cache(tmp_path / "cache")
    assert executables.folder() is None
    with pytest.raises(TypeError, match="executables must be a bool"):
      jaxal.enable_compilation_cache(tmp_path / "cache", executables="yes")
  finally:
    _restore_jax_cache(before)


def test_an_executable_read_from_jax_cache_is_not_written(folder):
  """What JAX reads back from its own cache serialises without parts another process needs to
  run it: only what XLA has just compiled is written."""
  from jaxal._src.selection import top_k

  args = (jnp.arange(9.0), 2, jnp.zeros((9,), bool))
  expected = np.asarray(top_k.top_k_core(*args))
  (entry,) = [e for e in os.listdir(folder) if e.endswith(executables.SUFFIX)]
  os.remove(os.path.join(folder, entry))
  executables.clear_memory()
  jax.clear_caches()  # the next compile reads JAX's cache
  before = executables.stats()
  np.testing.assert_array_equal(np.asarray(top_k.top_k_core(*args)), expected)
  assert _delta(before)["compiled"] == 1
  assert not [e for e in os.listdir(folder) if e.endswith(executables.SUFFIX)]


def test_closures_are_keyed_by_what_they_captured_and_lambdas_are_refused():
  from jaxal._src import scores

  x = jax.random.normal(jax.random.key(0), (5, 3))
  margin, ratio = scores._margin_flagged, scores._ratio_flagged
  assert margin._closure != ratio._closure and margin._name != ratio._name
  assert _key(margin, x) != _key(ratio, x)
  with pytest.raises(ValueError, match="module-level name"):
    executables.jit(lambda v: v + 1)

  def make(c):
    def shifted(v):
      return v + c

    shifted.__qualname__ = "shifted_by_a_captured_array"
    return executables.jit(shifted)

  captured = make(jnp.ones(3))  # an array closed over: not describable, never on disk
  assert captured._closure is None
  with pytest.raises(executables._Undescribable):
    captured._key((x,), {})


@executables.jit(compiler_options=executables.ELEMENTAL_EMITTERS)
def _scaled_sum(x, w):
  return jnp.sum(jnp.tanh(x * w))


def test_compiler_options_apply_at_top_level_and_nested_calls_run_without_them(tmp_path):
  x, w = jnp.linspace(0.1, 1.3, 12), jnp.float32(0.5)
  want = float(jnp.sum(jnp.tanh(x * w)))
  # At top level XLA compiles with the options (it refuses one it does not know); they are
  # part of the executable's key.
  unknown = executables.CachedJit(_scaled_sum.__wrapped__, (), {"xla_no_such_option": True})
  with pytest.raises(Exception, match="xla_no_such_option"):
    unknown(x, w)
  assert float(jax.jit(unknown)(x, w)) == pytest.approx(want, rel=1e-6)
  plain = executables.CachedJit(_scaled_sum.__wrapped__, ())
  assert plain._key((x, w), {}) != _scaled_sum._key((x, w), {})
  for enabled in (False, True):
    if enabled:
      executables.enable(tmp_path / "exe")
    try:
      assert float(_scaled_sum(x, w)) == pytest.approx(want, rel=1e-6)
      # Inside another trace JAX refuses options on a jit: the nested call is staged plainly.
      assert float(jax.jit(_scaled_sum)(x, w)) == pytest.approx(want, rel=1e-6)
      assert float(jax.jit(lambda: _scaled_sum(x, w))()) == pytest.approx(want, rel=1e-6)
      carry, _ = jax.lax.scan(lambda c, xi: (c + _scaled_sum(xi, w), None), 0.0, x[:, None])
      assert float(carry) == pytest.approx(want, rel=1e-6)
      rows = jax.vmap(_scaled_sum, in_axes=(0, None))(x.reshape(3, 4), w)
      np.testing.assert_allclose(
        np.asarray(rows), np.tanh(np.asarray(x).reshape(3, 4) * 0.5).sum(1), rtol=1e-6
      )
      g = jax.grad(_scaled_sum, argnums=1)(x, w)
      np.testing.assert_allclose(
        float(g), float(np.sum(np.asarray(x) / np.cosh(np.asarray(x) * 0.5) ** 2)), rtol=1e-5
      )
    finally:
      executables.disable()
      executables.clear_memory()


def test_clear_cache_forgets_the_executables_kept_in_memory(folder):
  from jaxal._src.selection import top_k

  args = (jnp.arange(19.0), 4, jnp.zeros((19,), bool))
  want = np.asarray(top_k.top_k_core(*args))
  before = executables.stats()
  top_k.top_k_core(*args)
  assert _delta(before)["hits_memory"] == 1
  # As jax.jit's clear_cache: the next call does not reuse what this process holds.
  top_k.top_k_core.clear_cache()
  before = executables.stats()
  np.testing.assert_array_equal(np.asarray(top_k.top_k_core(*args)), want)
  delta = _delta(before)
  assert delta["hits_memory"] == 0 and delta["hits_disk"] + delta["compiled"] == 1, delta
