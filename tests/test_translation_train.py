"""`gan-jax train` of translation configs (gan_jax/translation/train.py): the run folder it
writes against independent recomputations, and exact resume after SIGTERM for pix2pix and
CycleGAN (histories and the learning-rate schedule included)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

from gan_jax.cli import main as cli
from gan_jax.config_files import apply_overrides, load_config_file
from gan_jax.core.sampling import save_grid
from gan_jax.errors import ConfigError
from gan_jax.translation import kinds, train
from gan_jax.translation.metrics import image_quality
from gan_jax.translation.run import load_translation_run
from gan_jax.translation.tasks import build_task

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PIX2PIX = os.path.join(ROOT, 'experiments', 'pix2pix_inpaint_mnist.py')
CYCLEGAN = os.path.join(ROOT, 'experiments', 'cyclegan_sneakers_boots.py')
# The TFDS data of ../shared/tfds through TFDS_DATA_DIR (conftest's `tfds_env`); a missing
# data folder fails the test rather than skipping it.
needs_data = pytest.mark.usefixtures('tfds_env')


def _log(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def _summary(workdir: str) -> dict:
  with open(os.path.join(workdir, 'summary.json')) as f:
    return json.load(f)


def _config(path: str, *overrides: str):
  return apply_overrides(load_config_file(f'{path}:tiny'), list(overrides))


def _stop_after(monkeypatch, kind_name: str, n: int) -> None:
  """Makes the `n`-th train step of `kind_name` send this process SIGTERM, as a preemption
  would, once the step has run."""
  kind = kinds.KINDS[kind_name]

  def make_step(model, mesh):
    inner, calls = kind.make_step(model, mesh), [0]

    def step(state, *batch):
      out = inner(state, *batch)
      calls[0] += 1
      if calls[0] == n:
        os.kill(os.getpid(), signal.SIGTERM)
      return out

    return step

  monkeypatch.setitem(kinds.KINDS, kind_name, dataclasses.replace(kind, make_step=make_step))


def _same_states(a, b) -> None:
  leaves_a, tree_a = jax.tree_util.tree_flatten(jax.device_get(a))
  leaves_b, tree_b = jax.tree_util.tree_flatten(jax.device_get(b))
  assert tree_a == tree_b
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _check_resume(tmp_path, monkeypatch, path: str, kind_name: str, stop: int, *overrides):
  """Trains uninterrupted into a/, and into b/ with SIGTERM after step `stop`, then reruns
  b/; returns both final runs (loaded back) after checking they are equal bit for bit."""
  config = _config(path, *overrides)
  full = train.train_translation(config, str(tmp_path / 'a'))
  with monkeypatch.context() as m:
    _stop_after(m, kind_name, stop)
    stopped = train.train_translation(config, str(tmp_path / 'b'))
  assert int(stopped.step) == stop
  first = _summary(str(tmp_path / 'b'))
  assert (first['end_step'], first['stopped_by_signal']) == (stop, 'SIGTERM')
  resumed = train.train_translation(config, str(tmp_path / 'b'))
  assert _summary(str(tmp_path / 'b'))['start_step'] == stop
  _same_states(full, resumed)
  run_a, run_b = (load_translation_run(str(tmp_path / w)) for w in 'ab')
  assert run_a.step == run_b.step == config.train.steps
  _same_states(run_a.state, run_b.state)
  # Every logged step once, with the same losses and evaluations as the uninterrupted run.
  assert _log(str(tmp_path / 'a')) == _log(str(tmp_path / 'b'))
  return run_a, config


@needs_data
def test_pix2pix_sigterm_and_rerun_equal_the_uninterrupted_run(tmp_path, monkeypatch):
  run, config = _check_resume(
    tmp_path, monkeypatch, PIX2PIX, 'pix2pix', 1, '--config.train.steps=4'
  )
  assert sorted(os.listdir(tmp_path / 'b' / 'checkpoints')) == ['1', '2', '4']  # 1: the stop
  # Resuming with another model shape is refused in one line, before anything is written.
  wider = _config(PIX2PIX, '--config.train.steps=4', '--config.translation.g_width=16')
  with pytest.raises(ConfigError, match=r'model\.g_max_width: 64 -> 128; model\.g_width: 8 -> 16'):
    train.train_translation(wider, str(tmp_path / 'b'))
  assert load_translation_run(str(tmp_path / 'b')).step == 4


@needs_data
def test_cyclegan_sigterm_and_rerun_equal_the_uninterrupted_run(tmp_path, monkeypatch):
  # Histories of 6 images, batch 4: the resumed run continues a half-full history and then
  # swaps; the learning rate is held for 2 steps and decays over the last 2.
  run, _ = _check_resume(
    tmp_path, monkeypatch, CYCLEGAN, 'cyclegan', 1,
    '--config.train.steps=4', '--config.translation.history=6',
  )  # fmt: skip
  state = run.state
  assert [int(state.history[d].count) for d in ('a', 'b')] == [6, 6]
  assert run.record['model']['hold_steps'] == 2 and run.record['model']['decay_steps'] == 2


@needs_data
def test_cli_pix2pix_run_folder_matches_recomputation(tmp_path, capsys):
  workdir = str(tmp_path / 'run')
  assert cli.main(['train', '--config', f'{PIX2PIX}:tiny', '--workdir', workdir]) == 0
  assert 'done:' in capsys.readouterr().out
  run = load_translation_run(workdir)  # what `gan-jax translate` reads
  assert (run.kind, run.step, run.task) == ('pix2pix', 3, 'inpaint')
  task = build_task('inpaint', num_train=64, num_test=16, seed=0)
  outputs = run.translate(task.test_inputs)
  logged = [e for e in _log(workdir) if 'eval/psnr' in e]
  assert [e['step'] for e in logged] == [3]
  want = image_quality(outputs, task.test_targets)
  base = image_quality(task.test_baseline, task.test_targets)
  assert logged[0]['eval/psnr'] == pytest.approx(want['psnr'], rel=1e-5)
  assert logged[0]['eval/ssim'] == pytest.approx(want['ssim'], rel=1e-4, abs=1e-6)
  assert logged[0]['eval/baseline_psnr'] == pytest.approx(base['psnr'], rel=1e-6)
  # The grid: rows of input (mean fill, no mask) | output | target of the first 8 images.
  rows = np.stack([task.test_inputs[:8, ..., :1], outputs[:8], task.test_targets[:8]], axis=1)
  expected = save_grid(str(tmp_path / 'want.png'), rows.reshape(24, 28, 28, 1), ncol=3, scale=3)
  got = np.asarray(Image.open(os.path.join(workdir, 'samples', 'step_0000003.png')))
  np.testing.assert_array_equal(got, np.asarray(Image.open(expected)))
  steps = [e['step'] for e in _log(workdir) if 'g_loss' in e]
  assert steps == [1, 2, 3]
  summary = _summary(workdir)
  assert summary['end_step'] == 3 and summary['final_eval']['psnr'] == logged[0]['eval/psnr']
  # Rerunning the finished run trains nothing and leaves its log alone.
  before = _log(workdir)
  assert cli.main(['train', '--config', f'{PIX2PIX}:tiny', '--workdir', workdir]) == 0
  assert _log(workdir) == before


def test_bad_translation_fields_are_one_line_errors(tmp_path, capsys):
  workdir = str(tmp_path / 'never')
  cases = [
    ('--config.translation.kind=pix3pix', "translation.kind='pix3pix' is invalid"),
    ('--config.translation.task=colourise', "translation.task='colourise' is invalid"),
    ('--config.translation.direction=b2a', "'b2a' (train B -> A) needs your own pairs"),
    ('--config.translation.loss=hinged', "translation.loss='hinged' is invalid"),
  ]
  for override, message in cases:
    status = cli.main(['train', '--config', f'{PIX2PIX}:tiny', '--workdir', workdir, override])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and message in err[0], (override, err)
  assert not os.path.exists(workdir)


TRANSLATION_EXPERIMENTS = sorted(
  p.stem for p in Path(ROOT, 'experiments').glob('*.py') if 'translation_config(' in p.read_text()
)


def test_translation_experiments_are_valid_and_document_their_command():
  from gan_jax.translation import run_config  # pylint: disable=g-import-not-at-top

  assert TRANSLATION_EXPERIMENTS == [
    'cyclegan_sneakers_boots', 'pix2pix_colorize_cifar10', 'pix2pix_inpaint_mnist',
  ]  # fmt: skip
  for name in TRANSLATION_EXPERIMENTS:
    path = os.path.join(ROOT, 'experiments', f'{name}.py')
    for variant in ('', ':tiny'):
      config = load_config_file(path + variant)
      assert run_config.is_translation(config)
      run_config.validate(config)
    with open(path) as f:
      assert f'gan-jax train --config experiments/{name}.py' in f.read()


@needs_data
def test_tiny_colorize_trains_on_cifar10(tmp_path):
  config = _config(os.path.join(ROOT, 'experiments', 'pix2pix_colorize_cifar10.py'))
  state = train.train_translation(config, str(tmp_path))
  assert int(state.step) == config.train.steps == 3
  run = load_translation_run(str(tmp_path))
  assert run.record['image_shapes'] == {'a': [32, 32, 1], 'b': [32, 32, 3]}
  final = _summary(str(tmp_path))['final_eval']
  # The baseline copies the luma to the 3 channels: its PSNR is the task's, recomputed here.
  task = build_task('colorize', num_train=64, num_test=16)
  base = image_quality(task.test_baseline, task.test_targets)
  assert final['baseline_psnr'] == pytest.approx(base['psnr'], rel=1e-6)
  assert os.listdir(tmp_path / 'samples') == ['step_0000003.png']
