"""Translation data sources (gan_jax/data/translation_sources.py, issue 19 item 3): A | B
pair folders, two unpaired folders and TFDS's cycle_gan/* (a fake build prepared offline in
tmp_path), each checked against the PNGs written here; the scripts' one-line errors; tiny
pix2pix and CycleGAN runs of the scripts on such folders."""

from __future__ import annotations

import json
import os
from unittest import mock

import numpy as np
import pytest
from PIL import Image

from conftest import load_script
from gan_jax.data import translation_sources as ts
from gan_jax.errors import ConfigError


def _script(name: str):
  return load_script(f'scripts/{name}.py')


def _write(folder, images):
  """uint8 images [N, H, W, C] (C = 1 or 3) -> folder/00000.png, ... (lossless)."""
  folder.mkdir(parents=True, exist_ok=True)
  for i, img in enumerate(images):
    Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(folder / f'{i:05d}.png')
  return folder


def _random(n, h, w, c, seed):
  return np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8)


def test_pair_folder_splits_into_the_a_and_b_halves(tmp_path):
  pairs = _random(5, 16, 32, 3, seed=0)
  folder = _write(tmp_path / 'pairs', pairs)
  data = ts.load(f'pairs:{folder}', image_size=16, num_train=100, num_test=2)
  assert (data.source, data.kind, data.name) == ('pairs', 'paired', f'pairs:{folder}')
  # The last 2 (sorted paths) are held out; the left half is A, the right half B.
  np.testing.assert_array_equal(data.train_a, pairs[:3, :, :16])
  np.testing.assert_array_equal(data.train_b, pairs[:3, :, 16:])
  np.testing.assert_array_equal(data.test_a, pairs[3:, :, :16])
  np.testing.assert_array_equal(data.test_b, pairs[3:, :, 16:])
  assert data.describe()['domains']['a'] == {'name': 'A', 'num_train': 3, 'num_test': 2}
  # num_train caps the training images; grayscale pairs keep one channel (channels=None).
  gray = _random(4, 8, 16, 1, seed=1)
  small = ts.load(f'pairs:{_write(tmp_path / "gray", gray)}', image_size=8, num_train=2, num_test=1)
  assert small.channels == 1
  np.testing.assert_array_equal(small.train_b, gray[:2, :, 8:])
  np.testing.assert_array_equal(small.test_a, gray[3:, :, :8])


def test_pair_halves_are_resized_each_on_its_own(tmp_path):
  """At a smaller model size each half is resized alone (Pillow bilinear, antialiased), so no
  pixel of A bleeds into B across the seam."""
  pairs = np.zeros((2, 16, 32, 3), np.uint8)
  pairs[:, :, 16:] = 255  # A black, B white: a resize of the whole image would blur the seam
  data = ts.load(f'pairs:{_write(tmp_path / "p", pairs)}', image_size=8, num_train=1, num_test=1)
  assert data.train_a.shape == (1, 8, 8, 3)
  assert (data.train_a == 0).all() and (data.test_b == 255).all()


def test_unpaired_folders_are_the_two_domains(tmp_path):
  a = _write(tmp_path / 'horses', _random(4, 8, 8, 3, seed=2))
  b = _write(tmp_path / 'zebras', _random(6, 8, 8, 3, seed=3))
  data = ts.load(f'unpaired:{a},{b}', image_size=8, num_train=100, num_test=1, kind='unpaired')
  assert (data.kind, data.domains, data.channels) == ('unpaired', ('horses', 'zebras'), 3)
  np.testing.assert_array_equal(data.train_a, _random(4, 8, 8, 3, seed=2)[:3])
  np.testing.assert_array_equal(data.test_a, _random(4, 8, 8, 3, seed=2)[3:])
  np.testing.assert_array_equal(data.train_b, _random(6, 8, 8, 3, seed=3)[:5])
  np.testing.assert_array_equal(data.test_b, _random(6, 8, 8, 3, seed=3)[5:])
  # Given channels convert both domains (here to BT.601 luma, as image_folder does).
  gray = ts.load(f'unpaired:{a},{b}', image_size=8, channels=1, num_train=1, num_test=1)
  assert gray.train_a.shape == (1, 8, 8, 1)


