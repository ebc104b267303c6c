"""The public surface, as the docs tests see it: every public module and what it exports.

A public module is a module named in ``jaxal.__all__`` or a ``jaxal/<name>.py`` without a
leading underscore; what it exports is its ``__all__``. ``docs/conf.py`` finds the same list,
so a module added later gets its API page, its docstring check and its doctests with no edit.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import types
from typing import Any

import jaxal


def public_module_names() -> list[str]:
  """Sorted dotted names of the public modules, ``"jaxal"`` first."""
  names = {n for n in jaxal.__all__ if inspect.ismodule(getattr(jaxal, n, None))}
  names |= {m.name for m in pkgutil.iter_modules(jaxal.__path__) if not m.name.startswith("_")}
  return ["jaxal"] + [f"jaxal.{n}" for n in sorted(names)]


def public_modules() -> list[types.ModuleType]:
  """The public modules, imported."""
  return [importlib.import_module(n) for n in public_module_names()]


def public_objects() -> list[tuple[str, Any]]:
  """``(qualified public name, object)`` for every non-module name in every ``__all__``."""
  out = []
  for module in public_modules():
    for name in module.__all__:
      obj = getattr(module, name)
      if not inspect.ismodule(obj):
        out.append((f"{module.__name__}.{name}", obj))
  return out
