"""`gan-jax sweep`: the tiny loss ablation end to end on real Fashion-MNIST, reruns that skip
finished runs, --jobs subprocesses, dry runs, failing runs and bad ablation files."""

import csv
import json
import math
import os
import shutil
import sys

import pytest
from PIL import Image

import jax
import numpy as np

from gan_jax.cli import main as cli
from gan_jax import sweep
from gan_jax.training.checkpoint import load_run

from conftest import REPO

ABLATION = str(REPO / 'experiments' / 'ablations' / 'losses_fashion.py')
TINY = ABLATION + ':tiny'
BASE_TINY = str(REPO / 'experiments' / 'fashion_mnist_dcgan.py') + ':tiny'
CELLS = [
  f'loss={loss},ema={ema}' for loss in ('non_saturating', 'least_squares') for ema in ('off', 'on')
]
RUNS = [f'{cell}/seed_{seed}' for cell in CELLS for seed in (0, 1)]


def _sweep(capsys, workdir, *extra, spec=TINY, data_dir=None):
  argv = ['sweep', spec, '--workdir', str(workdir), *extra]
  if data_dir:
    argv.append(f'--config.data.data_dir={data_dir}')
  code = cli.main(argv)
  out = capsys.readouterr()
  return code, out.out, out.err


def _one_line_error(capsys, argv, *fragments):
  assert cli.main(argv) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith('gan-jax: error: ') and '\n' not in err, err
  for fragment in fragments:
    assert fragment in err, err
  return err


def _rows(workdir):
  with open(workdir / 'results.csv', newline='') as f:
    return list(csv.DictReader(f))


def _mtimes(folder):
  """{relative path: mtime_ns} of every file and folder under `folder`."""
  out = {}
  for root, dirs, files in os.walk(folder):
    for name in dirs + files:
      path = os.path.join(root, name)
      out[os.path.relpath(path, folder)] = os.stat(path).st_mtime_ns
  return out


@pytest.fixture(scope='module')
def tiny_sweep(tfds_dir, tmp_path_factory):
  """The tiny ablation (2 losses x EMA off/on x 2 seeds, 2 steps each), run once in process."""
  workdir = tmp_path_factory.mktemp('sweep') / 'losses_tiny'
  code = cli.main(['sweep', TINY, '--workdir', str(workdir), f'--config.data.data_dir={tfds_dir}'])
  assert code == 0
  return workdir


def test_tiny_ablation_runs_every_cell_and_summarises(tiny_sweep):
  rows = _rows(tiny_sweep)
  assert [f'{r["cell"]}/seed_{r["seed"]}' for r in rows] == RUNS
  for row in rows:
    assert row['status'] == 'done' and row['error'] == ''
    assert int(row['step']) == 2 and int(row['eval_step']) == 2
    assert math.isfinite(float(row['fid_lenet'])) and float(row['fid_lenet']) > 0
    assert math.isfinite(float(row['kid_lenet']))
    assert float(row['wall_time_s']) > 0
    assert row['loss'] in ('non_saturating', 'least_squares') and row['ema'] in ('off', 'on')
  # eval.raw_generator: an EMA-on run also scores its raw generator, which is the generator of
  # the same run with the EMA off (the EMA never feeds back into training).
  by_run = {(r['loss'], r['ema'], r['seed']): r for r in rows}
  for loss in ('non_saturating', 'least_squares'):
    for seed in ('0', '1'):
      on = tiny_sweep / f'loss={loss},ema=on' / f'seed_{seed}'
      raw = [e for s, e in sweep.read_evals(str(on)) if s == 2][0]
      off = float(by_run[(loss, 'off', seed)]['fid_lenet'])
      assert math.isclose(raw['raw_fid_lenet'], off, rel_tol=1e-2), (loss, seed, raw, off)
      assert raw['raw_fid_lenet'] != raw['fid_lenet']  # and the EMA one is another generator
      off_evals = sweep.read_evals(str(tiny_sweep / f'loss={loss},ema=off' / f'seed_{seed}'))
      assert not any(k.startswith('raw_') for _, e in off_evals for k in e)  # no EMA: no raw_
  # The overrides reached the runs: each run folder's config is its cell's.
  with open(tiny_sweep / 'loss=least_squares,ema=on' / 'seed_1' / 'config.json') as f:
    config = json.load(f)
  assert config['seed'] == 1 and config['train']['loss'] == 'least_squares'
  assert config['train']['ema_decay'] == 0.999 and config['train']['steps'] == 2
  assert config['eval']['metrics'] == 'fid,kid' and config['eval_num_samples'] == 256

  md = (tiny_sweep / 'results.md').read_text()
  table = [line for line in md.splitlines() if line.startswith('| ')]
  assert table[0].startswith('| loss | ema | step | n | FID (LeNet) | KID (LeNet) |')
  assert len(table) == 1 + len(CELLS)
  for line, cell in zip(table[1:], CELLS):
    loss, ema = (part.split('=')[1] for part in cell.split(','))
    cols = [c.strip() for c in line.strip('|').split('|')]
    assert cols[:4] == [loss, ema, '2', '2'], line
    assert '±' in cols[4] and '±' in cols[5], line
  assert 'sample standard deviation' in md

  for name in ('fid_vs_step.png', 'samples.png'):
    with Image.open(tiny_sweep / name) as img:
      img.verify()
  final = tiny_sweep / 'loss=least_squares,ema=on' / 'seed_0' / 'samples' / 'step_0000002.png'
  with Image.open(tiny_sweep / 'samples.png') as sheet, Image.open(final) as grid:
    # 2 rows (the losses) x 2 columns (EMA off, on), each tile a run's final grid.
    assert sheet.width >= 2 * grid.width and sheet.height >= 2 * grid.height


