"""Every docstring example of the public API runs: one test per public object with examples.

The examples are collected by the standard library's ``doctest.DocTestFinder`` from each public
module's docstring and from every name in its ``__all__`` defined in jaxal (methods of classes
included; objects re-exported from other libraries, such as Flax's ``TrainState``, are tested
upstream), and run by ``doctest.DocTestRunner`` with ``NORMALIZE_WHITESPACE | ELLIPSIS``. An
example sees ``jax``, ``jnp``, ``np``, ``jaxal`` and every public module by its short name
(``scores``, ``selection``, ...), as after the README's imports.
"""

from __future__ import annotations

import doctest
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import public_api
import pytest

import jaxal

OPTIONFLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS

# Objects whose examples fail, to be fixed in their docstrings (none left). May only shrink: a
# listed object whose examples pass fails its test until it is removed here.
KNOWN_FAILURES: frozenset[str] = frozenset()


def _globs() -> dict:
  globs = {"jax": jax, "jnp": jnp, "np": np, "jaxal": jaxal}
  for module in public_api.public_modules()[1:]:
    globs[module.__name__.rsplit(".", 1)[1]] = module
  return globs


def collect() -> list[tuple[str, list[doctest.DocTest]]]:
  """``(public name, its doctests)`` for every public module and object that has examples."""
  out = []
  seen: set[int] = set()
  module_finder = doctest.DocTestFinder(recurse=False)
  finder = doctest.DocTestFinder()
  for module in public_api.public_modules():
    tests = module_finder.find(module, module.__name__, globs={})
    out.append((module.__name__, [t for t in tests if t.examples]))
    for name in module.__all__:
      obj = getattr(module, name)
      if inspect.ismodule(obj) or id(obj) in seen:
        continue
      seen.add(id(obj))
      if not getattr(obj, "__module__", "").startswith("jaxal"):
        continue  # a constant, or a re-export of another library's object
      qualname = f"{module.__name__}.{name}"
      tests = finder.find(obj, qualname, module=inspect.getmodule(obj), globs={})
      out.append((qualname, [t for t in tests if t.examples]))
  return [(name, tests) for name, tests in out if tests]


CASES = collect()


def test_examples_found():
  assert sum(len(t.examples) for _, tests in CASES for t in tests) >= 10


def run_examples(tests: list[doctest.DocTest]) -> tuple[int, int, str]:
  """Runs doctests as the test below does: ``(failed, tried, report of the failures)``."""
  runner = doctest.DocTestRunner(optionflags=OPTIONFLAGS)
  report: list[str] = []
  for test in tests:
    test.globs = _globs()
    runner.run(test, out=report.append, clear_globs=True)
  return runner.failures, runner.tries, "".join(report)


@pytest.mark.parametrize("name,tests", CASES, ids=[name for name, _ in CASES])
def test_docstring_examples(name, tests):
  failed, tried, report = run_examples(tests)
  if name in KNOWN_FAILURES:
    assert failed, f"{name}: its examples pass now: remove it from KNOWN_FAILURES"
  else:
    assert not failed, f"{name}: {failed} of {tried} examples failed\n" + report


def test_runner_reports_a_wrong_example():
  def f():
    """Adds.

    >>> scores.entropy(jnp.zeros((1, 2))).shape
    (1,)
    >>> 1 + 1
    3
    """

  tests = doctest.DocTestFinder().find(f, "f", module=False, globs={})
  failed, tried, report = run_examples(tests)
  assert (failed, tried) == (1, 2)
  assert "Expected:\n    3" in report


def test_known_failures_are_collected():
  names = {name for name, _ in CASES}
  assert not KNOWN_FAILURES - names, "not collected any more: " + ", ".join(KNOWN_FAILURES - names)
