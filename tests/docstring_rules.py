"""The docstring rule every public name follows, as a checker (used by tests/test_docs.py).

For every name in the ``__all__`` of every public module (``public_api.public_objects``):

1. **Docstring.** Functions and classes have a non-empty docstring. Constants (tuples, strings,
   numbers: ``FUNCTIONS``, ``METRICS``, ``__version__``) cannot carry one and are exempt.
2. **Args.** A function with parameters has an ``Args:`` section whose entries (``name:`` or
   ``name (type):`` lines, one indentation level in; ``*args`` / ``**kwargs`` may be spelled
   with or without their stars; ``a, b:`` names two) cover every parameter of its signature.
   A function without parameters needs no ``Args:``.
3. **Attributes.** A NamedTuple or dataclass (a Flax module included) has an ``Attributes:``
   section covering every field (Flax's own ``parent`` and ``name`` excepted). Any other class
   defined in jaxal whose ``__init__`` takes parameters has an ``Args:`` section covering them
   (in the class docstring). Exceptions need only the docstring.
4. **Shapes.** An argument, field or return whose annotation names an array (``ArrayLike``,
   ``jax.Array``, ``Array``, ``np.ndarray``, ``Points``) has a shape in bracket notation,
   ``[num_points, dim]`` (any ``[...]``, ``[]`` for a scalar), in its entry; for the return, in
   the ``Returns:`` section. Arguments and fields named ``key`` or ``*_key`` (typed PRNG keys)
   are exempt.
5. Classes re-exported from another library (``loop.TrainState`` is Flax's) are documented
   upstream: only rule 1 applies.

``check(qualname, obj)`` returns the list of gaps, each ``"<qualname>: <what is missing>"``.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any

ARRAY_ANNOTATION = re.compile(r"\b(ArrayLike|Array|ndarray|Points)\b")
SHAPE = re.compile(r"\[[^\[\]]*\]")
SECTION = re.compile(r"^([A-Z][A-Za-z ]*):\s*$")
ENTRY = re.compile(r"^\s*(\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)*)\s*(?:\([^)]*\))?\s*:(\s|$)")
FLAX_FIELDS = ("parent", "name")


def sections(doc: str) -> dict[str, str]:
  """Splits a cleaned Google-style docstring into ``{section title: body}``.

  Args:
    doc: a docstring as ``inspect.getdoc`` returns it (common indentation removed).

  Returns:
    The body of each top-level section (``Args``, ``Returns``, ...), keyed by its title.
  """
  out: dict[str, list[str]] = {}
  current = None
  for line in doc.splitlines():
    m = SECTION.match(line)
    if m:
      current = m.group(1)
      out[current] = []
    elif current is not None:
      if line and not line[0].isspace():
        current = None  # back at the top level: the section ended
      else:
        out[current].append(line)
  return {k: "\n".join(v) for k, v in out.items()}


def entries(body: str) -> dict[str, str]:
  """Splits an ``Args:`` / ``Attributes:`` section body into ``{name: entry text}``.

  Args:
    body: the section body, as ``sections`` returns it.

  Returns:
    The text of each entry (its first line and continuation lines), keyed by every name the
    entry names, stars removed.
  """
  lines = [ln for ln in body.splitlines() if ln.strip()]
  if not lines:
    return {}
  indent = min(len(ln) - len(ln.lstrip()) for ln in lines)
  out: dict[str, str] = {}
  names: list[str] = []
  for line in lines:
    m = ENTRY.match(line) if len(line) - len(line.lstrip()) == indent else None
    if m:
      names = [n.strip().lstrip("*") for n in m.group(1).split(",")]
      for n in names:
        out[n] = line
    else:
      for n in names:
        out[n] += "\n" + line
  return out


def _annotation(a: Any) -> str:
  if a is inspect.Parameter.empty or a is inspect.Signature.empty:
    return ""
  return a if isinstance(a, str) else getattr(a, "__name__", repr(a))


def _is_array(annotation: Any) -> bool:
  return bool(ARRAY_ANNOTATION.search(_annotation(annotation)))


def _is_key(name: str) -> bool:
  return name == "key" or name.endswith("_key")


def _fields(cls: type) -> dict[str, Any] | None:
  """Field name -> annotation of a NamedTuple or dataclass, else None."""
  if issubclass(cls, tuple) and hasattr(cls, "_fields"):
    ann = getattr(cls, "__annotations__", {})
    return {f: ann.get(f, inspect.Parameter.empty) for f in cls._fields}
  if dataclasses.is_dataclass(cls):
    return {f.name: f.type for f in dataclasses.fields(cls) if f.name not in FLAX_FIELDS}
  return None


def _check_entries(qualname, kind, body, wanted, array_names):
  gaps = []
  found = entries(body)
  for name in wanted:
    if name not in found:
      gaps.append(f"{qualname}: {kind} does not describe {name!r}")
    elif name in array_names and not SHAPE.search(found[name]):
      gaps.append(f"{qualname}: {kind} entry {name!r} has no [...] shape")
  return gaps


def check_module(module: Any) -> list[str]:
  """The gaps of every non-module name in a module's ``__all__``.

  Args:
    module: a module (or any object) with an ``__all__`` and a ``__name__``.

  Returns:
    The gaps of ``check`` for each name, in ``__all__`` order.
  """
  gaps = []
  for name in module.__all__:
    obj = getattr(module, name)
    if not inspect.ismodule(obj):
      gaps += check(f"{module.__name__}.{name}", obj)
  return gaps


def check(qualname: str, obj: Any) -> list[str]:
  """The gaps of one public object against the rule in this module's docstring.

  Args:
    qualname: the public dotted name, e.g. ``"jaxal.scores.entropy"`` (used in the messages).
    obj: the object that name refers to.

  Returns:
    One ``"<qualname>: <what is missing>"`` string per gap; empty when the docstring is complete.
  """
  if not (inspect.isclass(obj) or callable(obj)):
    return []  # a constant
  doc = inspect.getdoc(obj) if obj.__doc__ else None
  if not doc or not doc.strip():
    return [f"{qualname}: no docstring"]
  if inspect.isclass(obj):
    if not getattr(obj, "__module__", "").startswith("jaxal"):
      return []
    fields = _fields(obj)
    if fields is not None:
      body = sections(doc).get("Attributes")
      if body is None:
        return [f"{qualname}: no Attributes section"] if fields else []
      arrays = {f for f, a in fields.items() if _is_array(a) and not _is_key(f)}
      return _check_entries(qualname, "Attributes", body, list(fields), arrays)
    if issubclass(obj, BaseException) or "__init__" not in vars(obj):
      return []
    target = obj.__init__
    skip_first = True
  else:
    target = obj
    skip_first = False
  try:
    sig = inspect.signature(target)
  except (TypeError, ValueError):
    return [f"{qualname}: no inspectable signature"]
  params = list(sig.parameters.values())[1 if skip_first else 0 :]
  gaps = []
  secs = sections(doc)
  if params:
    body = secs.get("Args")
    if body is None:
      gaps.append(f"{qualname}: no Args section")
    else:
      arrays = {p.name for p in params if _is_array(p.annotation) and not _is_key(p.name)}
      gaps += _check_entries(qualname, "Args", body, [p.name for p in params], arrays)
  if not inspect.isclass(obj) and _is_array(sig.return_annotation):
    ret = secs.get("Returns", secs.get("Yields"))
    if ret is None:
      gaps.append(f"{qualname}: returns an array but has no Returns section")
    elif not SHAPE.search(ret):
      gaps.append(f"{qualname}: Returns has no [...] shape")
  return gaps
