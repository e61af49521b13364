"""Merges the results.csv files of one ablation whose runs were made in several sweep folders
(e.g. seed 0 on one machine, the others later with `gan-jax sweep ... --seeds 1,2`) into one
results CSV and one results table (mean ± sample std over the finished seeds of each cell):

    python scripts/merge_sweep_results.py experiments/ablations/main_job_cmnist.py \
        experiments/results/main_job_cmnist.csv runs/main_job_cmnist/results.csv \
        --out experiments/results/main_job_cmnist_seeds

writes experiments/results/main_job_cmnist_seeds.{csv,md}. The rows are matched by cell and
seed. A finished run ('done') replaces an unfinished, failed or missing one; two finished
rows of the same run must agree in every metric (else exit 2: two trainings differ). Runs of
the ablation in none of the files are listed as not run. The table is the one `gan-jax sweep`
writes (`gan_jax.sweep.summary.markdown_table`), so merged and unmerged tables read alike.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

from gan_jax.config_files import UsageError
from gan_jax.sweep.ablation import load_ablation, plan
from gan_jax.sweep.spec import Ablation
from gan_jax.sweep.summary import TAIL_COLUMNS, markdown_table, write_csv

_INTS = ('seed', 'step', 'eval_step', 'start_step')
_FIXED = ('cell', 'seed', 'status', 'step', 'eval_step', *TAIL_COLUMNS)


def _value(column: str, text: str) -> Any:
  if text == '':
    return None if column not in ('error', 'workdir') else ''
  if column in _INTS:
    return int(float(text))
  if column in ('cell', 'status', 'error', 'workdir'):
    return text
  try:
    return float(text)
  except ValueError:
    return text  # an axis label


def read_rows(path: str) -> tuple[list[dict[str, Any]], list[str]]:
  """The rows of a results.csv (numbers as int/float, empty cells as None) and its columns.

  Raises:
    ValueError: a file that is not a sweep's results.csv (no cell, seed or status column).
  """
  with open(path, newline='') as f:
    reader = csv.DictReader(f)
    columns = list(reader.fieldnames or [])
    if not {'cell', 'seed', 'status'} <= set(columns):
      raise ValueError(f'{path!r} is not a sweep results.csv (it has no cell/seed/status column).')
    return [{k: _value(k, v) for k, v in row.items()} for row in reader], columns


def merge(
  ablation: Ablation, tables: Sequence[tuple[str, list[dict[str, Any]]]], metrics: Sequence[str]
) -> list[dict[str, Any]]:
  """One row per run of `ablation`, in its order: a finished row where any table has one, else
  the first row found, else a 'not_run' row.

  Args:
    ablation: the ablation the tables are results of.
    tables: (file name, rows of `read_rows`) per results.csv.
    metrics: the metric columns to keep.

  Raises:
    ValueError: two finished rows of one run that differ in a metric, or a row of a cell the
      ablation does not have.
  """
  runs = plan(ablation, '.')
  cells = {run.cell.name: run.cell for run in runs}
  found: dict[tuple[str, int], tuple[str, dict[str, Any]]] = {}
  for name, rows in tables:
    for row in rows:
      if row['cell'] not in cells:
        raise ValueError(
          f'{name}: cell {row["cell"]!r} is not in {ablation.path}; give the ablation (and '
          'variant) these results are of.'
        )
      key = (row['cell'], row['seed'])
      if key not in found or (found[key][1]['status'] != 'done' and row['status'] == 'done'):
        found[key] = (name, row)
      elif found[key][1]['status'] == 'done' and row['status'] == 'done':
        first_name, first = found[key]
        for m in metrics:
          a, b = first.get(m), row.get(m)
          if a != b and not (isinstance(a, float) and isinstance(b, float) and math.isclose(a, b)):
            raise ValueError(
              f'{row["cell"]} seed {row["seed"]}: {m} is {a} in {first_name} but {b} in {name}; '
              'the same run cannot score twice, so one of them is another training.'
            )
  merged = []
  for run in runs:
    key = (run.cell.name, run.seed)
    if key in found:
      row = dict(found[key][1])
    else:
      row = {'cell': run.cell.name, 'seed': run.seed, 'status': 'not_run', 'workdir': ''}
    row.update(dict(run.cell.labels))
    for column in (*_FIXED, *metrics):
      row.setdefault(column, '' if column in ('error', 'workdir') else None)
    merged.append(row)
  return merged


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('ablation', help='the ablation file (optionally :variant) of every file')
  parser.add_argument('results', nargs='+', help="sweeps' results.csv files")
  parser.add_argument('--out', required=True, help='output path without extension (.csv, .md)')
  args = parser.parse_args(argv)
  try:
    ablation = load_ablation(args.ablation)
    tables, columns = [], []
    for path in args.results:
      if not os.path.isfile(path):
        raise ValueError(f'{path!r} does not exist: give the results.csv of sweep folders.')
      rows, header = read_rows(path)
      tables.append((path, rows))
      columns += [c for c in header if c not in columns]
    axes = {axis for axis, _ in ablation.axes}
    metrics = list(ablation.metrics or [c for c in columns if c not in (*_FIXED, *axes)])
    rows = merge(ablation, tables, metrics)
  except (UsageError, ValueError) as error:
    print(f'merge_sweep_results: {error}', file=sys.stderr)
    return 2
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  write_csv(f'{args.out}.csv', ablation, rows, metrics)
  runs = plan(ablation, '.')
  with open(f'{args.out}.md', 'w') as f:
    f.write(markdown_table(ablation, runs, rows, metrics))
  done = sum(r['status'] == 'done' for r in rows)
  print(f'wrote {args.out}.csv and {args.out}.md: {done} of {len(rows)} runs done')
  return 0


if __name__ == '__main__':
  sys.exit(main())
