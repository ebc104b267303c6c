"""jaxal's compiled functions kept on disk whole, so a later process skips tracing them.

JAX's persistent compilation cache (:mod:`jaxal._src.compile_cache`) saves XLA's compile, but
every new process still traces the Python function to a jaxpr and lowers it to StableHLO before
it can look the executable up: for an acquisition such as BADGE on 20,000 points that is about
0.3 s, two to three times the compiled call. :func:`jit` wraps a jaxal function like
``jax.jit`` and, once :func:`enable` has given it a folder, keeps each compiled executable there
(``jax.experimental.serialize_executable``) under a key of everything its trace depends on;
a later process that calls it with the same key loads the executable and runs it, with no trace.

The key (SHA-256) covers: the function's module and name; the source of every jaxal module
(any edit of jaxal gives new keys); the versions of Python, jax, jaxlib, flax and numpy; the
backend, its devices and ``XLA_FLAGS``; JAX's configuration (promotion rules, x64, PRNG, matmul
precision, ...); the call's structure (which arguments came by position or keyword, the pytree
of the array arguments); each array's shape, dtype, weak type and device; and a description of
each static argument. A call is served from the folder only when all of that is describable:

* array arguments are ``jax.Array`` s on one device, numpy arrays or Python scalars (keyed as
  ``jax.jit`` keys them: a scalar by its type), never tracers (a call inside another trace is
  part of that trace);
* pytree nodes are tuples, lists, dicts with string keys, None, ``jax.tree_util.Partial`` of a
  jaxal function, or named tuples and dataclasses defined by jaxal or flax;
* static arguments (and values a jaxal function closed over) are None, bools, numbers,
  strings, dtypes, tuples, lists and dicts of them, jaxal, jax, flax and numpy functions, or
  jaxal's models of a flax linen module whose class is defined in jaxal (``jaxal.networks``);
* the process has one device, and ``jax_debug_nans``, ``jax_debug_infs`` and
  ``jax_disable_jit`` are off.

Anything else (a user's own flax module or apply function, an NNX model, a user's pytree class)
is an ordinary ``jax.jit`` call: user code cannot be keyed without tracing it, and tracing is
the cost this cache removes. Within a process each executable is kept in memory, looked up as
``jax.jit`` looks up its own (static arguments by hash and equality, arrays by abstract value).

An executable is written only when XLA has just compiled it (JAX's own cache did not supply
it) and when each of its custom calls is one a loaded executable can run (LAPACK, whose
function table is initialised before loading one that calls it, and XLA's ``TopK``); others
stay in memory.

From :func:`enable` on, a background thread loads the folder's most recently used entries
written in this environment (loading one takes 20-50 ms: XLA links its native code), so a
first call usually finds its executable in memory. Entries that call LAPACK come last: the
thread initialises LAPACK's function table (0.1-0.3 s: it imports SciPy) only once the others
are loaded, and only when one of them is among the recent. Each load marks its entry used (its
modification time).

The folder is trusted code, like JAX's own cache: an entry holds native code and pickled pytree
structures. Entries are written beside their final name and renamed, so a reader sees a whole
entry or none; one that cannot be read is compiled again and replaced.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import hashlib
import inspect
import os
import pickle
import re
import sys
import threading
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

SUFFIX = ".jaxal-exe"
_FORMAT = 3  # bumped when the entry layout changes
PREFETCH = 32  # entries the background thread loads at most (the most recently used)

_lock = threading.Lock()
_loaded = threading.Condition(_lock)  # notified when the background thread finishes an entry
_state: dict[str, Any] = {"folder": None}
_memo: dict[str, Any] = {}  # key -> a loaded jax.stages.Compiled
_fast_memo: dict[tuple, Any] = {}  # CachedJit._fast_key -> the same Compiled
_stats = {
  "hits_memory": 0,
  "hits_disk": 0,
  "hits_preloaded": 0,
  "preloaded": 0,
  "compiled": 0,
  "uncached": 0,
}
# The background loads: keys loaded and not yet called, keys a caller or the thread has taken
# (the thread skips them), the key the thread is loading, and the thread.
_preloaded: dict[str, Any] = {}
_claimed: set[str] = set()
_prefetch: dict[str, Any] = {"loading": None, "thread": None, "stop": False}


class _Undescribable(Exception):
  """A value whose behaviour a stable description cannot pin down."""


class _Traced(_Undescribable):
  """A tracer among the arguments: the call is part of an enclosing trace."""


def enable(folder: str | os.PathLike, *, prefetch: int = PREFETCH) -> str:
  """Keeps and reads the executables of jaxal's functions in ``folder`` (created if missing).

  Args:
    folder: the folder; :func:`jaxal.enable_compilation_cache` passes a subfolder of JAX's
      cache folder.
    prefetch: how many of the folder's most recently used entries (of this environment) a
      background thread loads now; 0 loads each entry when it is first called.

  Returns:
    The absolute folder.
  """
  path = os.path.abspath(os.fspath(folder))
  os.makedirs(path, exist_ok=True)
  with _lock:
    _state["folder"] = path
  running = _prefetch["thread"] is not None and _prefetch["thread"].is_alive()
  if prefetch > 0 and jax.device_count() == 1 and not running:
    environment = _environment_digest()  # in this thread: JAX's configuration as it is now
    thread = threading.Thread(
      target=_prefetch_entries, args=(path, prefetch, environment), daemon=True
    )
    _prefetch["thread"] = thread
    thread.start()
    if not _prefetch.get("atexit"):
      atexit.register(_stop_prefetch)
      _prefetch["atexit"] = True
  return path


def _stop_prefetch() -> None:
  """At exit: no new load starts, and the one under way finishes before the interpreter goes."""
  _prefetch["stop"] = True
  wait_prefetch(timeout=10.0)


def wait_prefetch(timeout: float | None = None) -> None:
  """Waits until the background loads :func:`enable` started are done (for tests and
  benchmarks that time a call without them)."""
  thread = _prefetch["thread"]
  if thread is not None:
    thread.join(timeout)


def _prefetch_entries(folder: str, limit: int, environment: str) -> None:
  """Loads up to ``limit`` entries of ``folder``, most recently used first, written in
  ``environment``, into ``_preloaded``: those not calling LAPACK first, then (LAPACK's table
  initialised) those that do."""
  try:
    entries = sorted(
      (e for e in os.scandir(folder) if e.name.endswith(SUFFIX)),
      key=lambda e: e.stat().st_mtime,
      reverse=True,
    )
  except OSError:
    entries = []
  later, loaded = [], 0
  for entry in entries:
    if len(later) + loaded >= limit or _prefetch["stop"]:
      break
    compiled = _load_in_background(entry, environment, lapack_ok=False)
    if compiled is _LAPACK:
      later.append(entry)
    elif compiled is not None:
      loaded += 1
  if later and not _prefetch["stop"] and _prepare_custom_calls():
    for entry in later:
      _load_in_background(entry, environment, lapack_ok=True)


def _load_in_background(entry: os.DirEntry, environment: str, lapack_ok: bool) -> Any:
  """One entry loaded by the background thread into ``_preloaded`` (skipped when a caller
  or the thread already took it, or the thread is stopping): what :func:`_read` returned,
  None when skipped."""
  if _prefetch["stop"]:
    return None
  key = entry.name[: -len(SUFFIX)]
  with _lock:
    if key in _memo or key in _claimed:
      return None
    _claimed.add(key)
    _prefetch["loading"] = key
  compiled = None
  try:
    compiled = _read(entry.path, None, environment, lapack_ok=lapack_ok)
  finally:
    with _loaded:
      if compiled is _LAPACK:
        _claimed.discard(key)  # not loaded yet: the LAPACK pass may take it
      elif compiled is not None:
        _preloaded[key] = compiled
        _stats["preloaded"] += 1
      _prefetch["loading"] = None
      _loaded.notify_all()
  return compiled


# What _read returns for an entry calling LAPACK when it was asked not to initialise LAPACK.
_LAPACK = object()


def _read(path: str, name: str | None, environment: str, lapack_ok: bool = True) -> Any:
  """The executable of entry ``path``, or None when it is unreadable, of another format,
  function (``name``, None for any) or environment; ``_LAPACK`` when it calls LAPACK and
  ``lapack_ok`` is False. A load marks the entry used."""
  from jax.experimental import serialize_executable

  try:
    with open(path, "rb") as f:
      fmt, entry_name, lapack, entry_env, blob, in_tree, out_tree = pickle.load(f)
    if fmt != _FORMAT or entry_env != environment or (name is not None and entry_name != name):
      return None
    if lapack and not lapack_ok:
      return _LAPACK
    if lapack and not _prepare_custom_calls():
      return None
    compiled = serialize_executable.deserialize_and_load(blob, in_tree, out_tree)
  except Exception:  # noqa: BLE001 - an unreadable entry is compiled again and replaced
    return None
  with contextlib.suppress(OSError):
    os.utime(path)
  return compiled


def disable() -> None:
  """Stops reading and writing the folder (executables already in memory stay in use)."""
  with _lock:
    _state["folder"] = None


def folder() -> str | None:
  """The folder in use, or None."""
  return _state["folder"]


def clear_memory() -> None:
  """Forgets the executables loaded in this process (the folder is left as it is)."""
  with _lock:
    _memo.clear()
    _fast_memo.clear()
    _preloaded.clear()


def stats() -> dict[str, int]:
  """Calls served from memory, from the folder (``hits_preloaded``: loaded by the background
  thread, which has ``preloaded`` entries in all), compiled and written, and left to
  ``jax.jit``."""
  return dict(_stats)


# --- The key. ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _source_digest() -> str:
  """SHA-256 of every jaxal source file (relative path and bytes), in path order."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the jaxal package
  h = hashlib.sha256()
  for base, dirs, files in os.walk(root):
    dirs.sort()
    for name in sorted(files):
      if name.endswith(".py"):
        path = os.path.join(base, name)
        h.update(os.path.relpath(path, root).encode())
        with open(path, "rb") as f:
          h.update(f.read())
  return h.hexdigest()


