"""The EMA re-measurement of the Fashion-MNIST losses ablation, as one table (issue 18 item 1).

    python scripts/ema_remeasure_table.py \
        --out experiments/results/ema_stats_fashion/summary.json   # also writes summary.md

Reads only tracked results: `experiments/results/ema_stats_fashion_partial.json` (the
non-saturating runs, seeds 0-2), `experiments/results/ema_stats_fashion/others_seed{N}.csv`
(the sweep table of `ema_stats_fashion.py:others_seedN`: raw generator, and EMA generator with
standing statistics) and `.../{loss}_seed_{N}_ema_raw_stats.json` (`gan-jax eval --ema-stats
raw`: the EMA generator with the raw generator's BatchNorm statistics, as losses_fashion scored
it). Every figure is FID (LeNet) on 10,000 samples at step 3,000 against the train split.
Per loss it gives the mean and sample standard deviation over the seeds found, and counts
the runs where the EMA generator with standing statistics beats the raw generator.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / 'experiments' / 'results'
LOSSES = ('non_saturating', 'wgan_gp', 'hinge_sn', 'least_squares', 'non_saturating_r1')
SCORES = ('raw', 'ema_raw_stats', 'ema_standing')


def collect(root: Path = ROOT) -> list[dict]:
  """One row per finished run: loss, seed, and the three FIDs (raw / EMA with the raw
  generator's statistics / EMA standing) with the two recalls. Runs with a missing part are
  left out."""
  rows = []
  partial = json.loads((root / 'ema_stats_fashion_partial.json').read_text())
  for run in partial['runs']:
    rows.append(
      dict(
        loss=run['loss'],
        seed=int(run['seed']),
        raw=run['raw_generator_fid_lenet'],
        ema_raw_stats=run['ema_raw_stats_fid_lenet'],
        ema_standing=run['ema_standing_stats_fid_lenet'],
        raw_recall=run['raw_recall_lenet'],
        ema_standing_recall=run['ema_standing_recall_lenet'],
      )
    )
  folder = root / 'ema_stats_fashion'
  for table in sorted(folder.glob('others_seed*.csv')):
    with open(table) as f:
      for cell in csv.DictReader(f):
        if cell['status'] != 'done' or int(cell['eval_step']) != 3000:
          continue
        raw_stats = folder / f"{cell['loss']}_seed_{cell['seed']}_ema_raw_stats.json"
        if not raw_stats.exists():
          continue
        report = json.loads(raw_stats.read_text())
        assert report['step'] == 3000 and report['ema'] and report['ema_batch_stats'] == 'raw'
        rows.append(
          dict(
            loss=cell['loss'],
            seed=int(cell['seed']),
            raw=float(cell['raw_fid_lenet']),
            ema_raw_stats=report['results']['fid_lenet'],
            ema_standing=float(cell['fid_lenet']),
            raw_recall=float(cell['raw_recall_lenet']),
            ema_standing_recall=float(cell['recall_lenet']),
          )
        )
  return sorted(rows, key=lambda r: (LOSSES.index(r['loss']), r['seed']))


def summarise(rows: list[dict]) -> list[dict]:
  """Per loss: seeds, mean and sample std of each FID (std None for one seed), and how many
  runs the EMA generator with standing statistics beats the raw one in."""
  out = []
  for loss in LOSSES:
    runs = [r for r in rows if r['loss'] == loss]
    if not runs:
      continue
    entry = dict(loss=loss, seeds=[r['seed'] for r in runs])
    for score in SCORES:
      values = [r[score] for r in runs]
      entry[score] = [
        statistics.mean(values),
        statistics.stdev(values) if len(values) > 1 else None,
      ]
    entry['ema_standing_beats_raw'] = sum(r['ema_standing'] < r['raw'] for r in runs)
    out.append(entry)
  return out


def overall(rows: list[dict]) -> dict:
  """Over all runs: how much standing statistics gain over the raw generator's statistics
  (EMA raw-stats FID - EMA standing FID, min and max), and how the EMA generator with them
  compares with the raw one (runs it beats it in; EMA standing - raw, min and max)."""
  gains = [r['ema_raw_stats'] - r['ema_standing'] for r in rows]
  gaps = [r['ema_standing'] - r['raw'] for r in rows]
  return dict(
    runs=len(rows),
    standing_gain=[min(gains), max(gains)],
    standing_improves=sum(g > 0 for g in gains),
    ema_standing_beats_raw=sum(g < 0 for g in gaps),
    ema_standing_minus_raw=[min(gaps), max(gaps)],
  )


def _cell(mean_std) -> str:
  mean, std = mean_std
  return f'{mean:.1f}' if std is None else f'{mean:.1f} ± {std:.1f}'


def markdown(summary: list[dict]) -> str:
  lines = [
    '| loss | seeds | raw G | EMA G, raw G\'s statistics | EMA G, standing statistics '
    '| EMA standing beats raw |',
    '|---|---|---|---|---|---|',
  ]
  for e in summary:
    lines.append(
      f"| {e['loss']} | {', '.join(map(str, e['seeds']))} | {_cell(e['raw'])} "
      f"| {_cell(e['ema_raw_stats'])} | {_cell(e['ema_standing'])} "
      f"| {e['ema_standing_beats_raw']} of {len(e['seeds'])} |"
    )
  return '\n'.join(lines) + '\n'


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', help='JSON to write (and the same name with .md)')
  args = parser.parse_args(argv)
  try:
    rows = collect()
  except (OSError, KeyError, ValueError) as e:
    print(f'ema_remeasure_table: cannot read the results under {ROOT}: {e}', file=sys.stderr)
    return 2
  summary = summarise(rows)
  totals = overall(rows)
  text = markdown(summary)
  sys.stdout.write(text + json.dumps(totals) + '\n')
  if args.out:
    out = Path(args.out)
    out.write_text(json.dumps(dict(runs=rows, summary=summary, overall=totals), indent=2) + '\n')
    out.with_suffix('.md').write_text(text)
  return 0


if __name__ == '__main__':
  sys.exit(main())