def test_rerun_skips_finished_runs_and_dry_run_changes_nothing(tiny_sweep, tfds_dir, capsys):
  before = _mtimes(tiny_sweep)
  code, out, _ = _sweep(capsys, tiny_sweep, data_dir=tfds_dir)
  assert code == 0
  assert out.count('skipped (finished at step 2)') == len(RUNS)
  assert 'training' not in out
  after = _mtimes(tiny_sweep)
  for path, mtime in before.items():  # every run file untouched (only the summaries rewritten)
    if os.sep in path:
      assert after[path] == mtime, path
  assert set(after) == set(before)

  code, out, _ = _sweep(capsys, tiny_sweep, '--dry-run', data_dir=tfds_dir)
  assert code == 0 and out.count('(skip)') == len(RUNS)
  assert _mtimes(tiny_sweep) == after


def test_summary_only_tabulates_the_folders_as_they_are_and_trains_nothing(
  tiny_sweep, tfds_dir, tmp_path, capsys
):
  workdir = tmp_path / 'partial'
  shutil.copytree(tiny_sweep, workdir)
  missing = 'loss=least_squares,ema=on/seed_1'
  shutil.rmtree(workdir / missing)
  before = _mtimes(workdir)
  code, out, _ = _sweep(capsys, workdir, '--summary-only', data_dir=tfds_dir)
  assert code == 0, out
  assert 'training' not in out and f'{missing}: not trained (--summary-only; new)' in out
  after = _mtimes(workdir)
  assert not (workdir / missing).exists()
  for path, mtime in before.items():  # run files untouched, only the summaries rewritten
    if os.sep in path:
      assert after[path] == mtime, path
  status = {f"{r['cell']}/seed_{r['seed']}": r['status'] for r in _rows(workdir)}
  assert status == {run: 'not_run' if run == missing else 'done' for run in RUNS}
  want = {(r['cell'], r['seed']): r['fid_lenet'] for r in _rows(tiny_sweep)}
  for r in _rows(workdir):
    if f"{r['cell']}/seed_{r['seed']}" != missing:
      assert r['fid_lenet'] == want[(r['cell'], r['seed'])]


def test_replicas_train_each_cells_seeds_in_one_program_with_the_same_results(
  tiny_sweep, tfds_dir, tmp_path, capsys
):
  workdir = tmp_path / 'replicated'
  code, out, _ = _sweep(capsys, workdir, '--replicas', data_dir=tfds_dir)
  assert code == 0, out
  assert out.count('as 2 replicas in one program') == len(CELLS)
  got, want = _rows(workdir), _rows(tiny_sweep)
  assert [(r['cell'], r['seed'], r['status']) for r in got] == [
    (r['cell'], r['seed'], r['status']) for r in want
  ]
  for g, w in zip(got, want):
    # The weights agree to ~1e-6 (float32; vmap reorders sums); FID of 256 samples (a matrix
    # square root of a nearly singular covariance) amplifies that to ~0.2%.
    for metric in ('fid_lenet', 'kid_lenet'):
      close = math.isclose(float(g[metric]), float(w[metric]), rel_tol=1e-2, abs_tol=1e-3)
      assert close, (g['cell'], g['seed'], metric, g[metric], w[metric])
  for run in RUNS:
    a, b = (jax.device_get(load_run(str(w / run))[2]) for w in (workdir, tiny_sweep))
    assert int(a.step) == int(b.step) == 2
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
      np.testing.assert_allclose(x, y, rtol=2e-5, atol=2e-6)
  # Rerun: every run finished, nothing trained.
  code, out, _ = _sweep(capsys, workdir, '--replicas', data_dir=tfds_dir)
  assert code == 0 and out.count('skipped (finished at step 2)') == len(RUNS)
  assert 'replicas in one program' not in out.split('\n', 1)[1]


