"""Every code block of README.md runs as written.

The Python blocks run in order, in one fresh interpreter, as a reader would paste them into one
session (a later block uses the names an earlier one defined), in a temporary working folder. A
block preceded by ``<!-- readme-test: shared data -->`` reads MNIST and runs only under the
opt-in of the data tests (``JAXAL_SHARED_DATA``), with TFDS's ``TFDS_DATA_DIR`` pointing at a
folder where MNIST is prepared from those files. Every ``jaxal`` command of the shell blocks is
parsed by the command-line parser (each option exists and takes the value written), and every
file a shell block runs exists.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap

import conftest
import pytest
import tfds_cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
DATA_MARK = "<!-- readme-test: shared data -->"
FENCE = re.compile(r"^```(\w*)\s*$")


def blocks(path: str = README) -> list[tuple[str, int, str, bool]]:
  """``(language, first line number, source, needs shared data)`` of each fenced block."""
  out, lang, start, body, marked, prev = [], None, 0, [], False, ""
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, start=1):
      match = FENCE.match(line.rstrip("\n"))
      if lang is None and match:
        lang, start, body, marked = match.group(1), number + 1, [], prev.strip() == DATA_MARK
      elif lang is not None and line.rstrip("\n") == "```":
        out.append((lang, start, "".join(body), marked))
        lang = None
      elif lang is not None:
        body.append(line)
      if line.strip():
        prev = line
  return out


def test_the_readme_has_python_and_shell_blocks():
  langs = [lang for lang, *_ in blocks()]
  assert langs.count("python") >= 5 and langs.count("bash") >= 2, langs
  assert all(lang in ("python", "bash") for lang in langs), langs


RUNNER = textwrap.dedent(
  """
  import sys
  namespace = {"__name__": "__main__"}
  for line, source in BLOCKS:
    print(f"--- README.md line {line}", flush=True)
    try:
      exec(compile(source, f"README.md:{line}", "exec"), namespace)
    except BaseException:
      print(f"README block at line {line} failed", flush=True)
      raise
  print("all blocks ran", flush=True)
  """
)


def test_python_blocks_run_in_order(tmp_path, tmp_path_factory):
  shared = os.environ.get("JAXAL_SHARED_DATA")
  # The caller's environment without its XLA_FLAGS (a simulated device count, say): the
  # suite's compile flags only.
  env = dict(os.environ, XLA_FLAGS=conftest.FAST_COMPILE_FLAGS)
  env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
  if shared:
    env["TFDS_DATA_DIR"] = tfds_cache.prepared_data_dir(tmp_path_factory, shared, "mnist")
  python = [(line, src) for lang, line, src, data in blocks() if lang == "python"]
  run = [
    (line, src) for lang, line, src, data in blocks() if lang == "python" and (shared or not data)
  ]
  assert len(run) >= len(python) - 1, "at most one block may need the shared data"
  script = f"BLOCKS = {run!r}\n{RUNNER}"
  proc = subprocess.run(
    [sys.executable, "-c", script],
    cwd=tmp_path,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
  assert "all blocks ran" in proc.stdout


def _commands(source: str) -> list[list[str]]:
  """The commands of a shell block: continuation lines joined, split on ``&&`` and ``&``."""
  joined = source.replace("\\\n", " ")
  out = []
  for line in joined.splitlines():
    for part in re.split(r"&&|&(?!&)", line):
      words = shlex.split(part, comments=True)
      while words and "=" in words[0] and not words[0].startswith("-"):
        words = words[1:]  # VAR=value prefixes
      if words:
        out.append(words)
  return out


def _homepage() -> str:
  with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
    return re.search(r'^Homepage = "([^"]+)"', f.read(), re.M).group(1)


def test_shell_commands_parse():
  from jaxal._src import cli

  parser = cli.build_parser()
  seen = set()
  for lang, line, source, _ in blocks():
    if lang != "bash":
      continue
    for words in _commands(source):
      seen.add(words[0])
      if words[0] == "jaxal":
        try:
          parser.parse_args(words[1:])
        except SystemExit as e:
          pytest.fail(f"README.md line {line}: {shlex.join(words)!r} does not parse ({e})")
      elif words[0] == "python":
        assert os.path.exists(os.path.join(ROOT, words[1])), f"README.md line {line}: {words[1]}"
      elif words[0] == "pip":
        assert words[1] == "install", words
        target = words[-1]
        if target.startswith("jaxal["):  # from the repository: the package's own URL
          assert target.split(" @ git+")[1] == _homepage(), target
        else:
          assert target.startswith(".["), target
        extras = target.split("[")[1].split("]")[0].split(",")
        with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
          pyproject = f.read()
        for extra in extras:
          assert re.search(rf"^{extra} = \[", pyproject, re.M), f"no extra {extra!r}"
      elif words[0] == "pytest":
        assert os.path.isdir(os.path.join(ROOT, words[-1]))
      else:
        pytest.fail(f"README.md line {line}: no check for {words[0]!r}; add one here")
  assert {"jaxal", "pip", "pytest"} <= seen
