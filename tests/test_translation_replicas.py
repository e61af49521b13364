"""K translation replicas in one compiled program (gan_jax/translation/replicas.py): replica i's
run folder against the separate run with seed_i (and its learning rate and loss weight), exact
resume of the K-replica run after SIGTERM, `gan-jax sweep --replicas` of a translation
ablation, and one-line refusals."""

from __future__ import annotations

import json
import os
import signal

import jax
import ml_collections
import numpy as np
import pytest

from gan_jax import sweep
from gan_jax.cli import main as cli
from gan_jax.config_files import apply_overrides, load_config_file
from gan_jax.errors import ConfigError
from gan_jax.training import replicas as training_replicas
from gan_jax.translation import replicas as replicas_lib
from gan_jax.translation import train
from gan_jax.translation.run import load_translation_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PIX2PIX = os.path.join(ROOT, 'experiments', 'pix2pix_inpaint_mnist.py')
CYCLEGAN = os.path.join(ROOT, 'experiments', 'cyclegan_sneakers_boots.py')
# The TFDS data of ../shared/tfds through TFDS_DATA_DIR (conftest's `tfds_env`); a missing
# data folder fails the test rather than skipping it.
needs_data = pytest.mark.usefixtures('tfds_env')


def _config(path: str, *overrides: str):
  return apply_overrides(load_config_file(f'{path}:tiny'), list(overrides))


def _read(workdir: str, name: str):
  with open(os.path.join(workdir, name)) as f:
    if name.endswith('.jsonl'):
      return [json.loads(line) for line in f]
    return json.load(f)


def _leaves(state) -> tuple[list[np.ndarray], object]:
  leaves, tree = jax.tree_util.tree_flatten(jax.device_get(state))
  return [np.asarray(x) for x in leaves], tree


def _close_states(a, b, moments_scale: float = 0.0) -> None:
  """Every leaf of `a` allclose to `b`'s (rtol 1e-5, atol 1e-5; integers equal), but Adam's
  first moments (`.mu`) within `moments_scale` x their largest value when given. (atol:
  Adam divides each gradient element by its own scale, so an element whose gradient is near
  zero moves by a rounding-sensitive part of one step, lr <= 3e-4; measured 2e-6.)"""
  (la, ta), (lb, tb) = _leaves(a), _leaves(b)
  assert ta == tb
  paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(a)[0]]
  for path, x, y in zip(paths, la, lb):
    if not np.issubdtype(x.dtype, np.floating):  # step, RNG keys, history fill counts
      np.testing.assert_array_equal(x, y, err_msg=path)
    elif moments_scale and '.mu' in path:
      np.testing.assert_allclose(
        x, y, rtol=1e-5, atol=moments_scale * np.abs(y).max(), err_msg=path
      )
    else:
      np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5, err_msg=path)


def _same_states(a, b) -> None:
  (la, ta), (lb, tb) = _leaves(a), _leaves(b)
  assert ta == tb
  for x, y in zip(la, lb):
    np.testing.assert_array_equal(x, y)


def _close_logs(replica: list[dict], separate: list[dict]) -> None:
  assert [e['step'] for e in replica] == [e['step'] for e in separate]
  for got, want in zip(replica, separate):
    assert sorted(got) == sorted(want)
    for key, value in want.items():
      assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-5), (got['step'], key)