@pytest.mark.slow
def test_a_deleted_run_is_rerun_as_a_gan_jax_train_subprocess(tiny_sweep, tfds_dir, capsys):
  deleted = 'loss=least_squares,ema=on/seed_1'
  old = {f'{r["cell"]}/seed_{r["seed"]}': float(r['fid_lenet']) for r in _rows(tiny_sweep)}
  shutil.rmtree(tiny_sweep / deleted)
  kept = {run: _mtimes(tiny_sweep / run) for run in RUNS if run != deleted}

  code, out, err = _sweep(capsys, tiny_sweep, '--jobs', '2', data_dir=tfds_dir)
  assert code == 0, err
  assert out.count('skipped (finished at step 2)') == len(RUNS) - 1
  assert f'[8/8] {deleted}: training in pid' in out and f'[8/8] {deleted}: done in' in out
  log = (tiny_sweep / deleted / 'train.log').read_text()
  assert 'gan_jax.cli.main train --config' in log and 'done: checkpoints, samples and logs' in log
  assert (tiny_sweep / deleted / 'checkpoints' / '2').is_dir()
  for run, mtimes in kept.items():
    assert _mtimes(tiny_sweep / run) == mtimes, run
  rows = {f'{r["cell"]}/seed_{r["seed"]}': r for r in _rows(tiny_sweep)}
  assert all(r['status'] == 'done' for r in rows.values())
  # The subprocess got the same config as the in-process run: the same FID.
  assert float(rows[deleted]['fid_lenet']) == pytest.approx(old[deleted], rel=1e-5)


# Stands in for `gan-jax train` in the scheduling test: logs when it ran, then writes the
# summary.json of a finished 2-step run (or fails like the CLI, for label 'bad').
FAKE_TRAIN = """import json, os, sys, time
workdir = sys.argv[1]
start = time.time()
time.sleep(1.0)
with open(os.path.join(workdir, 'times.json'), 'w') as f:
  json.dump([start, time.time()], f)
if 'x=bad' in workdir:
  print('gan-jax: error: boom', file=sys.stderr)
  sys.exit(2)
with open(os.path.join(workdir, 'summary.json'), 'w') as f:
  json.dump({'end_step': 2, 'stopped_by_signal': None, 'wall_time_s': 1.0, 'start_step': 0}, f)
"""


def test_jobs_runs_at_most_n_subprocesses_at_a_time(tmp_path, capsys, monkeypatch):
  from gan_jax.sweep import runner  # pylint: disable=g-import-not-at-top

  monkeypatch.setattr(
    runner, 'train_command', lambda ablation, run: [sys.executable, '-c', FAKE_TRAIN, run.workdir]
  )
  labels = {name: {} for name in ('a', 'b', 'bad', 'c', 'd')}
  spec = _ablation(tmp_path, _ok(overrides={'train.steps': 2}, grid={'x': labels}))
  workdir = tmp_path / 'sweep'
  code, out, err = _sweep(capsys, workdir, '--jobs', '2', spec=spec)
  assert code == 1
  assert err.startswith('gan-jax: error: 1 of 5 runs failed: x=bad/seed_0: boom; errors in')
  times = [json.loads((workdir / f'x={x}' / 'seed_0' / 'times.json').read_text()) for x in labels]
  overlap = max(sum(s <= t < e for s, e in times) for t, _ in times)
  assert overlap == 2  # two at a time, never three
  rows = {r['cell']: r for r in _rows(workdir)}
  assert [rows[f'x={x}']['status'] for x in labels] == ['done', 'done', 'failed', 'done', 'done']
  assert rows['x=bad']['error'] == 'boom'


def test_a_changed_config_is_refused_before_anything_runs(tiny_sweep, tfds_dir, capsys):
  before = _mtimes(tiny_sweep)
  _one_line_error(
    capsys,
    ['sweep', TINY, '--workdir', str(tiny_sweep), f'--config.data.data_dir={tfds_dir}',
     '--config.train.g_lr=0.001'],
    'trained with another config',
    'train.g_lr: 0.0002 -> 0.001',
  )  # fmt: skip
  assert _mtimes(tiny_sweep) == before


