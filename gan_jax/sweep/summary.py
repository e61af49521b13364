"""A sweep's summaries (`gan_jax.sweep`): results.csv, results.md, <metric>_vs_step.png and
samples.png.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import statistics
import sys
from collections.abc import Sequence
from typing import Any

from gan_jax.sweep.folders import read_evals, run_state
from gan_jax.sweep.spec import Ablation, Run, override_args

FIXED_COLUMNS = ('cell', 'seed', 'status', 'step', 'eval_step')
TAIL_COLUMNS = ('wall_time_s', 'start_step', 'error', 'workdir')
_NOT_METRICS = ('eval_seconds', 'eval_samples_per_sec')


def collect(
  ablation: Ablation, runs: Sequence[Run], failed: dict[str, str] | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
  """The results.csv rows (one per run) and the metric columns.

  Args:
    ablation: the ablation (its axes and `metrics`).
    runs: the runs, from `plan`.
    failed: run name -> error, for runs that failed in this invocation.

  Returns:
    (rows, metric names): each row has `cell`, one column per axis, `seed`, `status` (done,
    failed, unfinished, not_run), `step` (last step reached), `eval_step` (step of the last
    evaluation), the metrics from it (None where missing), `wall_time_s` and `start_step`
    from summary.json (the last invocation's: a resumed run's wall time covers start_step to
    step), `error` and `workdir`.
  """
  failed = failed or {}
  rows, seen = [], {}
  for run in runs:
    state = run_state(run)
    evals = read_evals(run.workdir)
    eval_step, values = evals[-1] if evals else (None, {})
    for k in values:
      if k not in _NOT_METRICS:
        seen.setdefault(k, None)
    status = (
      'failed'
      if run.name in failed
      else {'done': 'done', 'unfinished': 'unfinished', 'new': 'not_run'}[state.status]
    )
    summary = state.summary or {}
    rows.append(
      {
        'cell': run.cell.name,
        **dict(run.cell.labels),
        'seed': run.seed,
        'status': status,
        'step': state.step,
        'eval_step': eval_step,
        '_values': values,
        'wall_time_s': summary.get('wall_time_s') if state.status == 'done' else None,
        'start_step': summary.get('start_step') if state.status == 'done' else None,
        'error': failed.get(run.name, ''),
        'workdir': run.workdir,
      }
    )
  metrics = list(ablation.metrics or seen)
  for row in rows:
    values = row.pop('_values')
    for m in metrics:
      row[m] = values.get(m)
  return rows, metrics


def _columns(ablation: Ablation, metrics: Sequence[str]) -> list[str]:
  axes = [axis for axis, _ in ablation.axes]
  return ['cell', *axes, 'seed', 'status', 'step', 'eval_step', *metrics, *TAIL_COLUMNS]


def _write_atomic(path: str, data: str | bytes) -> None:
  tmp = f'{path}.tmp{os.getpid()}'
  if isinstance(data, bytes):
    with open(tmp, 'wb') as f:
      f.write(data)
  else:
    with open(tmp, 'w', newline='') as f:
      f.write(data)
  os.replace(tmp, path)


def write_csv(
  path: str, ablation: Ablation, rows: Sequence[dict[str, Any]], metrics: Sequence[str]
) -> None:
  """Writes the rows of `collect` as CSV (empty cells for missing values)."""
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=_columns(ablation, metrics), lineterminator='\n')
  writer.writeheader()
  for row in rows:
    writer.writerow({k: '' if v is None else v for k, v in row.items()})
  _write_atomic(path, buf.getvalue())


def _mean_std(values: Sequence[float]) -> str:
  if not values:
    return '–'
  mean = statistics.fmean(values)
  if len(values) == 1:
    return f'{mean:.4g}'
  return f'{mean:.4g} ± {statistics.stdev(values):.2g}'


def _display(metric: str) -> str:
  from gan_jax.metrics.evaluate import display_name  # pylint: disable=g-import-not-at-top

  return display_name(metric)


def markdown_table(
  ablation: Ablation,
  runs: Sequence[Run],
  rows: Sequence[dict[str, Any]],
  metrics: Sequence[str],
  cli_overrides: Sequence[str] = (),
) -> str:
  """results.md: a header saying what was run, then one table row per cell."""
  axes = [axis for axis, _ in ablation.axes]
  common = (
    ' '.join(f'`{a[len("--config.") :]}`' for a in override_args(ablation.overrides)) or 'none'
  )
  cli = ' '.join(f'`{a}`' for a in cli_overrides) or 'none'
  base = os.path.relpath(ablation.base.partition(':')[0])
  variant = ablation.base.partition(':')[2]
  lines = [
    f'# Ablation: {ablation.path}{":" + ablation.variant if ablation.variant else ""}',
    '',
    f'Base config `{base}{":" + variant if variant else ""}`; overrides for every run: '
    f'{common}; command-line overrides: {cli}. Seeds {list(ablation.seeds)}.',
    '',
    'Each metric is the mean ± sample standard deviation (n - 1) over the n finished seeds of '
    'the cell, taken from each run\'s last evaluation, at the step in the `step` column (the '
    'final step: runs evaluate at the end of training). FID and KID: lower is better; IS, '
    'precision and recall: higher is better.',
    '',
  ]
  header = [*axes, 'step', 'n', *(_display(m) for m in metrics), 'not finished']
  lines.append('| ' + ' | '.join(header) + ' |')
  lines.append('|' + '---|' * len(header))
  by_cell: dict[str, list[dict[str, Any]]] = {}
  for row in rows:
    by_cell.setdefault(row['cell'], []).append(row)
  cells = list(dict.fromkeys(run.cell for run in runs))
  for cell in cells:
    cell_rows = by_cell.get(cell.name, [])
    done = [r for r in cell_rows if r['status'] == 'done']
    steps = sorted({r['eval_step'] for r in done if r['eval_step'] is not None})
    others = ', '.join(
      f'seed {r["seed"]} {r["status"]}' for r in cell_rows if r['status'] != 'done'
    )
    values = [
      _mean_std([float(r[m]) for r in done if r.get(m) is not None and math.isfinite(float(r[m]))])
      for m in metrics
    ]
    cells_text = [
      *(label for _, label in cell.labels),
      '/'.join(str(s) for s in steps) or '–',
      str(len(done)),
      *values,
      others,
    ]
    lines.append('| ' + ' | '.join(cells_text) + ' |')
  return '\n'.join(lines) + '\n'


def plot_metric(path: str, runs: Sequence[Run], metric: str) -> bool:
  """Plots `metric` against the step, one line per cell (mean over its seeds' evaluations).

  Returns:
    False (with a warning on stderr) if matplotlib is not installed, else True.
  """
  try:
    from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  except ImportError:
    print(
      f'gan-jax: warning: matplotlib is not installed; {path} not written '
      '(pip install matplotlib).',
      file=sys.stderr,
    )
    return False
  curves: dict[str, dict[int, list[float]]] = {}
  for run in runs:
    curve = curves.setdefault(run.cell.name, {})
    for step, values in read_evals(run.workdir):
      value = values.get(metric)
      if value is not None and math.isfinite(value):
        curve.setdefault(step, []).append(value)
  fig = Figure(figsize=(8, 4.8), layout='constrained')
  ax = fig.add_subplot()
  colors = [f'C{i}' for i in range(10)]
  styles = ['-', '--', ':', '-.']
  all_values = []
  for i, (name, curve) in enumerate(curves.items()):
    if not curve:
      continue
    steps = sorted(curve)
    means = [statistics.fmean(curve[s]) for s in steps]
    all_values += means
    ax.plot(
      steps,
      means,
      marker='o',
      markersize=3,
      color=colors[i % len(colors)],
      linestyle=styles[(i // len(colors)) % len(styles)],
      label=name,
    )
  if all_values and min(all_values) > 0 and max(all_values) / min(all_values) > 20:
    ax.set_yscale('log')
  ax.set_xlabel('step')
  ax.set_ylabel(_display(metric))
  ax.set_title(f'{_display(metric)} vs step (mean over seeds)')
  ax.grid(True, alpha=0.3)
  if all_values:
    ax.legend(fontsize='small', loc='upper left', bbox_to_anchor=(1.01, 1.0))
  buf = io.BytesIO()
  fig.savefig(buf, format='png', dpi=100)
  _write_atomic(path, buf.getvalue())
  return True


def _final_grid(workdir: str) -> tuple[str, int] | None:
  folder = os.path.join(workdir, 'samples')
  try:
    names = [n for n in os.listdir(folder) if re.fullmatch(r'step_\d+\.png', n)]
  except OSError:
    return None
  if not names:
    return None
  name = max(names, key=lambda n: int(n[5:-4]))
  return os.path.join(folder, name), int(name[5:-4])


def samples_sheet(path: str, ablation: Ablation, runs: Sequence[Run]) -> None:
  """One labelled tile per cell: the last sample grid of its first seed that has one.

  Rows are the first axis's labels, columns every combination of the other axes.
  """
  from PIL import Image, ImageDraw, ImageFont  # pylint: disable=g-import-not-at-top

  font = ImageFont.load_default()
  cells = list(dict.fromkeys(run.cell for run in runs))
  tiles = []
  for cell in cells:
    found = None
    for seed in ablation.seeds:
      run = next(r for r in runs if r.cell == cell and r.seed == seed)
      grid = _final_grid(run.workdir)
      if grid is not None:
        found = (seed, *grid)
        break
    caption = [f'{axis}={label}' for axis, label in cell.labels]
    if found is None:
      caption.append('no samples')
      tiles.append((caption, None))
    else:
      seed, grid_path, step = found
      caption.append(f'seed {seed}, step {step}')
      with Image.open(grid_path) as img:
        tiles.append((caption, img.convert('RGB')))
  width = max([img.width for _, img in tiles if img is not None] or [128])
  height = max([img.height for _, img in tiles if img is not None] or [128])
  probe = ImageDraw.Draw(Image.new('RGB', (1, 1)))
  line_h = probe.textbbox((0, 0), 'Ag=,', font=font)[3] + 3
  text_w = max(
    probe.textbbox((0, 0), line, font=font)[2] for caption, _ in tiles for line in caption
  )
  width = max(width, text_w + 4)
  caption_h = line_h * max(len(caption) for caption, _ in tiles) + 4
  per_row = max(1, math.prod(len(labels) for _, labels in ablation.axes[1:]))
  n_rows = math.ceil(len(tiles) / per_row)
  pad = 8
  sheet = Image.new(
    'RGB',
    (pad + per_row * (width + pad), pad + n_rows * (caption_h + height + pad)),
    'white',
  )
  draw = ImageDraw.Draw(sheet)
  for i, (caption, img) in enumerate(tiles):
    x = pad + (i % per_row) * (width + pad)
    y = pad + (i // per_row) * (caption_h + height + pad)
    for j, line in enumerate(caption):
      draw.text((x + 2, y + j * line_h), line, fill='black', font=font)
    if img is None:
      draw.rectangle((x, y + caption_h, x + width - 1, y + caption_h + height - 1), fill='#dddddd')
    else:
      sheet.paste(img, (x, y + caption_h))
  buf = io.BytesIO()
  sheet.save(buf, format='PNG')
  _write_atomic(path, buf.getvalue())


def write_results(
  workdir: str,
  ablation: Ablation,
  runs: Sequence[Run],
  failed: dict[str, str] | None = None,
  cli_overrides: Sequence[str] = (),
) -> tuple[list[dict[str, Any]], list[str]]:
  """Writes results.csv, results.md, <metric>_vs_step.png and samples.png into `workdir`.

  Returns:
    (the results.csv rows, the paths written).
  """
  rows, metrics = collect(ablation, runs, failed)
  written = []
  path = os.path.join(workdir, 'results.csv')
  write_csv(path, ablation, rows, metrics)
  written.append(path)
  path = os.path.join(workdir, 'results.md')
  _write_atomic(path, markdown_table(ablation, runs, rows, metrics, cli_overrides))
  written.append(path)
  if metrics:
    path = os.path.join(workdir, f'{metrics[0].split("_")[0]}_vs_step.png')
    if plot_metric(path, runs, metrics[0]):
      written.append(path)
  path = os.path.join(workdir, 'samples.png')
  samples_sheet(path, ablation, runs)
  written.append(path)
  return rows, written