# JAX options that cannot change a traced program (where the cache lives, logging, timeouts).
_CONFIG_SKIP = ("cache", "log", "explain", "dump", "timeout", "profil", "traceback")


_env_cache: list = [None, None]  # [JAX's configuration values, the description made of them]


def _env_token() -> tuple:
  """JAX's configuration values and ``XLA_FLAGS``: what :func:`_environment` is made of."""
  return (tuple(jax.config.values.values()), os.environ.get("XLA_FLAGS", ""))


def _environment() -> str:
  """Everything outside the call that a trace or a compile depends on; described again when
  JAX's configuration or ``XLA_FLAGS`` has changed since the last call."""
  token = _env_token()
  if _env_cache[0] != token:
    _env_cache[1] = _describe_environment()
    _env_cache[0] = token
  return _env_cache[1]


def _environment_digest() -> str:
  """SHA-256 of :func:`_environment`: an entry records the one it was written in."""
  return hashlib.sha256(_environment().encode()).hexdigest()


def _describe_environment() -> str:
  import flax
  import jaxlib

  devices = jax.devices()
  config = sorted(
    (name, repr(value))
    for name, value in jax.config.values.items()
    if not any(s in name for s in _CONFIG_SKIP)
  )
  return repr(
    (
      _FORMAT,
      _source_digest(),
      sys.version,
      jax.__version__,
      jaxlib.__version__,
      flax.__version__,
      np.__version__,
      jax.default_backend(),
      [(d.platform, d.device_kind, d.id) for d in devices],
      getattr(devices[0].client, "platform_version", ""),
      os.environ.get("XLA_FLAGS", ""),
      config,
    )
  )


