"""`gan-jax eval` with the shipped MNIST LeNet: on a trained run, on a folder of PNG images,
the real-data floor, and usage errors (one line, exit status 2)."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from gan_jax.cli import main as cli
from gan_jax.core.sampling import to_uint8


def _mnist(tfds_dir, split):
  from gan_jax.data import pipeline as data

  ds = data.build_eval_dataset(
    'mnist', split, data_dir=tfds_dir, image_size=28, channels=1, batch_size=100000
  )
  return next(ds.as_numpy_iterator())['image']


@pytest.fixture(scope='module')
def png_folder(tmp_path_factory, tfds_dir):
  """1,000 real MNIST test digits written as PNG files."""
  folder = tmp_path_factory.mktemp('pngs')
  for i, img in enumerate(to_uint8(_mnist(tfds_dir, 'test[:1000]'))):
    Image.fromarray(img[..., 0]).save(folder / f'{i:05d}.png')
  return str(folder)


def _eval(capsys, *args):
  status = cli.main(['eval', *args])
  out = capsys.readouterr()
  return status, out.out, out.err


def test_eval_of_real_png_images_is_near_the_floor(png_folder, tfds_dir, tmp_path, capsys):
  out_json = str(tmp_path / 'real.json')
  status, out, err = _eval(
    capsys, '--images', png_folder, '--dataset', 'mnist', '--split', 'train[:10000]',
    '--data-dir', tfds_dir, '--metrics', 'fid,kid,is,pr', '--kid-pr-samples', '1000',
    '--out', out_json,
  )  # fmt: skip
  assert status == 0, err
  assert 'FID (LeNet)' in out and 'Inception' not in out
  report = json.load(open(out_json))
  r = report['results']
  assert report['feature_net'] == 'lenet_mnist' and len(report['feature_net_sha256']) == 64
  assert report['num_samples'] == 1000 and report['reference_count'] == 10000
  # Real test digits against real training digits: FID near 0 (1,000 samples: ~3.6 of bias),
  # KID within noise of 0, IS near the 10 classes, precision and recall high.
  assert r['fid_lenet'] < 6.0
  assert abs(r['kid_lenet']) < 3 * r['kid_lenet_std'] + 1e-3
  assert r['is_lenet'] > 9.0
  assert r['precision_lenet'] > 0.7 and r['recall_lenet'] > 0.7


def test_eval_of_a_trained_run_and_of_noise(tiny_config, tfds_dir, tmp_path, capsys):
  from gan_jax.training import train

  workdir = str(tmp_path / 'run')
  tiny_config.seed = 5  # not 0: `gan-jax eval` must take the run's seed, not a default
  tiny_config.eval_every = 3
  tiny_config.eval.metrics = 'fid,kid'
  train.train_and_evaluate(tiny_config, workdir)
  # With no settings given, `gan-jax eval` reproduces the run's own last evaluation (the
  # training loop's, metrics.jsonl): the same latents, split, sample counts and metrics.
  logged = [json.loads(l) for l in open(os.path.join(workdir, 'metrics.jsonl'))]
  last = [l for l in logged if 'eval/fid_lenet' in l][-1]
  assert last['step'] == 6
  same_json = str(tmp_path / 'same.json')
  status, _, err = _eval(capsys, '--workdir', workdir, '--out', same_json)
  assert status == 0, err
  same = json.load(open(same_json))
  assert same['seed'] == 5 and same['num_samples'] == 256 and same['split'] == 'train[:512]'
  assert same['metrics'] == ['fid', 'kid']
  for name in ('fid_lenet', 'kid_lenet'):
    assert same['results'][name] == pytest.approx(last[f'eval/{name}'], rel=1e-6, abs=1e-9)
  # Another seed draws other latents: another FID (by ~1e-4 of this untrained G's ~900).
  status, _, err = _eval(capsys, '--workdir', workdir, '--seed', '0', '--out', same_json)
  assert status == 0, err
  assert json.load(open(same_json))['results']['fid_lenet'] != pytest.approx(
    last['eval/fid_lenet'], rel=1e-6
  )
  status, out, err = _eval(
    capsys, '--workdir', workdir, '--num-samples', '500', '--metrics', 'fid,kid',
    '--split', 'train[:10000]',
  )  # fmt: skip
  assert status == 0, err
  report = json.load(open(os.path.join(workdir, 'eval_step6.json')))
  assert report['step'] == 6 and report['ema'] is True
  # Six steps of a width-8 DCGAN are far from digits: FID (LeNet) far above the real floor.
  assert report['results']['fid_lenet'] > 50
  assert 'FID (LeNet)' in out and f'wrote {workdir}' in out
  assert report['ema_batch_stats'] == 'raw'
  # The EMA generator with standing statistics (recomputed from its own weights): the same
  # latents through other BatchNorm statistics give another FID, recorded as such.
  standing_json = str(tmp_path / 'standing.json')
  status, _, err = _eval(
    capsys, '--workdir', workdir, '--num-samples', '500', '--metrics', 'fid,kid',
    '--split', 'train[:10000]', '--ema-stats', 'standing', '--out', standing_json,
  )  # fmt: skip
  assert status == 0, err
  standing = json.load(open(standing_json))
  assert standing['ema_batch_stats'] == 'standing'
  assert standing['results']['fid_lenet'] != pytest.approx(report['results']['fid_lenet'])


@pytest.mark.parametrize(
  'args, message',
  [
    (['--images', '/nonexistent', '--dataset', 'mnist'], 'is not a folder of PNG images'),
    (['--images', '/tmp'], '--images needs --dataset'),
    (['--workdir', '/tmp', '--images', '/tmp'], 'exactly one of --workdir'),
    (['--real-split', 'test'], '--real-split needs --dataset'),
    (['--images', '.', '--dataset', 'mnist'], 'holds no .png/.jpg files'),
    (['--workdir', '/nonexistent/run'], 'does not exist; train first'),
  ],
)
def test_eval_usage_errors(capsys, args, message):
  status, out, err = _eval(capsys, *args)
  assert status == 2
  assert err.startswith('gan-jax: error: ') and message in err and 'Traceback' not in err


def test_eval_bad_metric_and_missing_inception_weights(png_folder, tfds_dir, capsys, monkeypatch):
  status, _, err = _eval(
    capsys, '--images', png_folder, '--dataset', 'mnist', '--metrics', 'fid,fjd'
  )
  assert status == 2 and 'choose from fid,kid,is,pr,modes' in err
  monkeypatch.delenv('GAN_JAX_INCEPTION_WEIGHTS', raising=False)
  status, _, err = _eval(
    capsys, '--images', png_folder, '--dataset', 'mnist', '--feature-net', 'inception_v3',
    '--data-dir', tfds_dir,
  )  # fmt: skip
  assert status == 2
  assert 'pt_inception-2015-12-05-6726825d.pth' in err and 'https://' in err


def test_a_lenet_refuses_images_of_another_shape(tfds_dir, tmp_path, capsys):
  folder = tmp_path / 'rgb'
  folder.mkdir()
  for i in range(300):
    Image.fromarray(np.full((32, 32, 3), i % 255, np.uint8)).save(folder / f'{i}.png')
  status, _, err = _eval(
    capsys, '--images', str(folder), '--dataset', 'mnist', '--data-dir', tfds_dir
  )
  assert status == 2 and 'judges 28x28x1 images but the generator makes 32x32x3' in err


def test_real_split_floor(tfds_dir, tmp_path, capsys):
  out_json = str(tmp_path / 'floor.json')
  status, out, err = _eval(
    capsys, '--dataset', 'mnist', '--real-split', 'test[:2000]', '--split', 'train[:10000]',
    '--data-dir', tfds_dir, '--metrics', 'fid,kid', '--out', out_json,
  )  # fmt: skip
  assert status == 0, err
  report = json.load(open(out_json))
  assert report['num_samples'] == 2000 and report['real_split'] == 'test[:2000]'
  assert report['results']['fid_lenet'] < 3.0
