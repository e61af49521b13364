"""`gan-jax export`: the exported generator, loaded in a process without gan_jax, reproduces
gan_jax's own sampling at two batch sizes (jax.export and TF SavedModel, unconditional and
conditional, EMA and raw G); usage errors are one line with exit status 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

from gan_jax import export
from conftest import one_line_error

from gan_jax.cli import main as cli
from gan_jax.core import sampling
from gan_jax.training import train
from gan_jax.training.checkpoint import load_run

from conftest import load_experiment

GAN_JAX = str(Path(sys.executable).parent / 'gan-jax')
BATCHES = (3, 8)

# Runs in a fresh interpreter that cannot import gan_jax: loads every export folder named on
# the command line with jax.export and TensorFlow alone, runs it on the latents (and labels)
# of inputs.npz at each batch size, and writes the images to outputs.npz.
LOADER = r'''
import importlib.abc, json, os, sys


class _NoGanJax(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name == 'gan_jax' or name.startswith('gan_jax.'):
      raise ImportError(f'{name} imported while loading an export')
    return None


sys.meta_path.insert(0, _NoGanJax())
import jax
import numpy as np
import tensorflow as tf

inputs_path, outputs_path, batches, *folders = sys.argv[1:]
inputs = np.load(inputs_path)
out = {}
for folder in folders:
  name = os.path.basename(folder)
  with open(os.path.join(folder, 'metadata.json')) as f:
    meta = json.load(f)
  with open(os.path.join(folder, 'generator.jax_export'), 'rb') as f:
    exported = jax.export.deserialize(f.read())
  model = tf.saved_model.load(os.path.join(folder, 'saved_model'))
  signature = model.signatures['serving_default']
  names = [spec['name'] for spec in meta['inputs']]
  for b in map(int, batches.split(',')):
    args = [inputs[n][:b] for n in names]
    out[f'{name}/jax/{b}'] = np.asarray(exported.call(*args))
    out[f'{name}/tf/{b}'] = signature(**{n: tf.constant(a) for n, a in zip(names, args)})[
      'images'
    ].numpy()
    out[f'{name}/tf_generate/{b}'] = model.generate(*args)['images'].numpy()
leaked = sorted(m for m in sys.modules if m == 'gan_jax' or m.startswith('gan_jax.'))
assert not leaked, leaked
np.savez(outputs_path, **out)
print('ok')
'''


_one_line_error = one_line_error


@pytest.fixture(scope='module')
def runs(tfds_dir, tmp_path_factory):
  """Tiny runs: MNIST DCGAN (checkpoints 3 and 6) and class-conditional MNIST cDCGAN."""
  root = tmp_path_factory.mktemp('export_runs')
  workdirs = {}
  for name, experiment in (('dcgan', 'mnist_dcgan'), ('cdcgan', 'mnist_cdcgan')):
    config = load_experiment(experiment, 'tiny')
    config.data.data_dir = tfds_dir
    workdirs[name] = str(root / name)
    train.train_and_evaluate(config, workdirs[name])
  return workdirs


@pytest.fixture(scope='module')
def exported(runs, tmp_path_factory):
  """Three exports (EMA G of each run, raw G of the DCGAN's step 3) loaded without gan_jax.

  Returns (export folders by name, inputs, images by '<name>/<jax|tf|tf_generate>/<B>').
  """
  root = tmp_path_factory.mktemp('exports')
  folders = {
    'dcgan': ['--workdir', runs['dcgan']],
    'cdcgan': ['--workdir', runs['cdcgan']],
    'dcgan_raw3': ['--workdir', runs['dcgan'], '--step', '3', '--raw'],
  }
  (root / 'cdcgan').mkdir()  # an existing empty --out is fine
  for name, argv in folders.items():
    assert cli.main(['export', *argv, '--out', str(root / name)]) == 0
  inputs = {  # z: the latents of `gan-jax sample --seed 0 --num 8`
    'z': np.asarray(jax.random.normal(jax.random.PRNGKey(0), (max(BATCHES), 100), np.float32)),
    'labels': (np.arange(max(BATCHES)) * 3 % 10).astype(np.int32),
  }
  np.savez(root / 'inputs.npz', **inputs)
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  proc = subprocess.run(
    [
      sys.executable,
      '-c',
      LOADER,
      str(root / 'inputs.npz'),
      str(root / 'outputs.npz'),
      ','.join(map(str, BATCHES)),
      *(str(root / name) for name in folders),
    ],
    capture_output=True,
    text=True,
    env=env,
    cwd=str(root),
    timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  with np.load(root / 'outputs.npz') as f:
    images = dict(f)
  return {name: root / name for name in folders}, inputs, images


@pytest.mark.slow
@pytest.mark.parametrize(
  'name, step, use_ema', [('dcgan', None, True), ('cdcgan', None, True), ('dcgan_raw3', 3, False)]
)
def test_export_reproduces_sampling_without_gan_jax(runs, exported, name, step, use_ema):
  folders, inputs, images = exported
  config, gan, state = load_run(runs[name.split('_')[0]], step)
  for b in BATCHES:
    labels = inputs['labels'][:b] if gan.conditional else None
    want = np.asarray(sampling.sample(gan, state, inputs['z'][:b], labels, use_ema=use_ema))
    assert want.shape == (b, 28, 28, 1)
    for kind in ('jax', 'tf', 'tf_generate'):
      got = images[f'{name}/{kind}/{b}']
      assert got.dtype == np.float32 and got.shape == want.shape, (kind, got.shape)
      np.testing.assert_allclose(got, want, rtol=0, atol=1e-5, err_msg=f'{name} {kind} B={b}')
  # The EMA and raw generators differ, so the comparison above tells them apart.
  if name == 'dcgan':
    raw = sampling.sample(gan, state, inputs['z'][:3], use_ema=False)
    assert np.abs(np.asarray(raw) - images['dcgan/jax/3']).max() > 1e-3


@pytest.mark.slow
def test_export_reproduces_the_sample_command(runs, exported, tmp_path):
  folders, inputs, images = exported
  _, gan, _ = load_run(runs['dcgan'])
  np.testing.assert_array_equal(gan.sample_latents(jax.random.PRNGKey(0), 8), inputs['z'])
  grid = tmp_path / 'grid.png'
  argv = ['--workdir', runs['dcgan'], '--num', '8', '--seed', '0', '--scale', '1']
  assert cli.main(['sample', *argv, '--out', str(grid)]) == 0
  want = np.asarray(Image.open(grid)).astype(int)
  for kind in ('jax', 'tf'):
    got = sampling.make_grid(images[f'dcgan/{kind}/8'])[..., 0].astype(int)
    assert got.shape == want.shape
    # uint8 pixels: a value within 1e-5 of a rounding boundary may land on either side.
    assert np.abs(got - want).max() <= 1 and (got == want).mean() > 0.999, kind


@pytest.mark.slow
def test_metadata(runs, exported):
  folders, _, _ = exported
  meta = json.loads((folders['cdcgan'] / 'metadata.json').read_text())
  assert meta['generator'] == 'ema' and meta['step'] == 4 and meta['checkpoint'] == 'latest'
  assert (meta['latent_dim'], meta['num_classes'], meta['conditional']) == (100, 10, True)
  assert meta['image_shape'] == [28, 28, 1] and meta['value_range'] == [-1.0, 1.0]
  assert [(s['name'], s['dtype']) for s in meta['inputs']] == [
    ('z', 'float32'),
    ('labels', 'int32'),
  ]
  assert meta['config']['model']['num_classes'] == 10
  assert meta['jax_version'] == jax.__version__ and meta['gan_jax_version']
  assert set(meta['platforms']) == set(export.DEFAULT_PLATFORMS)
  raw = json.loads((folders['dcgan_raw3'] / 'metadata.json').read_text())
  assert (raw['generator'], raw['step'], raw['checkpoint']) == ('raw', 3, 'step')
  assert [s['name'] for s in raw['inputs']] == ['z'] and raw['num_classes'] == 0
  assert sorted(os.listdir(folders['dcgan'])) == [
    'generator.jax_export',
    'metadata.json',
    'saved_model',
  ]


def test_usage_errors(capsys, tmp_path):
  run = tmp_path / 'run'
  run.mkdir()
  out = str(tmp_path / 'out')
  _one_line_error(
    capsys, ['export', '--workdir', str(tmp_path / 'nope'), '--out', out], 'does not exist'
  )
  _one_line_error(capsys, ['export', '--workdir', str(run), '--out', out], 'no config.json')
  _one_line_error(
    capsys, ['export', '--workdir', str(run), '--out', out, '--step', '3', '--best'], 'not both'
  )
  _one_line_error(
    capsys, ['export', '--workdir', str(run), '--out', out, '--platforms', 'gpu'], '--platforms'
  )
  (tmp_path / 'file').write_text('x')
  _one_line_error(
    capsys, ['export', '--workdir', str(run), '--out', str(tmp_path / 'file')], 'is a file'
  )
  (tmp_path / 'full').mkdir()
  (tmp_path / 'full' / 'x').write_text('x')
  _one_line_error(
    capsys, ['export', '--workdir', str(run), '--out', str(tmp_path / 'full')], 'not empty'
  )
  assert not os.path.exists(out)


@pytest.mark.slow
def test_checkpoint_errors_leave_nothing(capsys, runs, tmp_path):
  out = tmp_path / 'out'
  _one_line_error(
    capsys,
    ['export', '--workdir', runs['dcgan'], '--out', str(out), '--step', '5'],
    'no checkpoint at step 5',
    '[3, 6]',
  )
  _one_line_error(
    capsys, ['export', '--workdir', runs['dcgan'], '--out', str(out), '--best'], 'best-FID'
  )
  assert os.listdir(tmp_path) == []


def test_console_script_error_exits_2_without_traceback(tmp_path):
  proc = subprocess.run(
    [GAN_JAX, 'export', '--workdir', str(tmp_path / 'nope'), '--out', str(tmp_path / 'o')],
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and 'does not exist' in lines[0], proc.stderr
