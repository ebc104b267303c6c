"""Shared test configuration: strict promotion, fresh keys, trace counting."""

from __future__ import annotations

import collections
import contextlib
import os

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")

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


class TraceCounter:
  """Counts how often jitted functions are traced (compiled), by function name."""

  def __init__(self):
    self.counts: collections.Counter[str] = collections.Counter()

  def __getitem__(self, name: str) -> int:
    return self.counts[name]


@contextlib.contextmanager
def count_traces():
  """Counts compilations of every jitted function while the block runs, by name.

  ``with count_traces() as c: ...`` then ``c["_entropy"]`` is how many times
  ``jit(_entropy)`` was traced and compiled (JAX's ``log_compiles`` records).
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
