"""`gan-jax sweep`: run an ablation (a grid of config overrides x seeds) and summarise it.

    gan-jax sweep experiments/ablations/losses_fashion.py --workdir runs/losses_fashion \
        [--jobs 2] [--dry-run] [--config.train.steps=200 ...]

An ablation file defines `get_ablation(variant='')` returning a dict:

    base       str, required: the experiment config every run starts from, `path[:variant]`
               (e.g. 'experiments/fashion_mnist_dcgan.py' or '...dcgan.py:tiny'). A relative
               path is looked up beside the ablation file, then in each folder above it (so a
               path from the repository root works), then in the current folder.
    overrides  {config key: value}, optional: applied to every run, e.g. {'train.steps': 5000}.
    grid       {axis: {label: {config key: value}}}, required: at least one axis, each with at
               least one label. The cells are the cartesian product of the axes, in order; a
               cell applies the overrides of each of its labels. Two labels of one cell may not
               set the same key. Axis names and labels are letters, digits and `_ . + -`.
    seeds      [int, ...], optional (default [0]): every cell runs once per seed (`seed`).
    metrics    [str, ...], optional: evaluation results to report, named as training logs
               them without `eval/` (fid_lenet, kid_lenet, is_lenet, precision_lenet, ...). The
               first is plotted against the step. Default: every metric the runs logged.

Config keys are the dotted fields of `gan_jax/config.py`; values are Python values typed like
the field (tuples as tuples). Each value is applied exactly as `gan-jax train
--config.KEY=VALUE` would apply it, so an unknown key or a wrong type is a one-line error
before anything runs, and so is an invalid config (every run's config is validated first).
A run's config is: base, `overrides`, its cell's labels, `seed`, then the command line's
`--config.KEY=VALUE` arguments (for every run; they may not set `seed`).

What the sweep folder holds:

    <workdir>/<axis1>=<label>,<axis2>=<label>/seed_<s>/   a `gan-jax train` run folder each
                                                         (with --jobs > 1 also train.log)
    <workdir>/results.csv       one row per run: cell, axis labels, seed, status (done,
                                failed, unfinished, not_run), step, eval_step, each metric
                                from the run's last evaluation, wall_time_s and start_step
                                from its summary.json, error, workdir
    <workdir>/results.md        one row per cell: each metric as mean ± std over its finished
                                seeds, n, the step of those evaluations
    <workdir>/<m>_vs_step.png   the first metric (e.g. fid_lenet -> fid_vs_step.png) against
                                the step, one line per cell (mean over seeds); needs
                                matplotlib, else skipped with a warning
    <workdir>/samples.png       the final sample grid of each cell's first seed, labelled

Runs go one after another in this process (`gan_jax.train.train_and_evaluate`), or with
`--jobs N` as `gan-jax train` subprocesses, at most N at a time. Rerunning the same command
skips the finished runs (summary.json says the run reached `train.steps`, not stopped by a
signal, or stopped so but with its final evaluation logged) without touching their files,
and resumes the others from their latest checkpoint. A run folder that holds a run of another
config (any field but the few that do not change results, see `NEUTRAL_FIELDS`) or of more
steps is refused, with the differing fields, before anything runs: nothing is overwritten.
A failing run (an exception, or a nonzero exit status) is recorded in results.csv with its
error and the others go on; `gan-jax sweep` then exits 1. SIGINT or SIGTERM stops the sweep
after the runs in flight have checkpointed (they are sent SIGTERM once), writes the results
so far and exits 0; rerun to resume.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import difflib
import importlib.util
import io
import itertools
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections

from gan_jax import lifeline, run_lock
from gan_jax.config_files import UsageError, apply_overrides, load_config_file
from gan_jax.signals import StopOnSignal

ABLATION_KEYS = ('base', 'overrides', 'grid', 'seeds', 'metrics')
# Config fields that do not change what a run computes: an existing run folder may have been
# trained with other values of these (train.steps is checked on its own).
NEUTRAL_FIELDS = frozenset(
  {
    'data.data_dir',
    'data.cache',
    'data.download',
    'progress_bar',
    'log_every',
    'sample_every',
    'checkpoint_every',
    'keep_checkpoints',
    'train.steps',
    'eval.batch_size',
    'eval.cache_dir',
    'eval.inception_weights',
    'eval.download_inception',
    'eval.keep_best',
  }
)
_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.+-]*\Z')
_FIXED_COLUMNS = ('cell', 'seed', 'status', 'step', 'eval_step')
_TAIL_COLUMNS = ('wall_time_s', 'start_step', 'error', 'workdir')
_NOT_METRICS = ('eval_seconds', 'eval_samples_per_sec')
# Result key (without the network tag) -> the eval.metrics entry that computes it.
_FAMILY = {
  'fid': 'fid',
  'kid': 'kid',
  'kid_std': 'kid',
  'is': 'is',
  'is_std': 'is',
  'precision': 'pr',
  'recall': 'pr',
  'density': 'pr',
  'coverage': 'pr',
}


@dataclasses.dataclass(frozen=True)
class Ablation:
  """A parsed ablation file.

  Attributes:
    path: the ablation file, as given.
    variant: the variant passed to `get_ablation` ('' for none).
    base: the base config as an absolute `path[:variant]`.
    overrides: config key -> value, for every run.
    axes: ((axis, ((label, {key: value}), ...)), ...), in the file's order.
    seeds: the seeds, each cell runs once per seed.
    metrics: result keys to report, or None for all that were logged.
  """

  path: str
  variant: str
  base: str
  overrides: dict[str, Any]
  axes: tuple[tuple[str, tuple[tuple[str, dict[str, Any]], ...]], ...]
  seeds: tuple[int, ...]
  metrics: tuple[str, ...] | None


@dataclasses.dataclass(frozen=True, eq=False)
class Cell:
  """One point of the grid: a label per axis and the overrides they set (one object per cell,
  shared by its seeds' runs, compared by identity: override values may be unhashable lists)."""

  labels: tuple[tuple[str, str], ...]
  overrides: tuple[tuple[str, Any], ...]

  @property
  def name(self) -> str:
    """'axis1=label,axis2=label', also the cell's folder name."""
    return ','.join(f'{axis}={label}' for axis, label in self.labels)


@dataclasses.dataclass
class Run:
  """One training run: a cell and a seed.

  Attributes:
    cell: its grid cell.
    seed: its `config.seed`.
    workdir: `<sweep workdir>/<cell name>/seed_<seed>`.
    args: the `--config.KEY=VALUE` arguments that turn the base config into this run's config
      (what `gan-jax train --config BASE` is given).
    config: the run's config (base with `args` applied), validated.
  """

  cell: Cell
  seed: int
  workdir: str
  args: tuple[str, ...]
  config: ml_collections.ConfigDict

  @property
  def name(self) -> str:
    return f'{self.cell.name}/seed_{self.seed}'


@dataclasses.dataclass
class RunState:
  """What a run folder holds.

  Attributes:
    status: 'done' (reached train.steps), 'unfinished' (has a checkpoint or summary short of
      it: it resumes) or 'new' (nothing trained yet).
    step: the last step reached (summary.json's end_step or the latest checkpoint), or None.
    summary: summary.json's contents, or None.
  """

  status: str
  step: int | None
  summary: dict[str, Any] | None


@dataclasses.dataclass
class SweepResult:
  """What `run_sweep` did.

  Attributes:
    runs: every run of the grid, in order.
    rows: the rows of results.csv (empty for a dry run).
    failed: run name -> one-line error, for the runs that failed in this invocation.
    skipped: names of the runs found finished and left alone.
    stopped_by: the signal that stopped the sweep early ('SIGINT', 'SIGTERM'), or None.
    files: the summary files written.
  """

  runs: list[Run]
  rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
  failed: dict[str, str] = dataclasses.field(default_factory=dict)
  skipped: list[str] = dataclasses.field(default_factory=list)
  stopped_by: str | None = None
  files: list[str] = dataclasses.field(default_factory=list)

  def error_line(self, workdir: str) -> str | None:
    """One line summing up the failures, or None if no run failed."""
    if not self.failed:
      return None
    name, error = next(iter(self.failed.items()))
    more = f' (and {len(self.failed) - 1} more)' if len(self.failed) > 1 else ''
    return (
      f'{len(self.failed)} of {len(self.runs)} runs failed: {name}: {_clip(error, 300)}{more}; '
      f'errors in {os.path.join(workdir, "results.csv")}.'
    )


# ----------------------------------------------------------------------------------------------
# Loading and planning.


def _clip(text: str, n: int) -> str:
  text = ' '.join(str(text).split())
  return text if len(text) <= n else text[: n - 3] + '...'


def _resolve_base(base: str, ablation_path: str) -> str | None:
  """Absolute `path[:variant]` of the base config, or None if no such file is found."""
  path, colon, variant = base.partition(':')
  if os.path.isabs(path):
    candidates = [path]
  else:
    folder = os.path.dirname(os.path.abspath(ablation_path))
    candidates = []
    while True:
      candidates.append(os.path.join(folder, path))
      parent = os.path.dirname(folder)
      if parent == folder:
        break
      folder = parent
    candidates.append(os.path.abspath(path))
  for candidate in candidates:
    if os.path.isfile(candidate):
      return os.path.normpath(candidate) + colon + variant
  return None


def _check_overrides(value: Any, where: str) -> dict[str, Any]:
  if value is None:
    return {}
  if not isinstance(value, dict):
    raise UsageError(f'{where} must be a dict of config key -> value, got {type(value).__name__}.')
  for key in value:
    if not isinstance(key, str) or not key:
      raise UsageError(f'{where}: config keys must be strings such as "train.loss", got {key!r}.')
    if key == 'seed':
      raise UsageError(f"{where} sets 'seed'; give the seeds as the ablation's 'seeds' list.")
  return dict(value)


def _check_name(name: Any, what: str, where: str) -> str:
  if not isinstance(name, str) or not _NAME.match(name):
    raise UsageError(
      f'{where}: {what} {name!r} is not a valid name: use letters, digits and _ . + - '
      '(it becomes part of a folder name).'
    )
  return name


def parse_ablation(spec: Any, path: str, variant: str = '') -> Ablation:
  """Checks what `get_ablation()` returned and turns it into an `Ablation`.

  Args:
    spec: the returned dict (see the module docstring).
    path: the ablation file, for messages and to resolve `base`.
    variant: the variant it was called with.

  Raises:
    UsageError: naming the file and the first problem found.
  """
  where = path
  if not isinstance(spec, dict):
    raise UsageError(
      f'{where}: get_ablation() returned {type(spec).__name__}, not a dict with the keys '
      f'{", ".join(ABLATION_KEYS)}.'
    )
  for key in spec:
    if key not in ABLATION_KEYS:
      close = difflib.get_close_matches(str(key), ABLATION_KEYS, n=1)
      hint = f' Did you mean {close[0]!r}?' if close else ''
      raise UsageError(
        f'{where}: unknown ablation key {key!r}; known: {", ".join(ABLATION_KEYS)}.{hint}'
      )
  base = spec.get('base')
  if not isinstance(base, str) or not base:
    raise UsageError(
      f"{where}: 'base' must name the config file the runs start from, e.g. "
      "'experiments/fashion_mnist_dcgan.py'."
    )
  resolved = _resolve_base(base, path)
  if resolved is None:
    raise UsageError(
      f'{where}: base config {base.partition(":")[0]!r} not found beside the ablation file, in '
      'a folder above it, or in the current folder.'
    )
  overrides = _check_overrides(spec.get('overrides'), f"{where}: 'overrides'")
  grid = spec.get('grid')
  if not isinstance(grid, dict) or not grid:
    raise UsageError(
      f"{where}: 'grid' is empty or missing: give at least one axis with at least one label, "
      "e.g. {'loss': {'hinge': {'train.loss': 'hinge'}}}."
    )
  axes = []
  for axis, labels in grid.items():
    _check_name(axis, 'axis', where)
    if axis in _FIXED_COLUMNS + _TAIL_COLUMNS:
      raise UsageError(f'{where}: axis name {axis!r} is reserved for a results.csv column.')
    if not isinstance(labels, dict) or not labels:
      raise UsageError(
        f'{where}: grid axis {axis!r} has no labels: give a dict of label -> overrides.'
      )
    entries = []
    for label, label_overrides in labels.items():
      _check_name(label, f'label of axis {axis!r}', where)
      entries.append(
        (label, _check_overrides(label_overrides, f'{where}: grid[{axis!r}][{label!r}]'))
      )
    axes.append((axis, tuple(entries)))
  seeds = spec.get('seeds', [0])
  if (
    not isinstance(seeds, (list, tuple))
    or not seeds
    or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
  ):
    raise UsageError(f"{where}: 'seeds' must be a non-empty list of integers, got {seeds!r}.")
  if len(set(seeds)) != len(seeds):
    raise UsageError(f"{where}: 'seeds' repeats a seed: {list(seeds)}.")
  metrics = spec.get('metrics')
  if metrics is not None:
    if isinstance(metrics, str):
      metrics = metrics.split(',')
    if not isinstance(metrics, (list, tuple)) or not all(
      isinstance(m, str) and m.strip() for m in metrics
    ):
      raise UsageError(
        f"{where}: 'metrics' must be a list of result names such as ['fid_lenet', "
        f"'kid_lenet'], got {metrics!r}."
      )
    metrics = tuple(dict.fromkeys(m.strip().removeprefix('eval/') for m in metrics))
    if not metrics:
      metrics = None
  return Ablation(
    path=path,
    variant=variant,
    base=resolved,
    overrides=overrides,
    axes=tuple(axes),
    seeds=tuple(seeds),
    metrics=metrics,
  )


def load_ablation(spec: str) -> Ablation:
  """Loads `path.py` or `path.py:variant` and parses its `get_ablation([variant])`.

  Raises:
    UsageError: the file is missing, fails to load, has no get_ablation, get_ablation fails,
      or what it returns is malformed (see `parse_ablation`).
  """
  path, _, variant = spec.partition(':')
  if not os.path.isfile(path):
    raise UsageError(
      f'ablation file {path!r} not found (give a path such as '
      'experiments/ablations/losses_fashion.py).'
    )
  module_spec = importlib.util.spec_from_file_location('_gan_jax_ablation', path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except Exception as e:  # pylint: disable=broad-except
    raise UsageError(f'ablation file {path!r} failed to load: {type(e).__name__}: {e}') from e
  if not hasattr(module, 'get_ablation'):
    hint = (
      ' (it defines get_config: that is a config file for `gan-jax train --config`)'
      if hasattr(module, 'get_config')
      else ''
    )
    raise UsageError(f'ablation file {path!r} defines no get_ablation() function{hint}.')
  try:
    returned = module.get_ablation(variant) if variant else module.get_ablation()
  except Exception as e:  # pylint: disable=broad-except
    raise UsageError(f'{path}: get_ablation({variant!r}) failed: {type(e).__name__}: {e}') from e
  return parse_ablation(returned, path, variant)


def _format_value(value: Any) -> str:
  """A Python value as `--config.KEY=` text that `apply_overrides` parses back to it."""
  if isinstance(value, bool):
    return 'true' if value else 'false'
  if value is None:
    return 'none'
  if isinstance(value, str):
    return value
  if isinstance(value, (list, tuple)):
    return repr(tuple(value))
  return repr(value)


def _args(overrides: dict[str, Any] | Sequence[tuple[str, Any]]) -> list[str]:
  items = overrides.items() if isinstance(overrides, dict) else overrides
  return [f'--config.{key}={_format_value(value)}' for key, value in items]


def _check_metrics(config: ml_collections.ConfigDict, metrics: Sequence[str], where: str) -> None:
  """Raises UsageError if `config` does not evaluate every result key in `metrics`."""
  from gan_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  from gan_jax.metrics import evaluate  # pylint: disable=g-import-not-at-top

  if not config.eval_every:
    raise UsageError(
      f'{where}: eval_every=0 (evaluation off), but the ablation reports metrics '
      f'{", ".join(metrics)}; set eval_every > 0.'
    )
  try:
    enabled = evaluate.parse_metrics(config.eval.metrics)
    net = evaluate.resolve_feature_net_name(config.eval.feature_net, config.data.name)
  except ConfigError as e:
    raise UsageError(f'{where}: eval.{e}') from None
  tag = 'inception' if net == 'inception_v3' else 'lenet'
  available = {'modes_covered': 'modes', 'modes_kl': 'modes'}
  for family_key, family in _FAMILY.items():
    stem, _, suffix = family_key.partition('_')
    available[f'{stem}_{tag}' + (f'_{suffix}' if suffix else '')] = family
  if config.eval.get('raw_generator') and config.train.ema_decay > 0:  # eval/raw_<metric>
    available.update({f'raw_{k}': v for k, v in available.items()})
  for metric in metrics:
    if metric not in available:
      known = ', '.join(k for k in available if not k.endswith('_std'))
      raise UsageError(
        f'{where}: metric {metric!r} is never computed here (feature net {net}); results are '
        f'named {known}.'
      )
    if available[metric] not in enabled:
      raise UsageError(
        f'{where}: metric {metric!r} needs {available[metric]!r} in eval.metrics, which is '
        f'{config.eval.metrics!r}.'
      )


def plan(ablation: Ablation, workdir: str, cli_overrides: Sequence[str] = ()) -> list[Run]:
  """Expands an ablation into its runs and checks every run's config before anything runs.

  Args:
    ablation: a parsed ablation file.
    workdir: the sweep folder.
    cli_overrides: `--config.KEY=VALUE` arguments applied to every run, last.

  Returns:
    The runs, cell by cell (axes in order, the last one fastest), seeds innermost.

  Raises:
    UsageError: a missing base config, an unknown key or a wrongly typed value in any
      override (naming where it is), `seed` on the command line, two labels of one cell that
      set the same key, an invalid run config, or metrics that a run does not compute.
  """
  from gan_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from gan_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top

  base_config = load_config_file(ablation.base)
  cli = list(cli_overrides)
  if any(a == '--config.seed' or a.startswith('--config.seed=') for a in cli):
    raise UsageError(
      f"--config.seed would give every run one seed; the seeds are the ablation's 'seeds' "
      f'({list(ablation.seeds)}).'
    )
  apply_overrides(copy.deepcopy(base_config), cli)  # names a bad key as `gan-jax train` does
  path = ablation.path

  def check(args: list[str], where: str) -> None:
    try:
      apply_overrides(copy.deepcopy(base_config), args)
    except UsageError as e:
      raise UsageError(f'{path}: {where}: {e}') from None

  common = _args(ablation.overrides)
  check(common, "'overrides'")
  for axis, labels in ablation.axes:
    for label, overrides in labels:
      check(_args(overrides), f'grid[{axis!r}][{label!r}]')

  runs = []
  for combo in itertools.product(*(labels for _, labels in ablation.axes)):
    setter: dict[str, str] = {}
    pairs: list[tuple[str, Any]] = []
    labels = tuple((axis, label) for (axis, _), (label, _) in zip(ablation.axes, combo))
    for (axis, label), (_, overrides) in zip(labels, combo):
      for key, value in overrides.items():
        if key in setter:
          raise UsageError(
            f'{path}: cell {",".join(f"{a}={b}" for a, b in labels)}: {key} is set by both '
            f'{setter[key]} and {axis}={label}.'
          )
        setter[key] = f'{axis}={label}'
        pairs.append((key, value))
    cell = Cell(labels=labels, overrides=tuple(pairs))
    for seed in ablation.seeds:
      args = tuple(common + _args(pairs) + [f'--config.seed={seed}'] + cli)
      config = apply_overrides(copy.deepcopy(base_config), args)
      where = f'{path}: cell {cell.name} seed {seed}'
      try:
        config_lib.validate(config)
      except ConfigError as e:
        raise UsageError(f'{where}: {e}') from None
      if ablation.metrics:
        _check_metrics(config, ablation.metrics, where)
      runs.append(
        Run(
          cell=cell,
          seed=seed,
          workdir=os.path.join(workdir, cell.name, f'seed_{seed}'),
          args=args,
          config=config,
        )
      )
  return runs


# ----------------------------------------------------------------------------------------------
# Reading run folders.


def _read_json(path: str) -> Any:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _latest_checkpoint(workdir: str) -> int | None:
  folder = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(folder):
    return None
  steps = [int(n) for n in os.listdir(folder) if n.isdigit()]
  return max(steps) if steps else None


def read_evals(workdir: str) -> list[tuple[int, dict[str, float]]]:
  """[(step, {metric: value})] of every evaluation in `<workdir>/metrics.jsonl`, in order.

  Metric names lose their `eval/` prefix; a line that does not parse (cut short by a crash)
  is skipped; a missing file gives [].
  """
  out = []
  try:
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      lines = f.readlines()
  except OSError:
    return out
  for line in lines:
    try:
      entry = json.loads(line)
    except ValueError:
      continue
    values = {k[len('eval/') :]: v for k, v in entry.items() if k.startswith('eval/')}
    if values and isinstance(entry.get('step'), int):
      out.append((entry['step'], values))
  return out


def run_state(run: Run) -> RunState:
  """Whether `run` is done, unfinished or new, from the files in its folder.

  Done: summary.json's end_step equals train.steps and the run was not stopped by a signal,
  or it was but its final evaluation is logged (or evaluation is off).
  """
  steps = run.config.train.steps
  summary = _read_json(os.path.join(run.workdir, 'summary.json'))
  summary = summary if isinstance(summary, dict) else None
  end = summary.get('end_step') if summary else None
  latest = max([s for s in (end, _latest_checkpoint(run.workdir)) if isinstance(s, int)] or [-1])
  if end == steps:
    final_logged = not run.config.eval_every or any(s == steps for s, _ in read_evals(run.workdir))
    if not summary.get('stopped_by_signal') or final_logged:
      return RunState('done', end, summary)
  if latest >= 0:
    return RunState('unfinished', latest, summary)
  return RunState('new', None, summary)


def _flatten(d: dict[str, Any], prefix: str = '') -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def conflict(run: Run) -> str | None:
  """Why `run`'s folder cannot be resumed or reused as this run, or None.

  Its config.json (if any) must equal the run's config in every field both have, but
  `NEUTRAL_FIELDS`, and it must not have trained past train.steps.
  """
  recorded = _read_json(os.path.join(run.workdir, 'config.json'))
  if isinstance(recorded, dict):
    old = _flatten(recorded)
    new = _flatten(json.loads(run.config.to_json()))
    changed = [
      f'{k}: {old[k]!r} -> {new[k]!r}'
      for k in sorted(set(old) & set(new))
      if k not in NEUTRAL_FIELDS and old[k] != new[k]
    ]
    if changed:
      return f'it was trained with another config ({"; ".join(changed)})'
  state = run_state(run)
  if state.step is not None and state.step > run.config.train.steps:
    return f'it was trained to step {state.step}, past train.steps={run.config.train.steps}'
  return None


# ----------------------------------------------------------------------------------------------
# Running.


class _Stopper(StopOnSignal):
  """SIGINT/SIGTERM: stop starting runs, send SIGTERM once to each run in flight.

  In-process runs install their own handler while they train (and restore this one after).
  A second signal of the same kind gets the handler that was there before. Only installed
  from the main thread.
  """

  def __init__(self):
    super().__init__()
    self.procs: list[subprocess.Popen] = []

  def _handle(self, signum, frame):
    super()._handle(signum, frame)
    for proc in self.procs:
      if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)


def _train_in_process(run: Run) -> str | None:
  """Trains `run` here; returns None, or the one-line error it failed with."""
  from gan_jax import train  # pylint: disable=g-import-not-at-top

  try:
    train.train_and_evaluate(copy.deepcopy(run.config), run.workdir)
  except Exception as e:  # pylint: disable=broad-except  (recorded; the sweep goes on)
    return _clip(f'{type(e).__name__}: {e}', 1000)
  return None


def _train_replicas_in_process(runs: Sequence[Run]) -> str | None:
  """Trains the seeds of one cell as replicas of one compiled program (`gan_jax.replicas`);
  returns None, or the one-line error they failed with."""
  from gan_jax import replicas  # pylint: disable=g-import-not-at-top

  try:
    replicas.train_replicas([copy.deepcopy(r.config) for r in runs], [r.workdir for r in runs])
  except Exception as e:  # pylint: disable=broad-except  (recorded; the sweep goes on)
    return _clip(f'{type(e).__name__}: {e}', 1000)
  return None


def _log_error(log_path: str, returncode: int) -> str:
  """The `gan-jax: error:` line of a failed subprocess's log, else its last line."""
  try:
    with open(log_path, errors='replace') as f:
      lines = [line.strip() for line in f if line.strip()]
  except OSError:
    lines = []
  for line in reversed(lines):
    if line.startswith('gan-jax: error: '):
      return _clip(line[len('gan-jax: error: ') :], 1000)
  last = f': {_clip(lines[-1], 900)}' if lines else ''
  return f'exit status {returncode}{last} (log: {log_path})'


def train_command(ablation: Ablation, run: Run) -> list[str]:
  """The `gan-jax train` command line of `run` (with this Python, as `-m gan_jax.main`)."""
  return [
    sys.executable,
    '-m',
    'gan_jax.main',
    'train',
    '--config',
    ablation.base,
    '--workdir',
    os.path.abspath(run.workdir),
    *run.args,
  ]


def _run_all(
  ablation: Ablation,
  todo: list[tuple[int, Run]],
  total: int,
  jobs: int,
  stopper: _Stopper,
  say: Callable[[str], None],
  replicas: bool = False,
) -> dict[str, str]:
  """Runs `todo` (index, run) in process (jobs=1; with `replicas` each cell's seeds as one
  compiled program) or as subprocesses; returns the failures."""
  failed: dict[str, str] = {}

  def finished(i: int, run: Run, error: str | None, seconds: float) -> None:
    tag = f'[{i + 1}/{total}] {run.name}'
    if error is not None:
      failed[run.name] = error
      say(f'{tag}: FAILED after {seconds:.1f} s: {_clip(error, 300)}')
      return
    state = run_state(run)
    if state.status == 'done':
      say(f'{tag}: done in {seconds:.1f} s')
    else:
      stopper.received = stopper.received or 'a signal'
      say(f'{tag}: stopped at step {state.step} (checkpoint kept; rerun to resume)')

  if replicas:
    groups: list[list[tuple[int, Run]]] = []
    for i, run in todo:  # the unfinished seeds of each cell, in order
      if groups and groups[-1][0][1].cell is run.cell:
        groups[-1].append((i, run))
      else:
        groups.append([(i, run)])
    for group in groups:
      if stopper.received:
        break
      runs = [run for _, run in group]
      say(
        f'[{group[0][0] + 1}-{group[-1][0] + 1}/{total}] {runs[0].cell.name}: training seeds '
        f'{", ".join(str(r.seed) for r in runs)} as {len(runs)} replicas in one program '
        f'({", ".join(_describe(r) for r in runs)})'
      )
      t0 = time.perf_counter()
      error = _train_replicas_in_process(runs)
      for i, run in group:
        finished(i, run, error, time.perf_counter() - t0)
    return failed

  if jobs == 1:
    for i, run in todo:
      if stopper.received:
        break
      say(f'[{i + 1}/{total}] {run.name}: training ({_describe(run)})')
      t0 = time.perf_counter()
      error = _train_in_process(run)
      finished(i, run, error, time.perf_counter() - t0)
    return failed

  queue = list(todo)
  running: dict[subprocess.Popen, tuple[int, Run, Any, float]] = {}
  try:
    while queue or running:
      while queue and len(running) < jobs and not stopper.received:
        i, run = queue.pop(0)
        busy = run_lock.busy(run.workdir)  # still trained by another process: leave it be
        if busy is not None:
          finished(i, run, busy, 0.0)
          continue
        what = _describe(run)
        os.makedirs(run.workdir, exist_ok=True)
        log_path = os.path.join(run.workdir, 'train.log')
        command = train_command(ablation, run)
        log_file = open(log_path, 'a')  # pylint: disable=consider-using-with
        log_file.write(
          f'# {time.strftime("%Y-%m-%d %H:%M:%S")} gan-jax sweep: ' + ' '.join(command) + '\n'
        )
        log_file.flush()
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
          command,
          stdout=log_file,
          stderr=subprocess.STDOUT,
          stdin=subprocess.DEVNULL,
          env=lifeline.child_env(),  # the child stops when the sweep dies, even by SIGKILL
          start_new_session=True,  # a terminal's Ctrl-C reaches the sweep, which forwards it once
        )
        stopper.procs.append(proc)
        running[proc] = (i, run, log_file, time.perf_counter())
        say(f'[{i + 1}/{total}] {run.name}: training in pid {proc.pid} ({what}; log {log_path})')
      for proc in [p for p in running if p.poll() is not None]:
        i, run, log_file, t0 = running.pop(proc)
        log_file.close()
        stopper.procs.remove(proc)
        error = None if proc.returncode == 0 else _log_error(log_file.name, proc.returncode)
        finished(i, run, error, time.perf_counter() - t0)
      if running:
        time.sleep(0.2)
      elif stopper.received:
        break
  finally:
    for proc, (_, _, log_file, _) in running.items():  # only on an exception here
      proc.terminate()
      proc.wait()
      log_file.close()
  return failed


