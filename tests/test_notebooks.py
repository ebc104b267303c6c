"""Every notebook is stored with its outputs, Colab-ready, and runs top to bottom at a small size."""

from __future__ import annotations

import importlib.util
import os
import re

import nbformat
import pytest
import tfds_cache
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = ["01_quickstart", "02_badge_mnist", "03_bald_batchbald", "04_custom_strategy"]


def _read(name: str) -> nbformat.NotebookNode:
  return nbformat.read(os.path.join(ROOT, "notebooks", f"{name}.ipynb"), as_version=4)


def _outputs(nb: nbformat.NotebookNode) -> str:
  text = []
  for cell in nb.cells:
    for out in cell.get("outputs", []):
      text.append(out.get("text", "") or "".join(out.get("data", {}).get("text/plain", "")))
  return "\n".join(text)


def _execute(name: str, tmp_path, monkeypatch, **env: str) -> nbformat.NotebookNode:
  """Runs the notebook in a fresh kernel, which inherits the small-size environment."""
  nb = _read(name)
  for k, v in {"JAXAL_NOTEBOOK_SMALL": "1", "MPLBACKEND": "Agg", **env}.items():
    monkeypatch.setenv(k, v)
  NotebookClient(
    nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
  ).execute()
  return nb


def _build_module():
  spec = importlib.util.spec_from_file_location(
    "build_notebooks", os.path.join(ROOT, "notebooks", "build_notebooks.py")
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_the_notebooks_are_those_the_builder_writes():
  assert sorted(_build_module().NOTEBOOKS) == NOTEBOOKS


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_built_executed_and_colab_ready(name):
  nb = _read(name)
  nbformat.validate(nb)
  built = _build_module().build(name, _build_module().NOTEBOOKS[name])
  assert [(c.cell_type, c.source) for c in nb.cells] == [
    (c.cell_type, c.source) for c in built.cells
  ], "the stored cells differ from notebooks/build_notebooks.py: run it"
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert all(c.execution_count is not None for c in code), "stored without executing"
  assert any(c.outputs for c in code), "stored without outputs"
  for cell in code:
    for out in cell.outputs:
      assert out.output_type != "error", f"{name}: a stored cell raised {out.get('ename')}"
      assert "Traceback" not in out.get("text", "")
  first = code[0].source
  assert 'find_spec("jaxal") is None' in first and "pip" in first
  assert f"git+{_readme_repository()}" in first
  assert "jax.devices()" in code[1].source and "accelerators" in code[1].source
  assert "JAXAL_NOTEBOOK_SMALL" in code[2].source
  assert "colab.research.google.com" in nb.cells[0].source


def _readme_repository() -> str:
  """The repository URL the README tells users to install from."""
  with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
    urls = set(re.findall(r"git\+(https://github\.com/[\w.-]+/[\w.-]+)", f.read()))
  assert len(urls) == 1, urls
  return urls.pop()


def test_install_url_is_the_one_the_readme_and_the_package_name():
  with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
    homepage = re.search(r'^Homepage = "([^"]+)"', f.read(), re.M).group(1)
  assert _readme_repository() == homepage == _build_module().REPO


@pytest.mark.parametrize("name", ["01_quickstart", "03_bald_batchbald", "04_custom_strategy"])
def test_notebook_runs(name, tmp_path, monkeypatch):
  nb = _execute(name, tmp_path, monkeypatch)
  out = _outputs(nb)
  assert "Traceback" not in out
  if name == "03_bald_batchbald":
    assert "BatchBALD picks" in out
  if name == "04_custom_strategy":
    assert "refused: idx holds duplicate indices" in out


def test_badge_notebook_runs(tmp_path_factory, tmp_path, monkeypatch):
  """On MNIST prepared from ../shared/data when JAXAL_SHARED_DATA is set, else on the digits fallback."""
  shared = os.environ.get("JAXAL_SHARED_DATA")  # what the shared_data fixture reads
  if shared:
    data_dir = tfds_cache.prepared_data_dir(tmp_path_factory, shared, "mnist")
    expect = "dataset: mnist, pool (1000, 28, 28, 1)"
  else:  # no prepared MNIST in an empty data_dir, and no download at the small size
    data_dir = str(tmp_path / "empty")
    expect = "using the bundled digits instead"
  nb = _execute("02_badge_mnist", tmp_path, monkeypatch, JAXAL_DATA_DIR=data_dir)
  out = _outputs(nb)
  assert expect in out
  assert "BADGE picks, closed form vs exact embedding" in out
