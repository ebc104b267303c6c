"""Sphinx configuration for jaxal's API reference.

The API pages are generated at build time (``builder-inited``) from the public module list:
every module named in ``jaxal.__all__`` and every ``jaxal/<name>.py`` without a leading
underscore gets ``api/<module>.rst`` documenting each name of its ``__all__``, so a public
module added later needs no new page. ``api/where_things_live.rst`` maps each public module to
the ``jaxal/_src`` files its names are defined in. ``docs/api/`` is generated: never edit it.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (tests/test_docs.py runs
the same into a temporary folder).
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import re
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)  # document the checkout, not an installed copy

import jaxal  # noqa: E402

project = "jaxal"
author = "The jaxal authors"
copyright = "the jaxal authors"  # noqa: A001 (Sphinx's name)
release = jaxal.__version__
version = release

extensions = [
  "sphinx.ext.autodoc",
  "sphinx.ext.autosummary",
  "sphinx.ext.napoleon",
  "sphinx.ext.viewcode",
]

exclude_patterns = ["_build"]
html_theme = "alabaster"
html_title = f"jaxal {release}"

# Google-style docstrings; "Attributes:" as :ivar: fields so that NamedTuple fields are not
# described twice (once by napoleon, once by autodoc).
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True
napoleon_use_rtype = False

autosummary_generate = False  # the pages below are written by this file, not by autosummary
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
# jaxal imports tensorflow-datasets lazily; mocked in case a documented import ever needs it,
# so the docs build without the `datasets` extra.
autodoc_mock_imports = ["tensorflow", "tensorflow_datasets"]


def public_module_names() -> list[str]:
  """Sorted dotted names of the public modules, ``"jaxal"`` first (as tests/public_api.py)."""
  names = {n for n in jaxal.__all__ if inspect.ismodule(getattr(jaxal, n, None))}
  names |= {m.name for m in pkgutil.iter_modules(jaxal.__path__) if not m.name.startswith("_")}
  return ["jaxal"] + [f"jaxal.{n}" for n in sorted(names)]


def _directive(obj) -> str:
  if inspect.isclass(obj):
    if issubclass(obj, BaseException):
      return "autoexception"
    return "autoclass"
  if callable(obj):
    return "autofunction"
  return "autodata"


def _indexed_on(modnames: list[str]) -> dict[int, str]:
  """id(object) -> the one page that indexes it: its first public module other than ``jaxal``.

  ``jaxal.Strategy`` is ``jaxal.strategies.Strategy``: the top-level page shows it too, but
  without a second index entry (Sphinx would report a duplicate object description).
  """
  owner: dict[int, str] = {}
  for modname in sorted(modnames, key=lambda m: (m == "jaxal", m)):
    module = importlib.import_module(modname)
    for n in module.__all__:
      owner.setdefault(id(getattr(module, n)), modname)
  return owner


def _module_page(modname: str, indexed_on: dict[int, str]) -> str:
  module = importlib.import_module(modname)
  names = [n for n in module.__all__ if not inspect.ismodule(getattr(module, n))]
  title = f"``{modname}``"
  lines = [title, "=" * len(title), "", f".. automodule:: {modname}", ""]
  if names:
    lines += [".. autosummary::", ""] + [f"   {n}" for n in names] + [""]
  for n in names:
    obj = getattr(module, n)
    directive = _directive(obj)
    lines.append(f".. {directive}:: {n}")
    if directive == "autoclass" and getattr(obj, "__module__", "").startswith("jaxal"):
      lines.append("   :members:")
    if indexed_on.get(id(obj), modname) != modname and directive != "autodata":
      lines.append("   :no-index:")
    lines.append("")
  return "\n".join(lines)


def _source_of(obj) -> str | None:
  try:
    path = inspect.getsourcefile(obj)
  except TypeError:
    return None
  if path is None or not os.path.abspath(path).startswith(ROOT + os.sep):
    return None
  return os.path.relpath(path, ROOT).replace(os.sep, "/")


def _home_of_value(name: str) -> str | None:
  """The ``_src`` file that assigns ``name`` at module level (for constants like ``FUNCTIONS``)."""
  pattern = re.compile(rf"^{re.escape(name)}\s*[:=]", re.MULTILINE)
  modnames = sorted(m for m in sys.modules if m == "jaxal" or m.startswith("jaxal."))
  for modname in sorted(modnames, key=lambda m: (not m.startswith("jaxal._src"), m)):
    path = getattr(sys.modules[modname], "__file__", None)
    if path and path.endswith(".py"):
      with open(path, encoding="utf-8") as f:
        if pattern.search(f.read()):
          return os.path.relpath(path, ROOT).replace(os.sep, "/")
  return None


def _where_page(modnames: list[str]) -> str:
  title = "Where things live"
  lines = [
    title,
    "=" * len(title),
    "",
    "Each public module re-exports names, one per line, from the private implementation",
    "under ``jaxal/_src/``. This table is generated from the code at build time: for each",
    "public module, the files its names are defined in.",
    "",
    ".. list-table::",
    "   :header-rows: 1",
    "   :widths: 20 35 45",
    "",
    "   * - public module",
    "     - defined in",
    "     - names",
  ]
  for modname in modnames:
    module = importlib.import_module(modname)
    by_file: dict[str, list[str]] = {}
    for n in module.__all__:
      obj = getattr(module, n)
      if inspect.ismodule(obj):
        continue
      src = _source_of(obj) if inspect.isclass(obj) or callable(obj) else _home_of_value(n)
      if src is None:
        owner = getattr(obj, "__module__", None)
        src = f"{owner} (re-exported)" if owner and not owner.startswith("jaxal") else "(value)"
      by_file.setdefault(src, []).append(n)
    first = True
    for src in sorted(by_file):
      lines.append(f"   * - :doc:`{modname}`" if first else "   * -")
      lines.append(f"     - ``{src}``")
      lines.append("     - " + ", ".join(f"``{n}``" for n in by_file[src]))
      first = False
  return "\n".join(lines) + "\n"


def _write_if_changed(path: str, text: str) -> None:
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      if f.read() == text:
        return  # unchanged: Sphinx keeps its cached build of the page
  with open(path, "w", encoding="utf-8") as f:
    f.write(text)


def generate_api_pages(app) -> None:
  """Writes ``api/`` from the public module list; drops pages of modules that are gone."""
  api = os.path.join(app.srcdir, "api")
  os.makedirs(api, exist_ok=True)
  modnames = public_module_names()
  wanted = {f"{m}.rst" for m in modnames} | {"index.rst", "where_things_live.rst"}
  for stale in set(os.listdir(api)) - wanted:
    os.remove(os.path.join(api, stale))
  indexed_on = _indexed_on(modnames)
  for m in modnames:
    _write_if_changed(os.path.join(api, f"{m}.rst"), _module_page(m, indexed_on))
  _write_if_changed(os.path.join(api, "where_things_live.rst"), _where_page(modnames))
  index = [
    "API reference",
    "=============",
    "",
    "One page per public module.",
    "",
    ".. toctree::",
    "   :maxdepth: 1",
    "",
  ] + [f"   {m}" for m in modnames]
  _write_if_changed(os.path.join(api, "index.rst"), "\n".join(index) + "\n")


def skip_tuple_fields(app, what, name, obj, skip, options):
  """Leaves NamedTuple fields ("Alias for field number 0") to the class's Attributes."""
  doc = getattr(obj, "__doc__", None) or ""
  if type(obj).__name__ == "_tuplegetter" or doc.startswith("Alias for field number"):
    return True
  return None


