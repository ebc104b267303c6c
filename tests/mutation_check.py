"""Mutation check: plant known bugs in a copy of the repository and expect the tests to fail.

Run by hand (it is not collected by pytest; ``tests/test_hardening.py`` checks quickly that every
patch still applies):

    python tests/mutation_check.py            # every mutation
    python tests/mutation_check.py margin_ratio bald_negated

Each mutation replaces one exact snippet of one source file in a temporary copy of the
repository, then runs the listed test files there. A mutation "survives" when those tests
still pass: the suite did not notice a strategy picking the wrong points. Exit status 1 when
any survives.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]


class Mutation(NamedTuple):
  name: str
  path: str  # relative to the repository root
  old: str
  new: str
  tests: tuple[str, ...]  # test files (with optional ::selectors) expected to fail


PICKS = "tests/test_strategy_picks.py"

MUTATIONS = (
  Mutation(
    "adversarial_largest_distance",
    "jaxal/_src/strategies/adversarial_sampling.py",
    "top_k.select_top_k(-distance[perm]",
    "top_k.select_top_k(distance[perm]",
    (
      PICKS + "::test_deepfool_picks_the_points_closest_to_the_boundary",
      PICKS + "::test_bim_picks_the_smallest_bim_distances",
    ),
  ),  # fmt: skip
  Mutation(
    "margin_ratio",
    "jaxal/_src/scores.py",
    "  return 1.0 - (jnp.exp(logp1) - jnp.exp(logp2))\n",
    "  return jnp.exp(logp2 - logp1)\n",
    (PICKS + "::test_single_pass_scores_pick_the_reference_top_k",),
  ),
  Mutation(
    "margin_negated",
    "jaxal/_src/scores.py",
    "  return 1.0 - (jnp.exp(logp1) - jnp.exp(logp2))\n",
    "  return -(1.0 - (jnp.exp(logp1) - jnp.exp(logp2)))\n",
    (PICKS + "::test_single_pass_scores_pick_the_reference_top_k",),
  ),
  Mutation(
    "bald_mean_std",
    "jaxal/_src/scores.py",
    "  return jnp.maximum(predictive - expected, 0.0)\n",
    "  return jnp.mean(jnp.std(jnp.exp(logp), axis=0), axis=-1)\n",
    (PICKS + "::test_mc_scores_pick_the_reference_top_k",),
  ),
  Mutation(
    "bald_negated",
    "jaxal/_src/scores.py",
    "  return jnp.maximum(predictive - expected, 0.0)\n",
    "  return -jnp.maximum(predictive - expected, 0.0)\n",
    (PICKS + "::test_mc_scores_pick_the_reference_top_k",),
  ),
  Mutation(
    "batchbald_inconsistent_masks",
    "jaxal/_src/strategies/bayesian.py",
    "pool, num_samples, batch_size, consistent=True)",
    "pool, num_samples, batch_size, consistent=False)",
    (PICKS + "::test_batchbald_picks_the_exact_greedy_joint_mutual_information",),
  ),
  Mutation(
    "kmeans_pp_duplicate",
    "jaxal/_src/selection/kmeans_pp.py",
    "    idx = kmeans_pp_exact(key, x, k, labeled_mask, first, chunk_size, ps)[0]\n",
    "    idx = kmeans_pp_exact(key, x, k, labeled_mask, first, chunk_size, ps)[0]\n"
    "    idx = idx.at[-1].set(idx[0])\n",
    (
      PICKS + "::test_badge_first_pick_is_the_largest_gradient_and_second_follows_d2",
      "tests/test_selection_kmeans_pp.py",
    ),
  ),  # fmt: skip
  Mutation(
    "fit_on_whole_pool",
    "jaxal/_src/loop.py",
    "    p = labeled_mask.astype(jnp.float32)\n    p = p / jnp.sum(p)\n",
    "    p = jnp.ones(labeled_mask.shape, jnp.float32)\n    p = p / jnp.sum(p)\n",
    ("tests/test_loop.py",),
  ),
)


def copy_repo(dest: Path) -> Path:
  """The working tree (no .git, caches or build output) copied under ``dest``."""
  ignore = shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", "_build", ".hypothesis")
  target = dest / "repo"
  shutil.copytree(ROOT, target, ignore=ignore)
  return target


def apply(repo: Path, m: Mutation) -> None:
  """Plants ``m`` in ``repo``; the snippet must occur exactly once."""
  f = repo / m.path
  text = f.read_text()
  count = text.count(m.old)
  if count != 1:
    raise RuntimeError(f"{m.name}: the snippet occurs {count} times in {m.path}, expected once")
  f.write_text(text.replace(m.old, m.new))


def run(m: Mutation, python: str = sys.executable) -> bool:
  """True when the mutation was caught (its tests fail in the mutated copy)."""
  with tempfile.TemporaryDirectory() as tmp:
    repo = copy_repo(Path(tmp))
    apply(repo, m)
    env = {**os.environ, "PYTHONPATH": str(repo)}
    cmd = [python, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *m.tests]
    r = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
    last = (r.stdout.strip().splitlines() or ["(no output)"])[-1]
    caught = r.returncode != 0
    print(f"{m.name:32s} {'caught' if caught else 'SURVIVED'}: {last}", flush=True)
    return caught


def main(argv: list[str]) -> int:
  chosen = [m for m in MUTATIONS if not argv or m.name in argv]
  unknown = set(argv) - {m.name for m in MUTATIONS}
  if unknown:
    print(f"unknown mutations {sorted(unknown)}; known: {[m.name for m in MUTATIONS]}")
    return 2
  survived = [m.name for m in chosen if not run(m)]
  print(f"{len(chosen) - len(survived)} of {len(chosen)} mutations caught")
  return 1 if survived else 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
