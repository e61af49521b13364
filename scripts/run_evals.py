"""Tracks the evaluations of finished runs: every evaluated step's metrics from each run
folder's metrics.jsonl, and their mean and sample standard deviation (n - 1) over the runs.

    python scripts/run_evals.py --out experiments/results/fashion_main_screen_by_step.json \
        runs/fashion_main_screen/recipe=lr4e4/seed_0 runs/fashion_main_screen/recipe=lr4e4/seed_1 \
        runs/fashion_main_screen/recipe=lr4e4/seed_2

A sweep's results.csv keeps each run's last evaluation only; this keeps the curve, so that a
table of FID by step in the docs has its numbers in the repository. Lines are read with
`gan_jax.training.run_actions.parse_log_line` (a line cut short by a crash is skipped, as a
resumed run skips it). Metrics are the `eval/` entries, without the prefix. Exit 2 with one
line for a folder without metrics.jsonl or without evaluations.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

from gan_jax.training.run_actions import parse_log_line


def run_evals(workdir: str) -> dict[int, dict[str, float]]:
  """{step: {metric: value}} of the `eval/` entries of `workdir/metrics.jsonl`.

  Raises:
    ValueError: no metrics.jsonl, or no evaluation in it.
  """
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.isfile(path):
    raise ValueError(f'{workdir!r} has no metrics.jsonl: give the folders of trained runs.')
  evals: dict[int, dict[str, float]] = {}
  with open(path) as f:
    for line in f:
      entry = parse_log_line(line)
      if entry is None:
        continue
      found = {k[len('eval/') :]: v for k, v in entry.items() if k.startswith('eval/')}
      if found:
        evals.setdefault(int(entry['step']), {}).update(found)
  if not evals:
    raise ValueError(f'{path!r} holds no evaluation (eval/ entries).')
  return evals


def summarize(runs: dict[str, dict[int, dict[str, float]]]) -> dict[str, dict[str, dict]]:
  """{step: {metric: {'mean', 'std', 'n'}}} over the runs that evaluated that metric at that
  step; 'std' is the sample standard deviation (n - 1), None for one run."""
  out: dict[str, dict[str, dict]] = {}
  steps = sorted({s for evals in runs.values() for s in evals})
  for step in steps:
    metrics = sorted({m for evals in runs.values() for m in evals.get(step, {})})
    row = {}
    for m in metrics:
      values = [evals[step][m] for evals in runs.values() if m in evals.get(step, {})]
      row[m] = {
        'mean': statistics.fmean(values),
        'std': statistics.stdev(values) if len(values) > 1 else None,
        'n': len(values),
      }
    out[str(step)] = row
  return out


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('runs', nargs='+', help='run folders (each with its metrics.jsonl)')
  parser.add_argument('--out', required=True, help='the JSON file to write')
  args = parser.parse_args(argv)
  try:
    runs = {w: run_evals(w) for w in args.runs}
  except ValueError as e:
    print(f'run_evals: error: {e}', file=sys.stderr)
    return 2
  report = {
    'command': ' '.join(
      ['python', 'scripts/run_evals.py', *(argv if argv is not None else sys.argv[1:])]
    ),
    'runs': {w: {str(s): m for s, m in sorted(e.items())} for w, e in runs.items()},
    'mean_over_runs': summarize(runs),
  }
  with open(args.out, 'w') as f:
    json.dump(report, f, indent=1, sort_keys=True)
  print(f'wrote {args.out}: {len(runs)} runs')
  return 0


if __name__ == '__main__':
  sys.exit(main())