def test_dry_run_lists_the_runs_and_writes_nothing(capsys, tmp_path):
  workdir = tmp_path / 'sweep'
  code, out, _ = _sweep(capsys, workdir, '--dry-run')
  assert code == 0
  for i, run in enumerate(RUNS):
    assert f'[{i + 1}/8] {run}: new;' in out
  assert (
    'loss=least_squares,ema=on/seed_1: new; train.loss=least_squares train.ema_decay=0.999' in out
  )
  assert 'dry run: nothing was run or written' in out
  assert not workdir.exists()


def test_seeds_runs_only_the_chosen_seeds_of_every_cell(capsys, tmp_path):
  # --seeds 1 (of the tiny ablation's 0 and 1): one run per cell, numbered as a sweep of 4.
  workdir = tmp_path / 'sweep'
  code, out, _ = _sweep(capsys, workdir, '--dry-run', '--seeds', '1')
  assert code == 0
  assert '4 cells x 1 seeds = 4 runs' in out
  listed = [
    line.split(':')[0].split('] ')[1] for line in out.splitlines() if line.startswith('  [')
  ]
  assert listed == [run for run in RUNS if run.endswith('seed_1')]
  _one_line_error(capsys, ['sweep', TINY, '--workdir', str(workdir), '--seeds', '1,5'],
                  '--seeds 1,5: [5] not among its seeds', 'has seeds 0,1')  # fmt: skip
  _one_line_error(capsys, ['sweep', TINY, '--workdir', str(workdir), '--seeds', '1,1'],
                  'repeats a seed')  # fmt: skip
  with pytest.raises(SystemExit) as exit_info:  # argparse: not a list of integers
    cli.main(['sweep', TINY, '--workdir', str(workdir), '--seeds', 'one'])
  assert exit_info.value.code == 2
  assert 'not a comma-separated list of integer seeds' in capsys.readouterr().err
  assert not workdir.exists()


def test_the_full_ablation_plans_fifteen_valid_runs(tmp_path):
  from gan_jax import sweep  # pylint: disable=g-import-not-at-top

  ablation = sweep.load_ablation(ABLATION)
  runs = sweep.plan(ablation, str(tmp_path))
  assert len(runs) == 5 * 3
  assert {r.config.train.steps for r in runs} == {3000}
  assert {r.config.eval_every for r in runs} == {1000}
  assert {(r.config.train.ema_decay, r.config.eval.raw_generator) for r in runs} == {(0.999, True)}
  by_cell = {r.cell.name: r.config for r in runs}
  assert by_cell['loss=hinge_sn'].model.spectral_norm
  assert by_cell['loss=non_saturating_r1'].train.r1_weight == 10.0
  wgan = by_cell['loss=wgan_gp'].train
  assert (wgan.loss, wgan.gp_weight, wgan.n_critic, wgan.g_lr, wgan.b1, wgan.b2) == (
    'wasserstein',
    10.0,
    5,
    1e-4,
    0.0,
    0.9,
  )
  assert 'gan-jax sweep experiments/ablations/losses_fashion.py' in open(ABLATION).read()


# The tiny ablation with a first loss label whose runs fail at run time (a batch of 16 from an
# 8-image split passes every config check but is refused when the run starts).
FAILING = """import runpy

_TINY = runpy.run_path({ablation!r})['get_ablation']('tiny')


def get_ablation(variant=''):
  loss = {{'broken': {{'train.loss': 'hinge', 'data.split': 'train[:8]'}}, **_TINY['grid']['loss']}}
  return {{**_TINY, 'base': {base!r}, 'grid': {{**_TINY['grid'], 'loss': loss}}}}
"""


def test_failing_runs_are_recorded_and_the_others_complete(tiny_sweep, tfds_dir, capsys):
  spec = tiny_sweep.parent / 'failing.py'
  spec.write_text(FAILING.format(ablation=ABLATION, base=BASE_TINY))
  retrained = 'loss=least_squares,ema=off/seed_1'  # after the failures: the sweep goes on
  shutil.rmtree(tiny_sweep / retrained)
  code, out, err = _sweep(capsys, tiny_sweep, spec=str(spec), data_dir=tfds_dir)
  assert code == 1
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(
    'gan-jax: error: 4 of 12 runs failed: loss=broken,ema=off/seed_0: ConfigError: '
    'train.batch_size=16 is invalid'
  ), err
  assert lines[0].endswith(f'(and 3 more); errors in {tiny_sweep / "results.csv"}.'), err
  assert f'[10/12] {retrained}: done in' in out
  rows = {f'{r["cell"]}/seed_{r["seed"]}': r for r in _rows(tiny_sweep)}
  assert len(rows) == 12
  for run, row in rows.items():
    if run.startswith('loss=broken'):
      assert row['status'] == 'failed' and 'train.batch_size=16 is invalid' in row['error']
      assert row['fid_lenet'] == ''
    else:
      assert row['status'] == 'done' and math.isfinite(float(row['fid_lenet'])), row
  md = (tiny_sweep / 'results.md').read_text()
  assert '| broken | off | – | 0 | – | – | seed 0 failed, seed 1 failed |' in md
  with Image.open(tiny_sweep / 'samples.png') as img:
    img.verify()


