"""A prepared-TFDS folder shared by the tests of one session (pytest-xdist workers included).

Preparing MNIST from the shared idx files takes ~30 s; the tests that need it
(data, notebooks, CLI) prepare each dataset once, under a file lock, into a
folder beside the session's temporary folders, and then only read it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os

SHARED_FOLDERS = {"mnist": "mnist_idx", "fashion_mnist": "fashion_mnist_idx"}


def manual_dir(shared_data: str, name: str) -> str:
  return os.path.join(shared_data, SHARED_FOLDERS[name])


def prepared_data_dir(tmp_path_factory, shared_data: str, name: str) -> str:
  """A TFDS data_dir where ``name`` is prepared from ``shared_data`` (once per session)."""
  from jaxal._src.data import tfds_loader

  # Under xdist the base temp is .../pytest-N/popen-gwK: its parent is shared by the workers.
  root = tmp_path_factory.getbasetemp().parent / "jaxal-tfds"
  root.mkdir(exist_ok=True)
  data_dir = root / name  # one data_dir per dataset: MNIST and Fashion-MNIST share file names
  with open(root / f"{name}.lock", "w") as lock, contextlib.ExitStack() as stack:
    fcntl.flock(lock, fcntl.LOCK_EX)
    stack.callback(fcntl.flock, lock, fcntl.LOCK_UN)
    tfds_loader.prepare(name, data_dir=str(data_dir), manual_dir=manual_dir(shared_data, name))
  return str(data_dir)