@pytest.fixture
def folders(tmp_path):
  """Folders for each bad input of the scripts."""
  return {
    'pairs': _write(tmp_path / 'pairs', _random(3, 16, 32, 3, seed=4)),
    'square': _write(tmp_path / 'square', _random(3, 16, 16, 3, seed=5)),
    'gray': _write(tmp_path / 'gray', _random(3, 16, 16, 1, seed=6)),
    'colour': _write(tmp_path / 'colour', _random(3, 16, 16, 3, seed=7)),
  }


def _fails(capsys, script, argv, *fragments):
  with pytest.raises(SystemExit) as e:
    _script(script).main(argv)
  assert e.value.code == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith(f'{script}.py: error: ') and '\n' not in err, err
  for fragment in fragments:
    assert fragment in err, err


def test_bad_data_ends_with_one_line_and_status_2(folders, tmp_path, capsys):
  f, out = folders, str(tmp_path / 'out')
  p2p = ['--tiny', '--image-size', '16', '--num-test', '1', '--out', out, '--data']
  cg = ['--tiny', '--image-size', '16', '--num-test', '1', '--out', out, '--data']
  _fails(capsys, 'pix2pix_task', [*p2p, f'pairs:{tmp_path / "nope"}'], 'no such folder')
  _fails(
    capsys, 'pix2pix_task', [*p2p, f'pairs:{f["square"]}'],
    '3 of 3 images are not A | B pairs', '00000.png (16x16)',
  )  # fmt: skip
  _fails(capsys, 'pix2pix_task', [*p2p, f'pairs:{f["pairs"]}', '--image-size', '32'],
         'smaller than --image-size=32')  # fmt: skip
  _fails(capsys, 'pix2pix_task', [*p2p, f'unpaired:{f["gray"]},{f["colour"]}'],
         'gives unpaired images, but pix2pix trains on paired ones')  # fmt: skip
  _fails(capsys, 'cyclegan_task', [*cg, f'unpaired:{f["gray"]},{tmp_path / "nope"}'],
         "(domain B)=", 'no such folder')  # fmt: skip
  _fails(capsys, 'cyclegan_task', [*cg, f'unpaired:{f["gray"]},{f["colour"]}'],
         'different channel counts, A grayscale (1 channel) and B colour (3 channels)')  # fmt: skip
  _fails(capsys, 'cyclegan_task', [*cg, 'cycle_gan/horse2zebraa'],
         'not a TFDS CycleGAN dataset', 'horse2zebra, ')  # fmt: skip
  _fails(capsys, 'cyclegan_task', [*cg, f'pairs:{f["pairs"]}'], 'CycleGAN trains on unpaired')
  _fails(capsys, 'cyclegan_task', [*cg, f'unpaired:{f["gray"]},{f["gray"]}', '--num-test', '3'],
         'holds 3 images: holding out the last 3 leaves none')  # fmt: skip
  assert not os.path.exists(out)  # nothing written


def test_tiny_pix2pix_trains_on_a_pair_folder(tmp_path):
  pairs = _random(6, 16, 32, 3, seed=8)
  folder = _write(tmp_path / 'pairs', pairs)
  out = tmp_path / 'run'
  result = _script('pix2pix_task').main(
    ['--data', f'pairs:{folder}', '--tiny', '--steps', '1', '--image-size', '16',
     '--num-test', '2', '--out', str(out)]
  )  # fmt: skip
  assert result['task']['task'] == 'pairs' and result['task']['num_train'] == 4
  # The baseline copies the input: its PSNR against the target, from the PNGs in numpy.
  a, b = pairs[4:, :, :16] / 255.0, pairs[4:, :, 16:] / 255.0
  psnr = np.mean(10 * np.log10(1.0 / ((a - b) ** 2).mean(axis=(1, 2, 3))))
  np.testing.assert_allclose(result['baseline']['psnr'], psnr, rtol=1e-4)
  record = json.loads((out / 'translation_run.json').read_text())
  assert record['task']['dataset'] == f'pairs:{folder}'
  assert record['image_shapes'] == {'a': [16, 16, 3], 'b': [16, 16, 3]}
  assert np.isfinite(result['history'][-1]['g_loss'])