def _ablation(tmp_path, body):
  path = tmp_path / 'ablation.py'
  path.write_text(body)
  return str(path)


def _ok(**fields):
  spec = dict(base=BASE_TINY, grid={'loss': {'hinge': {'train.loss': 'hinge'}}})
  spec.update(fields)
  return f'def get_ablation(variant=""):\n  return {spec!r}\n'


@pytest.mark.parametrize(
  'body,fragments',
  [
    ('x = 1\n', ['defines no get_ablation() function']),
    ('def get_ablation(variant=""):\n  raise KeyError("boom")\n', ["get_ablation('') failed"]),
    ('def get_ablation(variant=""):\n  return [1]\n', ['returned list, not a dict']),
    (_ok(grids={}), ["unknown ablation key 'grids'", "Did you mean 'grid'?"]),
    (_ok(grid={}), ["'grid' is empty"]),
    (_ok(grid={'loss': {}}), ["grid axis 'loss' has no labels"]),
    (_ok(grid={'loss': {'a/b': {}}}), ["label of axis 'loss' 'a/b' is not a valid name"]),
    (_ok(base='experiments/nope.py'), ["base config 'experiments/nope.py' not found"]),
    (
      _ok(grid={'loss': {'x': {'train.lossy': 'hinge'}}}),
      ["grid['loss']['x']: unknown config key 'train.lossy'", 'Did you mean train.loss'],
    ),
    (_ok(overrides={'train.stepz': 3}), ["'overrides': unknown config key 'train.stepz'"]),
    (_ok(overrides={'train.steps': 'many'}), ['expected a value of type int']),
    (_ok(overrides={'seed': 3}), ["sets 'seed'; give the seeds"]),
    (_ok(grid={'loss': {'x': {'train.loss': 'wgan'}}}), ["cell loss=x seed 0: train.loss='wgan'"]),
    (_ok(seeds=[]), ["'seeds' must be a non-empty list"]),
    (_ok(seeds=[1, 1]), ["'seeds' repeats a seed"]),
    (
      _ok(grid={'a': {'x': {'train.loss': 'hinge'}}, 'b': {'y': {'train.loss': 'minimax'}}}),
      ['cell a=x,b=y: train.loss is set by both a=x and b=y'],
    ),
    (_ok(metrics=['fid_lenet']), ['eval_every=0 (evaluation off)']),
    (
      _ok(overrides={'eval_every': 2, 'eval.metrics': 'fid'}, metrics=['is_lenet']),
      ["metric 'is_lenet' needs 'is' in eval.metrics"],
    ),
    (
      _ok(overrides={'eval_every': 2}, metrics=['fid_inception']),
      ["metric 'fid_inception' is never computed here"],
    ),
  ],
)
def test_bad_ablation_files_are_one_line_errors(body, fragments, tmp_path, capsys):
  path = _ablation(tmp_path, body)
  _one_line_error(capsys, ['sweep', path, '--workdir', str(tmp_path / 'w')], path, *fragments)
  assert not (tmp_path / 'w').exists()


def test_bad_command_lines_are_one_line_errors(tmp_path, capsys):
  w = str(tmp_path / 'w')
  _one_line_error(capsys, ['sweep', 'nope.py', '--workdir', w], "ablation file 'nope.py' not found")
  _one_line_error(
    capsys,
    ['sweep', str(REPO / 'experiments' / 'mnist_dcgan.py'), '--workdir', w],
    'defines no get_ablation() function (it defines get_config',
  )
  _one_line_error(capsys, ['sweep', TINY, '--workdir', w, '--config.seed=3'], '--config.seed')
  _one_line_error(
    capsys, ['sweep', TINY, '--workdir', w, '--config.train.stepz=3'], "'train.stepz'"
  )
  _one_line_error(capsys, ['sweep', TINY, '--workdir', w, '--jobs', '0'], '--jobs=0')
  _one_line_error(
    capsys, ['sweep', TINY, '--workdir', w, '--jobs', '2', '--replicas'], 'drop --jobs=2'
  )
  _one_line_error(capsys, ['sweep', ABLATION + ':huge', '--workdir', w], "unknown variant 'huge'")
  assert not os.path.exists(w)