def _ours(cls: type) -> bool:
  return cls.__module__.split(".")[0] in ("jaxal", "flax")


def _describe(v: Any) -> str:
  """A description of a static argument that pins down its behaviour, or ``_Undescribable``."""
  if v is None or isinstance(v, (bool, int, float, complex, str, bytes)):
    return f"{type(v).__name__}:{v!r}"
  if isinstance(v, np.dtype) or (isinstance(v, type) and issubclass(v, np.generic)):
    return f"dtype:{np.dtype(v).str}"
  if isinstance(v, tuple) and hasattr(v, "_fields"):  # a named tuple
    if not _ours(type(v)):
      raise _Undescribable(type(v))
    return f"{type(v).__module__}.{type(v).__qualname__}({','.join(map(_describe, v))})"
  if isinstance(v, (tuple, list)):
    return f"{type(v).__name__}[{','.join(map(_describe, v))}]"
  if isinstance(v, dict):
    if not all(isinstance(k, str) for k in v):
      raise _Undescribable("dict keys")
    return "dict{" + ",".join(f"{k!r}:{_describe(v[k])}" for k in sorted(v)) + "}"
  import flax.linen as nn

  if isinstance(v, nn.Module):
    cls = type(v)
    if cls.__module__.split(".")[0] != "jaxal" or v.scope is not None:
      raise _Undescribable(cls)  # a user's module: its code is not in the key
    fields = [f.name for f in dataclasses.fields(v) if f.name != "parent"]
    return (
      f"linen:{cls.__module__}.{cls.__qualname__}("
      + ",".join(f"{name}={_describe(getattr(v, name))}" for name in fields)
      + ")"
    )
  if dataclasses.is_dataclass(v) and not isinstance(v, type) and _ours(type(v)):
    cls = type(v)
    fields = [f.name for f in dataclasses.fields(v) if f.compare]
    return (
      f"{cls.__module__}.{cls.__qualname__}("
      + ",".join(f"{name}={_describe(getattr(v, name))}" for name in fields)
      + ")"
    )
  if isinstance(v, CachedJit):
    if v._closure is None:
      raise _Undescribable(v._name)
    return f"jit:{v._name}{v._closure}"
  if inspect.isfunction(v) or inspect.isbuiltin(v) or isinstance(v, np.ufunc):
    module = getattr(v, "__module__", None) or ""
    if module.split(".")[0] not in ("jaxal", "jax", "flax", "numpy") or "<" in v.__qualname__:
      raise _Undescribable(v)  # user code, a lambda or a closure
    return f"fn:{module}.{v.__qualname__}"
  raise _Undescribable(type(v))


