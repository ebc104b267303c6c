"""Shared test configuration: strict promotion, fresh keys, trace counting, the selection
invariants and a small model trained on digits.

Test modules import the helpers by name (``from conftest import check_invariants``): pytest puts
``tests/`` on ``sys.path`` for this file, with or without ``-n``.
"""

from __future__ import annotations

import collections
import contextlib
import os
from typing import Any
from typing import NamedTuple


def _fast_compile_flags() -> str:
  """XLA:CPU flags that compile the suite's programs 2-4x faster: LLVM at ``-O0`` and XLA's
  classic elemental emitters instead of its newer fusion emitters.

  The suite is compilation-bound (thousands of small programs, each run a few times).
  Neither flag permits fast math or reassociation; elementwise functions may round
  differently in the last bits, which the suite's tolerances allow (it passes at both).
  ``JAXAL_TEST_XLA_DEFAULTS=1`` runs the suite at XLA's defaults instead, what a user's
  process compiles.
  """
  if os.environ.get("JAXAL_TEST_XLA_DEFAULTS", "0").strip().lower() not in ("", "0", "false"):
    return ""
  return "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"


# Added to XLA_FLAGS before JAX starts, so xdist workers and the subprocesses tests start
# inherit them (a flag the caller set in XLA_FLAGS comes later and wins). Tests that give a
# subprocess XLA_FLAGS of its own pass these first (tests/test_readme.py).
FAST_COMPILE_FLAGS = _fast_compile_flags()
if not os.environ.get("XLA_FLAGS", "").startswith(FAST_COMPILE_FLAGS):  # once: xdist workers
  os.environ["XLA_FLAGS"] = f"{FAST_COMPILE_FLAGS} {os.environ.get('XLA_FLAGS', '')}".strip()

import jax  # noqa: E402  (after XLA_FLAGS: XLA reads them when JAX starts its backend)
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")


def _enable_compilation_cache() -> None:
  """JAX's persistent compilation cache for the whole run, before anything compiles.

  The folder is jaxal's default (``$XDG_CACHE_HOME/jaxal/jax``) or ``$JAXAL_COMPILATION_CACHE``
  (``0`` turns it off). It is exported in the environment, so xdist workers and the
  subprocesses tests start (``jaxal run``, tests/sharded, notebooks) read and write the same one:
  a second run of the suite loads every executable instead of compiling it.

  jaxal's whole-executable cache stays off (also in those subprocesses): tests count traces,
  and a later run would load what an earlier one traced. tests/test_executables.py turns it on
  in folders of its own.
  """
  from jaxal._src import compile_cache

  os.environ[compile_cache.EXECUTABLES_ENV] = "0"
  folder = compile_cache.enable_compilation_cache()
  if folder is not None:
    os.environ[compile_cache.ENV] = folder
    # Subprocesses that never call jaxal (tests/test_multihost.py's example) read JAX's own.
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", folder)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")


_enable_compilation_cache()


def pytest_configure(config):
  # A cache entry another worker is still writing reads as corrupt: JAX warns and compiles
  # instead, which is correct; it must not fail the test under filterwarnings = error.
  config.addinivalue_line(
    "filterwarnings", "ignore:Error reading persistent compilation cache entry:UserWarning"
  )


# XLA:CPU's optimising settings, for the few programs whose run time outweighs their compile
# (statistical tests drawing 20,000 samples in one vmapped call): 3-5x faster to run, about 1 s
# more to compile, once per machine with the compilation cache.
RUN_FAST_OPTIONS = {"xla_backend_optimization_level": 2, "xla_cpu_use_fusion_emitters": True}


def run_fast_jit(fun):
  """``jax.jit(fun)`` compiled with :data:`RUN_FAST_OPTIONS` (the suite's own flags when
  ``JAXAL_TEST_XLA_DEFAULTS`` is set, which already are XLA's)."""
  return jax.jit(fun, compiler_options=RUN_FAST_OPTIONS if FAST_COMPILE_FLAGS else None)


