"""The data of a sweep (`gan_jax.sweep`): the parsed ablation, its cells and runs, what a run
folder holds, what `run_sweep` did; and how config overrides become `--config.KEY=VALUE`
arguments.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import ml_collections


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
      f'{len(self.failed)} of {len(self.runs)} runs failed: {name}: {clip(error, 300)}{more}; '
      f'errors in {os.path.join(workdir, "results.csv")}.'
    )


def clip(text: str, n: int) -> str:
  """`text` on one line (whitespace runs made one space), cut to `n` characters with '...'."""
  text = ' '.join(str(text).split())
  return text if len(text) <= n else text[: n - 3] + '...'


def format_value(value: Any) -> str:
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


def override_args(overrides: dict[str, Any] | Sequence[tuple[str, Any]]) -> list[str]:
  """The `--config.KEY=VALUE` arguments that apply `overrides` (in order)."""
  items = overrides.items() if isinstance(overrides, dict) else overrides
  return [f'--config.{key}={format_value(value)}' for key, value in items]