def _check_replicas_equal_separate_runs(tmp_path, path, overrides, per_replica, moments_scale=0.0):
  """Trains K = len(per_replica) replicas into W/, then each replica's separate run (seed i,
  its own overrides); checks every replica folder against it and returns W."""
  workdir = str(tmp_path / 'W')
  fields = ';'.join(
    f'{field}={",".join(str(r[field]) for r in per_replica)}' for field in per_replica[0]
  )
  config = _config(
    path, *overrides, f'--config.num_replicas={len(per_replica)}',
    f'--config.replica_values={fields}',
  )  # fmt: skip
  states = train.train_translation(config, workdir)
  for i, values in enumerate(per_replica):
    own = [f'--config.{k}={v}' for k, v in values.items()]
    single = _config(path, *overrides, f'--config.seed={i}', *own)
    separate = train.train_translation(single, str(tmp_path / f'separate_{i}'))
    folder = os.path.join(workdir, f'replica_{i}')
    _close_states(training_replicas.unstack(states, i), separate, moments_scale)
    # The folder is the separate run's: what `gan-jax translate` reads, the record, the log
    # (losses and evaluations), the grid, the summary.
    run = load_translation_run(folder)
    assert (run.step, run.record['seed']) == (single.train.steps, i)
    _close_states(run.state, separate, moments_scale)
    want_record = _read(str(tmp_path / f'separate_{i}'), 'translation_run.json')
    assert run.record['model'] == want_record['model'] and run.record['task'] == want_record['task']
    saved = _read(folder, 'config.json')
    assert (saved['seed'], saved['num_replicas'], saved['replica_values']) == (i, 1, '')
    for k, v in values.items():
      section, name = k.split('.')
      assert saved[section][name] == pytest.approx(float(v))
    _close_logs(
      _read(folder, 'metrics.jsonl'), _read(str(tmp_path / f'separate_{i}'), 'metrics.jsonl')
    )
    grids = sorted(os.listdir(os.path.join(folder, 'samples')))
    assert grids == sorted(os.listdir(tmp_path / f'separate_{i}' / 'samples')) and grids
    summary = _read(folder, 'summary.json')
    assert (summary['replica'], summary['num_replicas'], summary['end_step']) == (
      i, len(per_replica), single.train.steps,
    )  # fmt: skip
    want = _read(str(tmp_path / f'separate_{i}'), 'summary.json')['final_eval']
    assert summary['final_eval'] == pytest.approx(want, rel=1e-4, abs=1e-5)
  return workdir


@needs_data
def test_pix2pix_replicas_equal_separate_runs_and_resume_alone(tmp_path):
  # Replica 1 has its own learning rate and lambda: both enter the step as traced [K] values.
  # The default replica_impl on a CPU is 'unroll', and still not bitwise: the traced values
  # and one program over both replicas let XLA fuse and order the float32 ops otherwise.
  per_replica = [
    {'translation.lr': 2e-4, 'translation.l1_weight': 100.0},
    {'translation.lr': 1e-4, 'translation.l1_weight': 10.0},
  ]
  workdir = _check_replicas_equal_separate_runs(tmp_path, PIX2PIX, [], per_replica)
  # A replica folder is an ordinary run: `gan-jax train` resumes it alone from its config.json.
  folder = os.path.join(workdir, 'replica_1')
  config = ml_collections.ConfigDict(_read(folder, 'config.json'))
  config.train.steps = 4
  state = train.train_translation(config, folder)
  assert int(state.step) == 4 and _read(folder, 'summary.json')['start_step'] == 3


@needs_data
@pytest.mark.xla_optimized  # the tolerances below were measured on XLA's optimised programs
def test_cyclegan_replicas_equal_separate_runs_histories_included(tmp_path):
  # Histories of 6 images and batch 4 over 4 steps: both fill up and then swap; the learning
  # rate is held for 2 steps and then decays, from each replica's own peak. vmap this time.
  per_replica = [
    {'translation.lr': 2e-4, 'translation.cycle_weight': 10.0},
    {'translation.lr': 3e-4, 'translation.cycle_weight': 5.0},
  ]
  overrides = ['--config.train.steps=4', '--config.translation.history=6']
  # Adam's first moments hold the last gradients of G, which the K-wide (grouped)
  # convolutions of vmap change by up to ~5e-4 of their scale (measured: instance norm over
  # the tiny 7x7 maps of 4 images amplifies the float32 rounding); the parameters, which
  # move by lr times that, and the histories stay within rtol 1e-5.
  workdir = _check_replicas_equal_separate_runs(
    tmp_path, CYCLEGAN, [*overrides, '--config.replica_impl=vmap'], per_replica, 2e-3
  )
  for i in range(2):
    state = load_translation_run(os.path.join(workdir, f'replica_{i}')).state
    assert [int(state.history[d].count) for d in ('a', 'b')] == [6, 6]
  logged = [
    e['lr'] for e in _read(os.path.join(workdir, 'replica_1'), 'metrics.jsonl') if 'lr' in e
  ]
  assert logged == pytest.approx([3e-4, 3e-4, 3e-4, 1.5e-4])