def _describe_tree(treedef: Any) -> str:
  """The pytree structure, when every node is a container whose flattening jaxal knows."""
  node = treedef.node_data()
  if node is not None:
    cls, aux = node
    if cls is dict:
      if not all(isinstance(k, str) for k in aux):
        raise _Undescribable("dict keys")
    elif cls not in (tuple, list, type(None), jax.tree_util.Partial) and not _ours(cls):
      raise _Undescribable(cls)
    desc = f"{cls.__module__}.{cls.__qualname__}:{_describe(aux)}"
  else:  # a leaf or None
    desc = "none" if treedef.num_leaves == 0 else "leaf"
  kids = treedef.children()
  return desc + ("(" + ",".join(map(_describe_tree, kids)) + ")" if kids else "")


def _describe_leaf(x: Any) -> str:
  if isinstance(x, jax.core.Tracer):
    raise _Traced(type(x))
  if type(x) in _SCALARS:  # as jax.jit: a weakly typed scalar, its value not in the program
    return f"py:{type(x).__name__}"
  if isinstance(x, np.ndarray):
    return f"np:{x.dtype.str}{list(x.shape)}"
  if not isinstance(x, jax.Array):
    raise _Undescribable(type(x))
  devices = x.sharding.device_set
  if len(devices) != 1:
    raise _Undescribable("several devices")
  aval = x.aval
  return f"{aval.dtype}{list(aval.shape)}w{int(aval.weak_type)}@{next(iter(devices)).id}"


# --- The wrapper. -----------------------------------------------------------------------------


_SCALARS = (bool, int, float, complex)


def _leaf_signature(x: Any) -> Any:
  """The in-process key of one array argument, as ``jax.jit`` keys it."""
  if isinstance(x, jax.core.Tracer):
    raise _Traced(type(x))
  if type(x) in _SCALARS:
    return type(x)
  if isinstance(x, np.ndarray):
    return (x.dtype, x.shape)
  if not isinstance(x, jax.Array):
    raise _Undescribable(type(x))
  return (x.aval, x.sharding)