# A test whose xdist worker dies of a native abort runs once more (tests/crash_rerun.py).
from crash_rerun import pytest_handlecrashitem  # noqa: E402,F401
from crash_rerun import pytest_report_teststatus  # noqa: E402,F401
from crash_rerun import pytest_terminal_summary  # noqa: E402,F401

SHARED_DATA = os.environ.get("JAXAL_SHARED_DATA")

# tests/sharded needs 8 simulated devices from the start of its process:
# tests/test_sharding.py runs it in a subprocess of its own.
collect_ignore = ["sharded"]


@pytest.fixture
def getkey():
  """Hands out fresh, distinct keys: ``k = getkey()``."""
  base = jax.random.key(0)
  counter = iter(range(10**6))
  return lambda: jax.random.fold_in(base, next(counter))


@pytest.fixture
def shared_data():
  """The absolute path of ../shared/data, or skip when JAXAL_SHARED_DATA is unset."""
  if not SHARED_DATA:
    pytest.skip("set JAXAL_SHARED_DATA to the shared datasets folder to run this test")
  return SHARED_DATA


def check_invariants(idx, n, k, labeled, msg=None):
  """Asserts that ``idx`` is a valid batch: ``k`` distinct int32 indices into ``n``, none labeled.

  Args:
    idx: the selected indices, ``[k]``.
    n: the pool size.
    k: the budget the batch must have exactly.
    labeled: ``[n]`` bool, the points that must never be selected.
    msg: optional context shown with a failing assertion (e.g. a strategy name).
  """
  idx = np.asarray(idx)
  assert idx.shape == (k,) and idx.dtype == np.int32, msg
  assert len(set(idx.tolist())) == k, msg
  assert idx.min() >= 0 and idx.max() < n, msg
  assert not np.asarray(labeled)[idx].any(), msg


class Trained(NamedTuple):
  """A small MLP trained on 15 labels of a 90-digit pool (the ``trained_digits`` fixture)."""

  state: Any  # loop.ALState: 15 labeled, round 0
  model: Any
  params: Any
  x: Any  # [90, 8, 8] digits
  y: Any  # [90] labels


@pytest.fixture(scope="session")
def trained_digits() -> Trained:
  """90 digits, 15 labeled at random, an MLP(hidden=(16,)) fitted 30 steps on them (key 0).

  Session-scoped: the strategy tests share one training. jaxal is imported here, after the
  promotion settings above.
  """
  from jaxal import datasets
  from jaxal import loop
  from jaxal import models

  ds = datasets.load_digits()
  x, y = ds.x_train[:90], ds.y_train[:90]
  key = jax.random.key(0)
  state = loop.init(key, len(x), num_initial=15)
  ts = loop.create_train_state(key, models.MLP(num_classes=10, hidden=(16,)), x)
  ts = loop.fit(key, ts, x, y, state.labeled_mask, num_steps=30)
  model, params = models.from_train_state(ts)
  return Trained(state, model, params, x, y)


class TraceCounter:
  """Counts how often jitted functions are traced (compiled), by function name."""

  def __init__(self):
    self.counts: collections.Counter[str] = collections.Counter()

  def __getitem__(self, name: str) -> int:
    return self.counts[name]


@contextlib.contextmanager
def count_traces():
  """Counts compilations of every jitted function while the block runs, by name.

  ``with count_traces() as c: ...`` then ``c["top_k_core"]`` is how many times
  ``jit(top_k_core)`` was traced and compiled (JAX's ``log_compiles`` records).
  """
  import logging
  import re

  counter = TraceCounter()
  pattern = re.compile(r"Compiling jit\(([\w.<>]+)\)")

  class Handler(logging.Handler):
    def emit(self, record):
      m = pattern.search(record.getMessage())
      if m:
        counter.counts[m.group(1)] += 1

  logger = logging.getLogger("jax")
  handler = Handler(level=logging.DEBUG)
  logger.addHandler(handler)
  old_propagate = logger.propagate
  logger.propagate = False  # keep the records out of pytest's output
  with jax.log_compiles(True):
    try:
      yield counter
    finally:
      logger.removeHandler(handler)
      logger.propagate = old_propagate