# jax.typing.ArrayLike as autodoc spells it out; shown as ``ArrayLike``, as the code writes it.
# (a union before it may have absorbed its leading ``Array |``).
ARRAY_LIKE = re.compile(
  r"(?:~?[\w.]*\bArray \| )?~?(?:numpy\.)?ndarray \| ~?(?:numpy\.)?bool \| ~?(?:numpy\.)?number"
  r" \| bool \| int \| float \| complex"
)


def shorten_array_like(app, what, name, obj, options, signature, return_annotation):
  """Writes ``ArrayLike`` in signatures instead of the union it stands for."""
  if signature:
    signature = ARRAY_LIKE.sub("ArrayLike", signature)
  if return_annotation:
    return_annotation = ARRAY_LIKE.sub("ArrayLike", return_annotation)
  return signature, return_annotation


def drop_type_docstrings(app, what, name, obj, options, lines):
  """A constant shows its value, not the docstring of its type ("Built-in immutable sequence")."""
  constant = what in ("data", "attribute") and not inspect.isclass(obj) and not callable(obj)
  if constant and "\n".join(lines).strip() == (inspect.getdoc(type(obj)) or "").strip():
    lines.clear()


def setup(app):
  app.connect("autodoc-process-docstring", drop_type_docstrings)
  app.connect("autodoc-process-signature", shorten_array_like)
  app.connect("builder-inited", generate_api_pages)
  app.connect("autodoc-skip-member", skip_tuple_fields)