class CachedJit:
  """``jax.jit(fun, static_argnames=...)``, served from the folder when one is enabled.

  Attributes other than the call (``lower``, ``trace``, ``eval_shape``, ...) are the jitted
  function's own.
  """

  def __init__(
    self,
    fun: Callable,
    static_argnames: tuple[str, ...],
    compiler_options: dict[str, Any] | None = None,
  ):
    self._fun = fun
    self._options = tuple(sorted((compiler_options or {}).items()))
    self._jitted = jax.jit(
      fun, static_argnames=static_argnames, compiler_options=compiler_options or None
    )
    # JAX takes compiler options on a top-level jit only: called inside another function's
    # trace (jit, scan, vmap, grad), the function is staged into that program without them.
    self._nested = (
      jax.jit(fun, static_argnames=static_argnames) if compiler_options else self._jitted
    )
    self._signature = inspect.signature(fun)
    params = list(self._signature.parameters)
    self._static_names = frozenset(static_argnames)
    self._static_nums = frozenset(i for i, p in enumerate(params) if p in self._static_names)
    self._name = f"{fun.__module__}.{fun.__qualname__}"
    if "<" in fun.__qualname__:  # a lambda or a nested function: its name is not unique
      raise ValueError(f"executables.jit needs a module-level name, got {self._name!r}")
    # Values the function closed over are part of its identity (None: one is undescribable,
    # and the function is never served from the folder).
    try:
      cells = [_describe(c.cell_contents) for c in (fun.__closure__ or ())]
      self._closure = repr(cells)
    except (_Undescribable, ValueError):
      self._closure = None
    self._memo_keys: set[str] = set()  # this function's entries of _memo
    functools.update_wrapper(self, fun)

  def __getattr__(self, name: str) -> Any:
    return getattr(self._jitted, name)

  def clear_cache(self) -> None:
    """As ``jax.jit``'s: forgets this function's compiled executables in this process (also
    those taken from the folder; the folder is left as it is)."""
    self._jitted.clear_cache()
    if self._nested is not self._jitted:
      self._nested.clear_cache()
    with _lock:
      for key in [k for k in _fast_memo if k[0] is self]:
        del _fast_memo[key]
      for key in self._memo_keys:
        _memo.pop(key, None)
      self._memo_keys.clear()

  def __call__(self, *args, **kwargs):
    if self._options and not _top_level():
      return self._nested(*args, **kwargs)
    if _state["folder"] is None or _debugging() or jax.device_count() != 1:
      return self._jitted(*args, **kwargs)
    try:
      fast, dyn_args, dyn_kwargs = self._fast_key(args, kwargs)
    except _Traced:
      return self._nested(*args, **kwargs)
    except _Undescribable:
      _stats["uncached"] += 1
      return self._jitted(*args, **kwargs)
    compiled = _fast_memo.get(fast)
    if compiled is not None:
      _stats["hits_memory"] += 1
      return compiled(*dyn_args, **dyn_kwargs)
    try:
      key = self._key(args, kwargs)
    except _Undescribable:
      _stats["uncached"] += 1
      return self._jitted(*args, **kwargs)
    compiled = _memo.get(key)
    if compiled is not None:
      _stats["hits_memory"] += 1
    else:
      compiled = self._load_or_compile(key, args, kwargs)
    with _lock:
      _fast_memo[fast] = compiled
    return compiled(*dyn_args, **dyn_kwargs)

  def _split(self, args: tuple, kwargs: dict) -> tuple[list, list, dict]:
    """``(statics [(position or name, value)], dynamic args, dynamic kwargs)``."""
    statics = []
    dyn_args = []
    for i, a in enumerate(args):
      if i in self._static_nums:
        statics.append((i, a))
      else:
        dyn_args.append(a)
    dyn_kwargs = {}
    for name in sorted(kwargs):
      if name in self._static_names:
        statics.append((name, kwargs[name]))
      else:
        dyn_kwargs[name] = kwargs[name]
    return statics, dyn_args, dyn_kwargs

  def _fast_key(self, args: tuple, kwargs: dict) -> tuple[tuple, list, dict]:
    """An in-process key as ``jax.jit`` keys its own cache (static arguments by hash and
    equality, arrays by abstract value and sharding, the pytree structure), for calls after
    the first: no description is built."""
    statics, dyn_args, dyn_kwargs = self._split(args, kwargs)
    leaves, treedef = jax.tree.flatten((dyn_args, dyn_kwargs))
    avals = [_leaf_signature(x) for x in leaves]
    key = (
      self,
      len(args),
      tuple((where, type(v), v) for where, v in statics),
      treedef,
      tuple(avals),
      _env_token(),
    )
    try:
      hash(key)
    except TypeError as e:  # an unhashable static argument: jax.jit says so
      raise _Undescribable("unhashable") from e
    return key, dyn_args, dyn_kwargs

  def _key(self, args: tuple, kwargs: dict) -> str:
    """The SHA-256 key of the call on disk (see the module docstring for what it covers)."""
    statics, dyn_args, dyn_kwargs = self._split(args, kwargs)
    leaves, treedef = jax.tree.flatten((dyn_args, dyn_kwargs))
    if self._closure is None:
      raise _Undescribable("closure")
    desc = repr(
      (
        self._name,
        self._closure,
        self._options,
        len(args),
        sorted(kwargs),
        [(where, _describe(v)) for where, v in statics],
        _describe_tree(treedef),
        [_describe_leaf(x) for x in leaves],
        _environment(),
      )
    )
    return hashlib.sha256(desc.encode()).hexdigest()

  def _load_or_compile(self, key: str, args: tuple, kwargs: dict):
    path = os.path.join(_state["folder"], key + SUFFIX)
    with _loaded:  # the background thread may be loading this very entry: wait for it
      while _prefetch["loading"] == key:
        _loaded.wait(timeout=10.0)
      compiled = _preloaded.pop(key, None)
      _claimed.add(key)
    if compiled is not None:
      _stats["hits_preloaded"] += 1
    elif os.path.exists(path):
      compiled = _read(path, self._name, _environment_digest())
      if compiled is not None:
        _stats["hits_disk"] += 1
    if compiled is None:
      with _compile_events() as events:
        compiled = self._jitted.lower(*args, **kwargs).compile()
      _stats["compiled"] += 1
      # Only an executable XLA has just compiled is written: one JAX read back from its own
      # cache (or kept in memory from an earlier compile of the same program) serialises
      # without parts it needs to run in another process. JAX's cache says which it was.
      targets = _custom_calls(compiled) if events == ["cache_misses"] else None
      if targets is not None:
        _write(path, self._name, compiled, lapack=any(t.startswith("lapack_") for t in targets))
    with _lock:
      _memo[key] = compiled
      self._memo_keys.add(key)
    return compiled