def test_tiny_cyclegan_trains_on_two_folders(tmp_path):
  a = _random(5, 16, 16, 1, seed=9)
  b = _random(7, 16, 16, 1, seed=10)
  fa, fb = _write(tmp_path / 'a', a), _write(tmp_path / 'b', b)
  out = tmp_path / 'run'
  result = _script('cyclegan_task').main(
    ['--data', f'unpaired:{fa},{fb}', '--tiny', '--image-size', '16', '--num-test', '2',
     '--out', str(out)]
  )  # fmt: skip
  assert result['task']['domains']['b'] == {'name': 'b', 'num_train': 5, 'num_test': 2}
  scores = result['runs'][0]['scores']['a2b']
  assert scores['accuracy'] is None and scores['fid'] is None  # no classifier for own data
  # The cycle baseline: mean |m - x|, m the mean training image of A, x held-out A images.
  unit = lambda x: x.astype(np.float64) / 127.5 - 1.0
  baseline = np.abs(unit(a[3:]) - unit(a[:3]).mean(axis=0)).mean()
  np.testing.assert_allclose(scores['baseline_cycle_l1'], baseline, rtol=1e-5)
  assert 0 <= scores['cycle_l1'] <= 2
  assert json.loads((out / 'seed_0' / 'args.json').read_text())['data'].startswith('unpaired:')


@pytest.fixture(scope='module')
def fake_cycle_gan(tmp_path_factory):
  """TFDS's real cycle_gan/horse2zebra builder, prepared offline in a tmp data dir from PNGs
  written here (its download replaced by the folder): {split: images}, data_dir."""
  import tensorflow_datasets as tfds

  root = tmp_path_factory.mktemp('cycle_gan_src')
  images = {}
  for i, split in enumerate(ts.CYCLE_GAN_SPLITS):
    images[split] = _random(3 + i, 16, 16, 3, seed=20 + i)
    _write(root / 'horse2zebra' / split, images[split])
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  with mock.patch.object(
    tfds.download.DownloadManager, 'download_and_extract', return_value=str(root)
  ):
    tfds.builder('cycle_gan/horse2zebra', data_dir=data_dir).download_and_prepare()
  return images, data_dir


def _sorted(images):
  return sorted(x.tobytes() for x in images)


def test_cycle_gan_reads_a_prepared_tfds_build(fake_cycle_gan):
  images, data_dir = fake_cycle_gan
  data = ts.load(
    'cycle_gan/horse2zebra', image_size=16, num_train=100, num_test=4, data_dir=data_dir,
    kind='unpaired',
  )  # fmt: skip
  assert (data.kind, data.domains) == ('unpaired', ('horse', 'zebra'))
  # TFDS stores examples in its own order: compare the sets of images.
  assert _sorted(data.train_a) == _sorted(images['trainA'])
  assert _sorted(data.train_b) == _sorted(images['trainB'])
  for split, held_out in (('testA', data.test_a), ('testB', data.test_b)):  # 5 and 6 stored
    assert len(held_out) == 4 and set(_sorted(held_out)) <= set(_sorted(images[split]))
  few = ts.load('cycle_gan/horse2zebra', image_size=16, num_train=2, num_test=1, data_dir=data_dir)
  assert few.train_a.shape == (2, 16, 16, 3) and few.test_b.shape == (1, 16, 16, 3)
  from gan_jax.data.tfds_images import DatasetNotFoundError

  with pytest.raises(DatasetNotFoundError, match="'cycle_gan/maps'.*not found"):
    ts.load('cycle_gan/maps', image_size=16, num_train=1, num_test=1, data_dir=data_dir)
  with pytest.raises(ConfigError, match='not a TFDS CycleGAN dataset'):
    ts.check('cycle_gan/zebra2horse')
