"""The ``jaxal`` command line."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence


def _csv(text: str) -> tuple[str, ...]:
  return tuple(s.strip() for s in text.split(",") if s.strip())


def build_parser() -> argparse.ArgumentParser:
  from jaxal._src import experiment

  d = experiment.Config()
  parser = argparse.ArgumentParser(prog="jaxal", description="Active learning in JAX.")
  sub = parser.add_subparsers(dest="command")
  run = sub.add_parser("run", help="run an active-learning experiment and plot learning curves",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  run.add_argument("--strategies", type=_csv, default=",".join(d.strategies),
                   help="comma-separated strategy names")
  run.add_argument("--dataset", default=d.dataset, help="dataset name")
  run.add_argument("--model", default=d.model, help="mlp or cnn")
  run.add_argument("--rounds", type=int, default=d.rounds, help="acquisition rounds")
  run.add_argument("--budget", type=int, default=d.budget, help="points acquired per round")
  run.add_argument("--initial", type=int, default=d.initial, help="initial random labeled points")
  run.add_argument("--seeds", type=int, default=d.seeds, help="number of seeds (0..seeds-1)")
  run.add_argument("--steps", type=int, default=d.num_steps, help="training steps per round")
  run.add_argument("--retrain", default=d.retrain, choices=("scratch", "warm"),
                   help="re-initialise the model each round, or warm-start")
  run.add_argument("--out", default="jaxal-results", help="output folder")
  run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if not argv:
    argv = ["run"]
  parser = build_parser()
  args = parser.parse_args(argv)
  if args.command is None:
    parser.print_help()
    return 2
  from jaxal._src import experiment

  if args.command == "run":
    strategies = args.strategies if isinstance(args.strategies, tuple) else _csv(args.strategies)
    cfg = experiment.Config(dataset=args.dataset, strategies=strategies, rounds=args.rounds,
                            budget=args.budget, initial=args.initial, seeds=args.seeds,
                            model=args.model, num_steps=args.steps, retrain=args.retrain)
    try:
      cfg.validate()
    except ValueError as e:
      parser.error(str(e))
    experiment.run(cfg, args.out, progress=not args.no_progress)
    return 0
  parser.print_help()
  return 2


if __name__ == "__main__":
  sys.exit(main())