# Custom-call targets a loaded executable may hold. jaxlib initialises LAPACK's function table
# when it lowers a call to it, which a loaded executable never does: _prepare_custom_calls does
# it before loading an entry marked as calling LAPACK. An executable calling any other target
# is kept in memory only.
_CUSTOM_CALL_PREFIXES = ("lapack_", "TopK")
_CUSTOM_CALL = re.compile(r'custom_call_target="([^"]+)"')
_refused_targets: set[str] = set()


def _custom_calls(compiled: Any) -> set[str] | None:
  """The custom-call targets of ``compiled``, or None when another process could not run it
  once loaded (a target outside _CUSTOM_CALL_PREFIXES, or LAPACK's unprepared)."""
  try:
    targets = set(_CUSTOM_CALL.findall(compiled.as_text()))
  except Exception:  # noqa: BLE001 - no text to check: not written
    return None
  unknown = {t for t in targets if not t.startswith(_CUSTOM_CALL_PREFIXES)}
  if any(t.startswith("lapack_") for t in targets) and not _prepare_custom_calls():
    unknown = targets
  _refused_targets.update(unknown)
  return None if unknown else targets


def _prepare_custom_calls() -> bool:
  """Initialises LAPACK's function table (0.1-0.3 s: it imports SciPy), which a loaded
  executable calling LAPACK needs; False when this JAX offers no way to (then no executable
  calling LAPACK is written)."""
  try:
    from jax._src.lax import linalg

    linalg.initialize_lapack()
  except (ImportError, AttributeError):  # pragma: no cover - a JAX without the private hook
    return False
  return True


