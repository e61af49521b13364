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

Runs go one after another in this process (`gan_jax.training.train.train_and_evaluate`), or with
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

Modules: `spec` (the data: Ablation, Cell, Run, RunState, SweepResult), `ablation` (loading and
planning ablation files), `folders` (reading run folders), `runner` (running the runs),
`summary` (results.csv, results.md, plots), `command` (`run_sweep`). This package re-exports
their public names that callers use.
"""

from gan_jax.sweep.ablation import ABLATION_KEYS, load_ablation, parse_ablation, plan
from gan_jax.sweep.command import run_sweep
from gan_jax.sweep.folders import NEUTRAL_FIELDS, conflict, read_evals, run_state
from gan_jax.sweep.runner import train_command
from gan_jax.sweep.spec import Ablation, Cell, Run, RunState, SweepResult
from gan_jax.sweep.summary import (
  collect,
  markdown_table,
  plot_metric,
  samples_sheet,
  write_csv,
  write_results,
)

__all__ = [
  'ABLATION_KEYS',
  'Ablation',
  'Cell',
  'NEUTRAL_FIELDS',
  'Run',
  'RunState',
  'SweepResult',
  'collect',
  'conflict',
  'load_ablation',
  'markdown_table',
  'parse_ablation',
  'plan',
  'plot_metric',
  'read_evals',
  'run_state',
  'run_sweep',
  'samples_sheet',
  'train_command',
  'write_csv',
  'write_results',
]
