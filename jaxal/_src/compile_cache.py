"""JAX's persistent compilation cache, switched on with jaxal's defaults.

XLA compilation dominates the first call of every jitted acquisition function
(seconds on a CPU, against milliseconds once compiled). JAX can keep the
compiled executables on disk, keyed by the program, its shapes, the JAX
version and the backend, so that a second process on the same machine loads
them instead of compiling. :func:`enable_compilation_cache` turns that on for
every compile (JAX's default caches only compiles longer than a second, which
leaves out most of ours); ``jaxal run`` and the test suite call it.

The folder, in order of precedence: the ``path`` argument, the environment
variable ``JAXAL_COMPILATION_CACHE``, then ``$XDG_CACHE_HOME/jaxal/jax`` (by
default ``~/.cache/jaxal/jax``). ``JAXAL_COMPILATION_CACHE=0`` (or ``off``)
disables it.
"""

from __future__ import annotations

import os
import threading

import jax

ENV = "JAXAL_COMPILATION_CACHE"
EXECUTABLES_ENV = "JAXAL_EXECUTABLE_CACHE"
EXECUTABLES_SUBFOLDER = "jaxal-executables"
_OFF = ("", "0", "off", "false", "no", "none")


def default_cache_dir() -> str:
  """``$XDG_CACHE_HOME/jaxal/jax``, or ``~/.cache/jaxal/jax`` when XDG_CACHE_HOME is unset."""
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "jaxal", "jax")


def resolve_cache_dir(path: str | os.PathLike | None = None) -> str | None:
  """The folder :func:`enable_compilation_cache` would use, or None when the cache is off.

  Args:
    path: an explicit folder (wins over the environment), or None.

  Returns:
    An absolute path, or None when ``path`` is None and ``JAXAL_COMPILATION_CACHE`` says off.
  """
  if path is None:
    env = os.environ.get(ENV)
    if env is not None and env.strip().lower() in _OFF:
      return None
    path = env if env else default_cache_dir()
  return os.path.abspath(os.path.expanduser(os.fspath(path)))


def enable_compilation_cache(
  path: str | os.PathLike | None = None, *, executables: bool | None = None
) -> str | None:
  """Switches on JAX's persistent compilation cache for every compile, in ``path``.

  Compiled executables are written to the folder and read back by later
  processes (same program, shapes, JAX version and backend), so the first
  call of an acquisition function in a new process skips XLA compilation.
  Every compile is cached, however short (JAX's default keeps only those over
  a second). Safe to call more than once and after compiles have happened;
  calling it again with another folder moves the cache there.

  With ``executables`` (the default), jaxal's own compiled functions are also
  kept whole in the subfolder ``jaxal-executables``, under a key of everything
  their trace depends on (:mod:`jaxal._src.executables`): a later process calling
  one with the same key skips tracing and lowering as well, so its first call
  costs about the compiled call plus the read. Calls whose trace depends on user
  code (a user's own flax module, an NNX model) still trace as usual.

  The cache is trusted code: do not point it at a folder others can write.

  Args:
    path: the cache folder (created if missing). None: the environment
      variable ``JAXAL_COMPILATION_CACHE`` if set (``0``/``off`` disables the
      cache), else ``$XDG_CACHE_HOME/jaxal/jax`` (``~/.cache/jaxal/jax``).
    executables: keep jaxal's executables whole as well. None: on, unless the
      environment variable ``JAXAL_EXECUTABLE_CACHE`` says ``0``/``off``.

  Returns:
    The absolute folder in use, or None when the environment turned the cache off.

  Raises:
    TypeError: ``path`` is not a string or path-like.
    OSError: the folder cannot be created.

  Examples:
    >>> import tempfile
    >>> import jax, jaxal
    >>> in_use = jax.config.jax_compilation_cache_dir  # keep a cache already in use
    >>> folder = jaxal.enable_compilation_cache(in_use or tempfile.mkdtemp())
    >>> folder == jax.config.jax_compilation_cache_dir
    True
  """
  from jaxal._src import executables as executables_lib

  if path is not None and not isinstance(path, (str, os.PathLike)):
    raise TypeError(f"path must be a folder (str or os.PathLike) or None, got {path!r}")
  if executables is not None and not isinstance(executables, bool):
    raise TypeError(f"executables must be a bool or None, got {executables!r}")
  folder = resolve_cache_dir(path)
  if folder is None:
    executables_lib.disable()
    return None
  os.makedirs(folder, exist_ok=True)
  _atomic_writes()
  old = jax.config.jax_compilation_cache_dir
  jax.config.update("jax_compilation_cache_dir", folder)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
  if old and old != folder:
    _reset()
  if executables is None:
    executables = os.environ.get(EXECUTABLES_ENV, "1").strip().lower() not in _OFF
  if executables:
    executables_lib.enable(os.path.join(folder, EXECUTABLES_SUBFOLDER))
  else:
    executables_lib.disable()
  return folder


def _atomic_writes() -> bool:
  """Makes JAX's file cache publish each entry whole: written beside it, then renamed.

  JAX writes an entry in place, so a process killed while writing (a notebook interrupted
  mid-compile, a timeout) or a second process writing the same entry leaves a partial file
  that other processes read, and deserialising one can crash the process instead of
  recompiling. With the rename, a reader sees the whole entry or none. Only the unbounded
  local cache jaxal configures is changed (JAX's own path, with its file lock, serves a size
  limit or a remote folder); a JAX whose cache has another shape keeps its own writes.

  Returns:
    True when entries are written atomically.
  """
  try:
    from jax._src import lru_cache
  except ImportError:  # pragma: no cover - a JAX without the private module
    return False
  cls = getattr(lru_cache, "LRUCache", None)
  put = getattr(cls, "put", None)
  suffix = getattr(lru_cache, "_CACHE_SUFFIX", None)
  is_local = getattr(lru_cache, "_is_local_filesystem", None)
  if put is None or suffix is None or is_local is None:
    return False
  if getattr(put, "jaxal_atomic", False):
    return True

  def atomic_put(self, key: str, value: bytes) -> None:
    path = getattr(self, "path", None)
    if path is None or getattr(self, "eviction_enabled", True) or not is_local(str(path)):
      return put(self, key, value)
    if not key:
      raise ValueError("key cannot be empty")
    target = path / f"{key}{suffix}"
    if target.exists():  # as JAX: the first entry written for a key stays
      return None
    tmp = path / f".{key}.{os.getpid()}.{threading.get_ident()}.tmp"
    tmp.write_bytes(value)
    os.replace(os.fspath(tmp), os.fspath(target))
    return None

  atomic_put.jaxal_atomic = True
  atomic_put.__wrapped__ = put
  cls.put = atomic_put
  return True


def _reset() -> None:
  """Makes JAX reopen its cache (it opens the folder once, at the first compile)."""
  try:
    from jax._src import compilation_cache
  except ImportError:  # pragma: no cover - a JAX without the private module
    return
  reset = getattr(compilation_cache, "reset_cache", None)
  if reset is not None:
    reset()