_events = threading.local()
_listening: list = []


def _on_event(event: str, **kwargs) -> None:
  recording = getattr(_events, "recording", None)
  if recording is not None and event.startswith("/jax/compilation_cache/cache_"):
    recording.append(event.rsplit("/", 1)[-1])


@contextlib.contextmanager
def _compile_events():
  """Collects JAX's persistent-cache hits and misses of this thread's compiles in the block."""
  from jax._src import monitoring

  with _lock:
    if not _listening:
      monitoring.register_event_listener(_on_event)
      _listening.append(True)
  recording: list = []
  _events.recording = recording
  try:
    yield recording
  finally:
    _events.recording = None


def _top_level() -> bool:
  """Whether no transformation is tracing (the test JAX makes before it takes compiler
  options); False on a JAX without that test: a function with options then runs without them,
  uncached, rather than fail."""
  try:
    from jax._src import core

    return core.trace_state_clean()
  except (ImportError, AttributeError):  # pragma: no cover - a JAX without the private test
    return False


def _debugging() -> bool:
  """JAX modes a loaded executable would bypass (``jax.jit`` implements them when it traces)."""
  c = jax.config
  return bool(c.jax_debug_nans or c.jax_debug_infs or c.jax_disable_jit)


def _write(path: str, name: str, compiled: Any, lapack: bool) -> None:
  """Writes one entry beside its final name, then renames it (a reader sees all or nothing);
  ``lapack``: the executable calls LAPACK (its loader initialises it first)."""
  from jax.experimental import serialize_executable

  try:
    blob, in_tree, out_tree = serialize_executable.serialize(compiled)
    data = pickle.dumps((_FORMAT, name, lapack, _environment_digest(), blob, in_tree, out_tree))
  except Exception:  # noqa: BLE001 - an executable XLA cannot serialise stays in memory only
    return
  tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
  try:
    with open(tmp, "wb") as f:
      f.write(data)
    os.replace(tmp, path)
  except OSError:  # a full or read-only folder: the call still runs
    with contextlib.suppress(OSError):
      os.remove(tmp)


# XLA:CPU's elemental emitters instead of its fusion emitters. Measured on 2 CPU cores, fresh
# processes, per strategy: a quarter to a third less to compile for the model forwards,
# BADGE, BAIT, k-center, k-means, TypiClust, cluster-margin and DeepFool/BIM cores, the same
# run time; BatchBALD's core compiles 4x slower and EPIG's and ProbCover's run slower with it,
# so it is opt-in per core (benchmarks/results/first_call.md). Other backends ignore it.
ELEMENTAL_EMITTERS = {"xla_cpu_use_fusion_emitters": False}


def jit(
  fun: Callable | None = None,
  *,
  static_argnames: tuple[str, ...] | str = (),
  compiler_options: dict[str, Any] | None = None,
):
  """``jax.jit`` for jaxal's functions, with their executables kept in the enabled folder.

  Use as ``@jit`` or ``@jit(static_argnames=(...))``: ``static_argnames`` and
  ``compiler_options`` as in ``jax.jit``.

  Args:
    fun: the function.
    static_argnames: names of its static arguments.
    compiler_options: XLA options of its compilation (e.g. :data:`ELEMENTAL_EMITTERS`), part
      of the executable's key.

  Returns:
    A :class:`CachedJit`, or a decorator making one.
  """
  names = (static_argnames,) if isinstance(static_argnames, str) else tuple(static_argnames)
  if fun is None:
    return functools.partial(jit, static_argnames=names, compiler_options=compiler_options)
  return CachedJit(fun, names, compiler_options)