@needs_data
def test_replicas_stopped_by_sigterm_and_rerun_equal_the_uninterrupted_run(
  tmp_path, monkeypatch, capsys
):
  args = [
    'train', '--config', f'{PIX2PIX}:tiny', '--config.train.steps=4',
    '--config.num_replicas=2',
  ]  # fmt: skip
  assert cli.main([*args, '--workdir', str(tmp_path / 'a')]) == 0
  assert 'done:' in capsys.readouterr().out
  make = replicas_lib.make_replicated_step

  def stopping(*a, **kw):  # SIGTERM after the first step, as a preemption would
    inner, calls = make(*a, **kw), [0]

    def step(states, batch):
      out = inner(states, batch)
      calls[0] += 1
      if calls[0] == 1:
        os.kill(os.getpid(), signal.SIGTERM)
      return out

    return step

  with monkeypatch.context() as m:
    m.setattr(replicas_lib, 'make_replicated_step', stopping)
    assert cli.main([*args, '--workdir', str(tmp_path / 'b')]) == 0
  assert 'stopped at step 1 of 4' in capsys.readouterr().out
  for i in range(2):
    folder = tmp_path / 'b' / f'replica_{i}'
    assert sorted(os.listdir(folder / 'checkpoints')) == ['1']  # every replica saved the stop
    assert _read(str(folder), 'summary.json')['stopped_by_signal'] == 'SIGTERM'
  assert cli.main([*args, '--workdir', str(tmp_path / 'b')]) == 0
  for i in range(2):
    a, b = (str(tmp_path / w / f'replica_{i}') for w in 'ab')
    run_a, run_b = load_translation_run(a), load_translation_run(b)
    assert run_a.step == run_b.step == 4 and run_b.record['seed'] == i
    _same_states(run_a.state, run_b.state)
    assert _read(a, 'metrics.jsonl') == _read(b, 'metrics.jsonl')
    assert _read(b, 'summary.json')['start_step'] == 1


@needs_data
def test_sweep_replicas_trains_each_cells_seeds_as_replicas(tmp_path):
  ablation = tmp_path / 'lambda_seeds.py'
  ablation.write_text(
    'def get_ablation(variant=""):\n'
    '  return dict(\n'
    f'    base={PIX2PIX + ":tiny"!r},\n'
    "    overrides={'train.steps': 2, 'eval_every': 2, 'sample_every': 2},\n"
    "    grid={'l1': {'10': {'translation.l1_weight': 10.0}}},\n"
    "    seeds=[0, 1], metrics=['psnr'])\n"
  )
  workdir = str(tmp_path / 'sweep')
  lines = []
  result = sweep.run_sweep(str(ablation), workdir, replicas=True, say=lines.append)
  assert not result.failed and any('as 2 replicas in one program' in line for line in lines)
  assert [r['status'] for r in result.rows] == ['done', 'done']
  for run in result.runs:
    summary = _read(run.workdir, 'summary.json')
    assert (summary['num_replicas'], summary['end_step']) == (2, 2)
    assert load_translation_run(run.workdir).record['seed'] == run.seed
    logged = [e['eval/psnr'] for e in _read(run.workdir, 'metrics.jsonl') if 'eval/psnr' in e]
    assert len(logged) == 1 and np.isfinite(logged[0])
  again = sweep.run_sweep(str(ablation), workdir, replicas=True, say=lambda line: None)
  assert len(again.skipped) == 2


def test_bad_replica_fields_are_refused_in_one_line(tmp_path):
  cases = [
    ('translation.hole=1,2', r"'translation\.hole' cannot differ between replicas.*"
     r"translation\.lr, translation\.l1_weight"),
    ('translation.lr=1e-4', r'translation\.lr has 1 values for num_replicas=2'),
  ]  # fmt: skip
  for values, message in cases:
    config = _config(PIX2PIX, '--config.num_replicas=2', f'--config.replica_values={values}')
    with pytest.raises(ConfigError, match=message) as err:
      train.train_translation(config, str(tmp_path / 'never'))
    assert '\n' not in str(err.value)
  cyclegan = _config(
    CYCLEGAN, '--config.num_replicas=2', '--config.replica_values=translation.l1_weight=1,2'
  )
  with pytest.raises(ConfigError, match=r'translation\.lr, translation\.cycle_weight'):
    train.train_translation(cyclegan, str(tmp_path / 'never'))
  one = _config(PIX2PIX, '--config.replica_values=translation.lr=1e-4')
  with pytest.raises(ConfigError, match='needs num_replicas > 1'):
    train.train_translation(one, str(tmp_path / 'never'))
  # Replicas given as configs may differ only in seed and those fields.
  a, b = _config(PIX2PIX), _config(PIX2PIX, '--config.translation.g_width=16')
  dirs = [str(tmp_path / 'never' / d) for d in 'ab']
  with pytest.raises(
    ConfigError, match=r'replica 1 differs from replica 0 in translation\.g_width'
  ):
    train.train_translation_replicas([a, b], dirs)
  assert not os.path.exists(tmp_path / 'never')
