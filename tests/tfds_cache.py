"""A prepared-TFDS folder shared by the tests (pytest-xdist workers and later runs included).

Preparing MNIST from the shared idx files takes ~30 s; the tests that need it
(data, notebooks, CLI) prepare each dataset once, under a file lock, and then only read it.
The folder is kept beside the suite's compilation cache (``<cache>-test-tfds``), under a key
of everything the preparation depends on (jaxal's loader source, the tensorflow-datasets
version, the idx files' names and contents), so a later run prepares again only when one
of those changed; with the cache off (``JAXAL_COMPILATION_CACHE=0``) it lives in the
session's temporary folders.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil

SHARED_FOLDERS = {"mnist": "mnist_idx", "fashion_mnist": "fashion_mnist_idx"}


def manual_dir(shared_data: str, name: str) -> str:
  return os.path.join(shared_data, SHARED_FOLDERS[name])


def _key(shared_data: str, name: str) -> str:
  import tensorflow_datasets

  from jaxal._src.data import tfds_loader

  h = hashlib.sha256()
  with open(tfds_loader.__file__, "rb") as f:
    h.update(f.read())
  h.update(tensorflow_datasets.__version__.encode())
  manual = manual_dir(shared_data, name)
  for entry in sorted(os.listdir(manual)):
    # By content, not time: a copy of the same files (../shared re-synced) keeps its key.
    with open(os.path.join(manual, entry), "rb") as f:
      digest = hashlib.sha256(f.read()).hexdigest()
    h.update(f"{entry}:{digest};".encode())
  return h.hexdigest()[:16]


def prepared_data_dir(tmp_path_factory, shared_data: str, name: str) -> str:
  """A TFDS data_dir where ``name`` is prepared from ``shared_data`` (once per key)."""
  import pathlib

  from jaxal._src import compile_cache
  from jaxal._src.data import tfds_loader

  cache = compile_cache.resolve_cache_dir()
  if cache is None:
    # Under xdist the base temp is .../pytest-N/popen-gwK: its parent is shared by the workers.
    root = tmp_path_factory.getbasetemp().parent / "jaxal-tfds"
  else:
    cache = pathlib.Path(cache)  # beside it: ~/.cache/jaxal/jax-test-tfds by default
    root = cache.with_name(cache.name + "-test-tfds") / _key(shared_data, name)
  root.mkdir(parents=True, exist_ok=True)
  data_dir = root / name  # one data_dir per dataset: MNIST and Fashion-MNIST share file names
  with open(root / f"{name}.lock", "w") as lock, contextlib.ExitStack() as stack:
    fcntl.flock(lock, fcntl.LOCK_EX)
    stack.callback(fcntl.flock, lock, fcntl.LOCK_UN)
    if not ((root / f"{name}.done").exists() and data_dir.is_dir()):
      # Prepared beside, then renamed: a run killed while preparing leaves no half folder.
      partial = root / f".{name}.partial"
      shutil.rmtree(partial, ignore_errors=True)
      shutil.rmtree(data_dir, ignore_errors=True)
      tfds_loader.prepare(name, data_dir=str(partial), manual_dir=manual_dir(shared_data, name))
      os.replace(partial, data_dir)
      (root / f"{name}.done").write_text("prepared\n")
  return str(data_dir)
