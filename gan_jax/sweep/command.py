"""`gan-jax sweep` (`gan_jax.sweep.run_sweep`): check everything, run what is not finished,
write the summaries.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence

from gan_jax.config_files import UsageError
from gan_jax.sweep.ablation import load_ablation, plan
from gan_jax.sweep.folders import conflict, run_state
from gan_jax.sweep.runner import Stopper, run_all
from gan_jax.sweep.spec import SweepResult, format_value, override_args
from gan_jax.sweep.summary import write_results


def run_sweep(
  spec: str,
  workdir: str,
  *,
  jobs: int = 1,
  dry_run: bool = False,
  cli_overrides: Sequence[str] = (),
  say: Callable[[str], None] = print,
  replicas: bool = False,
  summary_only: bool = False,
  seeds: Sequence[int] | None = None,
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
      program (`gan_jax.training.replicas`, for translation configs
      `gan_jax.translation.replicas`; in this process, so not with jobs > 1). The run folders
      are the same as without it, to float32 tolerance.
    summary_only: train nothing; rewrite the summaries from the run folders as they are
      (unfinished and missing runs are listed as such), e.g. for a variant that covers more
      runs than have been trained.
    seeds: only these of the ablation's seeds (e.g. the seeds missing from a study whose
      other seeds ran on another machine); the summaries then cover these seeds only. None:
      all of them.

  Returns:
    A `SweepResult`; `error_line()` sums up failed runs (the command exits 1 then).

  Raises:
    UsageError: a bad ablation file, override or run config, a bad `jobs`, a workdir that is a
      file, `seeds` not among the ablation's, or a run folder that holds a run of another
      config (see `conflict`); raised before anything runs or is written.
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
  if seeds is not None:
    ablation = dataclasses.replace(ablation, seeds=_chosen_seeds(seeds, ablation.seeds, spec))
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
    every_run = ' '.join(a[len('--config.') :] for a in override_args(ablation.overrides))
    say(f'  every run: {every_run or "-"}')
    if cli_overrides:
      say(f'  command line: {" ".join(cli_overrides)}')
    for i, (run, state) in enumerate(zip(runs, states)):
      what = {
        'done': f'done at step {state.step} (skip)',
        'unfinished': f'resume from step {state.step}',
        'new': 'new',
      }[state.status]
      cell_args = ' '.join(f'{k}={format_value(v)}' for k, v in run.cell.overrides) or '-'
      say(f'  [{i + 1}/{len(runs)}] {run.name}: {what}; {cell_args}')
    say('dry run: nothing was run or written.')
    return result

  os.makedirs(workdir, exist_ok=True)
  todo = []
  for i, (run, state) in enumerate(zip(runs, states)):
    if state.status == 'done':
      result.skipped.append(run.name)
      say(f'[{i + 1}/{len(runs)}] {run.name}: skipped (finished at step {state.step})')
    elif summary_only:
      say(f'[{i + 1}/{len(runs)}] {run.name}: not trained (--summary-only; {state.status})')
    else:
      todo.append((i, run))
  with Stopper() as stopper:
    result.failed = run_all(ablation, todo, len(runs), jobs, stopper, say, replicas)
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


def _chosen_seeds(seeds: Sequence[int], available: Sequence[int], spec: str) -> tuple[int, ...]:
  """`seeds` in the ablation's order, or UsageError for an empty list, a repeat or a seed the
  ablation does not have."""
  unknown = [s for s in seeds if s not in available]
  if not seeds or unknown or len(set(seeds)) != len(seeds):
    what = (
      f'{unknown} not among its seeds' if unknown else 'empty' if not seeds else 'repeats a seed'
    )
    raise UsageError(
      f'--seeds {",".join(map(str, seeds))}: {what}; {spec} has seeds '
      f'{",".join(map(str, available))} (give some of them, comma-separated).'
    )
  return tuple(s for s in available if s in seeds)
