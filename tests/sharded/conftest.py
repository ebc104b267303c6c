"""Runs only in its own process with 8 simulated CPU devices (see tests/test_sharding.py)."""

from __future__ import annotations

import jax
import pytest
from jax.sharding import AxisType
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P


def pytest_configure(config):
  del config
  if jax.device_count() != 8:
    raise RuntimeError(
      "tests/sharded needs 8 devices: run with XLA_FLAGS=--xla_force_host_platform_device_count=8 "
      "(tests/test_sharding.py does)"
    )


@pytest.fixture(params=[AxisType.Explicit, AxisType.Auto], ids=["explicit", "auto"])
def shard(request):
  """``shard(x)`` places ``x`` sharded along axis 0 over a 1-D mesh of the 8 devices."""
  mesh = jax.make_mesh((8,), ("pool",), axis_types=(request.param,))

  def put(x):
    x = jax.numpy.asarray(x)
    return jax.device_put(x, NamedSharding(mesh, P("pool", *([None] * (x.ndim - 1)))))

  return put


def collectives(fn, *args, **kwargs):
  """The collective ops in the compiled HLO of ``jax.jit(fn)(*args)``, with their shapes."""
  text = jax.jit(fn, **kwargs).lower(*args).compile().as_text()
  return [
    line.strip()
    for line in text.splitlines()
    if any(
      op in line for op in ("all-gather(", "all-reduce(", "all-to-all(", "collective-permute(")
    )
  ]


def assert_no_pool_gather(fn, *args, num_points, **kwargs):
  """No collective in the compiled program moves an array with ``num_points`` rows."""
  for line in collectives(fn, *args, **kwargs):
    head = line.split("=", 1)[1] if "=" in line else line
    shape = head.split("{")[0].split("[", 1)
    if len(shape) == 2:
      dims = [d for d in shape[1].split("]")[0].split(",") if d]
      assert not dims or int(dims[0]) < num_points, f"the pool is gathered whole: {line[:200]}"
