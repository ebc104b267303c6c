"""The API reference: every public name documented (docstring_rules), and the Sphinx site builds.

The rule a public docstring follows is stated, checkably, in tests/docstring_rules.py: a
docstring; an ``Args:`` section naming every parameter (``Attributes:`` naming every field of a
NamedTuple or dataclass); a ``[...]`` shape in the entry of every array argument, field and
return. ``KNOWN_GAPS`` lists the gaps the code still has; it may only shrink: a new gap fails
``test_public_docstrings``, a fixed one fails ``test_known_gaps_are_still_gaps`` until it is
removed from the list.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import types
import typing

import docstring_rules
import jax
import public_api
from jax.typing import ArrayLike

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Gaps in docstrings still to be fixed in the files that hold them (none left).
KNOWN_GAPS: frozenset[str] = frozenset()

# Warnings of the Sphinx build still to be fixed in the docstrings they name (a substring of
# each warning line; none left); may only shrink, like KNOWN_GAPS.
KNOWN_SPHINX_WARNINGS: frozenset[str] = frozenset()


def all_gaps() -> list[str]:
  gaps = []
  for module in public_api.public_modules():
    gaps += docstring_rules.check_module(module)
  return gaps


def test_public_modules_found():
  names = public_api.public_module_names()
  assert names[0] == "jaxal"
  for expected in ("jaxal.scores", "jaxal.selection", "jaxal.strategies", "jaxal.experiment"):
    assert expected in names
  for module in public_api.public_modules():
    assert isinstance(module.__all__, (list, tuple)), module.__name__
    assert module.__doc__ and module.__doc__.strip(), f"{module.__name__} has no docstring"


def test_public_docstrings():
  new = sorted(set(all_gaps()) - KNOWN_GAPS)
  assert not new, "public docstrings lack (see tests/docstring_rules.py):\n" + "\n".join(new)


def test_known_gaps_are_still_gaps():
  fixed = sorted(KNOWN_GAPS - set(all_gaps()))
  assert not fixed, "fixed (remove from KNOWN_GAPS in tests/test_docs.py):\n" + "\n".join(fixed)


# --- the checker itself, on a fake module -----------------------------------------------------


def _fake_module():
  m = types.ModuleType("fake")

  def good(key, x: ArrayLike, k: int, *, mask: jax.Array | None = None) -> jax.Array:
    """Picks.

    Args:
      key: a typed key (exempt from shapes).
      x: points ``[n, d]``.
      k (int): how many.
      mask: ``[n]`` bool, or None.

    Returns:
      ``[k]`` int32 indices.
    """

  def undocumented(x):
    pass

  def no_args(x, y):
    """Has a summary only."""

  def missing_param(a, b):
    """Misses b.

    Args:
      a: the first.
    """

  def no_shape(x: ArrayLike) -> jax.Array:
    """No shapes.

    Args:
      x: the points.

    Returns:
      indices.
    """

  def two_names(a, b, *args, **kwargs):
    """Several names per entry.

    Args:
      a, b: both.
      *args: positional.
      kwargs: keywords.
    """

  def no_params():
    """Takes nothing."""

  class Result(typing.NamedTuple):
    """A result.

    Attributes:
      idx: ``[k]`` indices.
      value: the value, ``[]``.
    """

    idx: jax.Array
    value: jax.Array

  class Bare(typing.NamedTuple):
    """No attributes section."""

    idx: jax.Array

  class Failure(Exception):
    """An error."""

  class Plain:
    """A class with a constructor but no Args."""

    def __init__(self, size):
      self.size = size

  for f in (good, undocumented, no_args, missing_param, no_shape, two_names, no_params):
    setattr(m, f.__name__, f)
  for c in (Result, Bare, Failure, Plain):
    c.__module__ = "jaxal.fake"
    setattr(m, c.__name__, c)
  m.CONSTANT = ("a", "b")
  m.__all__ = (
    "good",
    "undocumented",
    "no_args",
    "missing_param",
    "no_shape",
    "two_names",
    "no_params",
    "Result",
    "Bare",
    "Failure",
    "Plain",
    "CONSTANT",
  )
  return m


def test_checker_on_a_fake_module():
  gaps = docstring_rules.check_module(_fake_module())
  assert sorted(gaps) == sorted(
    [
      "fake.undocumented: no docstring",
      "fake.no_args: no Args section",
      "fake.missing_param: Args does not describe 'b'",
      "fake.no_shape: Args entry 'x' has no [...] shape",
      "fake.no_shape: Returns has no [...] shape",
      "fake.Bare: no Attributes section",
      "fake.Plain: no Args section",
    ]
  )


def test_checker_flags_a_missing_returns_and_attribute_shape():
  def f(x: ArrayLike) -> jax.Array:
    """Args only.

    Args:
      x: ``[n]``.
    """

  class R(typing.NamedTuple):
    """R.

    Attributes:
      idx: indices.
    """

    idx: jax.Array

  R.__module__ = "jaxal.fake"
  assert docstring_rules.check("f", f) == ["f: returns an array but has no Returns section"]
  assert docstring_rules.check("R", R) == ["R: Attributes entry 'idx' has no [...] shape"]


# --- the Sphinx site --------------------------------------------------------------------------


def test_sphinx_build(tmp_path):
  """``sphinx-build -W --keep-going -b html docs`` passes, one page per public module."""
  import sphinx  # noqa: F401  (the `docs` extra, part of `test`: a missing Sphinx fails here)

  start = time.perf_counter()
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "sphinx",
      "-W",
      "--keep-going",
      "-q",
      "-b",
      "html",
      "docs",
      str(tmp_path / "html"),
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=600,
    check=False,
  )
  seconds = time.perf_counter() - start
  log = proc.stdout + proc.stderr
  warnings = [ln for ln in log.splitlines() if "WARNING" in ln or "ERROR" in ln]
  unexpected = [w for w in warnings if not any(k in w for k in KNOWN_SPHINX_WARNINGS)]
  stale = [k for k in KNOWN_SPHINX_WARNINGS if not any(k in w for w in warnings)]
  assert not unexpected, "new Sphinx warnings:\n" + "\n".join(unexpected)
  assert not stale, "fixed (remove from KNOWN_SPHINX_WARNINGS):\n" + "\n".join(stale)
  if not warnings:
    assert proc.returncode == 0, log
  for module in public_api.public_modules():
    page = tmp_path / "html" / "api" / f"{module.__name__}.html"
    assert page.exists(), f"no API page for {module.__name__}"
    html = page.read_text(encoding="utf-8")
    for name in module.__all__:
      assert name in html, f"{module.__name__}.{name} missing from {page.name}"
  assert (tmp_path / "html" / "api" / "where_things_live.html").exists()
  print(f"sphinx-build: {seconds:.1f} s")