def _describe(run: Run) -> str:
  state = run_state(run)
  return f'resuming from step {state.step}' if state.status == 'unfinished' else 'new'


# ----------------------------------------------------------------------------------------------
# Results.


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
  return ['cell', *axes, 'seed', 'status', 'step', 'eval_step', *metrics, *_TAIL_COLUMNS]


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
  common = ' '.join(f'`{a[len("--config.") :]}`' for a in _args(ablation.overrides)) or 'none'
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


# ----------------------------------------------------------------------------------------------
# The command.


def run_sweep(
  spec: str,
  workdir: str,
  *,
  jobs: int = 1,
  dry_run: bool = False,
  cli_overrides: Sequence[str] = (),
  say: Callable[[str], None] = print,
  replicas: bool = False,
) -> SweepResult:
  """Runs (or with `dry_run` lists) every run of an ablation and writes the summaries.

  Args:
    spec: the ablation file, `path.py` or `path.py:variant`.
    workdir: the sweep folder (created if missing).
    jobs: 1 runs the runs one after another in this process; N > 1 runs them as `gan-jax
      train` subprocesses, at most N at a time.
    dry_run: only print the runs, their state and their overrides; nothing is run or written.
    cli_overrides: `--config.KEY=VALUE` arguments applied to every run, last.
    say: where progress lines go.
    replicas: train the unfinished seeds of each cell together, as replicas of one compiled
      program (`gan_jax.replicas`; in this process, so not with jobs > 1). The run folders
      are the same as without it, to float32 tolerance.

  Returns:
    A `SweepResult`; `error_line()` sums up failed runs (the command exits 1 then).

  Raises:
    UsageError: a bad ablation file, override or run config, a bad `jobs`, a workdir that is a
      file, or a run folder that holds a run of another config (see `conflict`); raised before
      anything runs or is written.
  """
  if jobs < 1:
    raise UsageError(f'--jobs={jobs} must be at least 1.')
  if replicas and jobs > 1:
    raise UsageError(
      f'--replicas trains in this process, one cell at a time: drop --jobs={jobs} or --replicas.'
    )
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise UsageError(f'--workdir {workdir!r} is a file, not a folder.')
  ablation = load_ablation(spec)
  runs = plan(ablation, workdir, cli_overrides)
  problems = [(run, reason) for run in runs if (reason := conflict(run)) is not None]
  if problems:
    run, reason = problems[0]
    more = f' (and {len(problems) - 1} more runs)' if len(problems) > 1 else ''
    raise UsageError(
      f'{run.workdir}: {reason}{more}; set the ablation or --config overrides back, or use a '
      'new --workdir (finished runs are never overwritten).'
    )
  states = [run_state(run) for run in runs]
  n_cells = len(runs) // len(ablation.seeds)
  result = SweepResult(runs=runs)
  say(
    f'sweep {spec}: {n_cells} cells x {len(ablation.seeds)} seeds = {len(runs)} runs in '
    f'{workdir}'
    + (
      ''
      if dry_run
      else f' ({jobs} at a time)'
      if jobs > 1
      else ' (in process, seeds as replicas)'
      if replicas
      else ' (in process)'
    )
  )
  if dry_run:
    base = os.path.relpath(ablation.base.partition(':')[0])
    variant = ablation.base.partition(':')[2]
    say(f'  base: {base}{":" + variant if variant else ""}')
    say(f'  every run: {" ".join(a[len("--config.") :] for a in _args(ablation.overrides)) or "-"}')
    if cli_overrides:
      say(f'  command line: {" ".join(cli_overrides)}')
    for i, (run, state) in enumerate(zip(runs, states)):
      what = {
        'done': f'done at step {state.step} (skip)',
        'unfinished': f'resume from step {state.step}',
        'new': 'new',
      }[state.status]
      cell_args = ' '.join(f'{k}={_format_value(v)}' for k, v in run.cell.overrides) or '-'
      say(f'  [{i + 1}/{len(runs)}] {run.name}: {what}; {cell_args}')
    say('dry run: nothing was run or written.')
    return result

  os.makedirs(workdir, exist_ok=True)
  todo = []
  for i, (run, state) in enumerate(zip(runs, states)):
    if state.status == 'done':
      result.skipped.append(run.name)
      say(f'[{i + 1}/{len(runs)}] {run.name}: skipped (finished at step {state.step})')
    else:
      todo.append((i, run))
  with _Stopper() as stopper:
    result.failed = _run_all(ablation, todo, len(runs), jobs, stopper, say, replicas)
    result.stopped_by = stopper.received
  rows, written = write_results(workdir, ablation, runs, result.failed, cli_overrides)
  result.rows, result.files = rows, written
  counts = {
    s: sum(r['status'] == s for r in rows) for s in ('done', 'failed', 'unfinished', 'not_run')
  }
  say(
    f'{counts["done"]} of {len(runs)} runs done ({len(result.skipped)} skipped as finished), '
    f'{counts["failed"]} failed, {counts["unfinished"] + counts["not_run"]} not finished; '
    f'wrote {", ".join(written)}'
  )
  if result.stopped_by:
    say(f'stopped by {result.stopped_by}: run the same command again to resume.')
  return result
