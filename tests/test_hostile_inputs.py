"""What `gan-jax sample`, `eval` and `edit` refuse before they allocate or write: grids over
the memory limit, scales out of range, output paths Pillow cannot write, non-finite edit
values, a garbled config.json in the run folder (issue 17, items 6-8). Each is one line and
exit status 2, with nothing written and nothing in the run folder changed."""

import hashlib
import os
import shutil

import jax
import numpy as np
import pytest
from PIL import Image

from gan_jax import main as cli
from gan_jax import sampling
from gan_jax.checkpoint import load_run


def test_grid_bytes_by_hand():
  # 10 images of 28x28x1, 4 per row (3 rows), 2-pixel borders, scale 3:
  # (3 * 30 + 2) * 3 rows of pixels x (4 * 30 + 2) * 3 columns x 1 channel.
  assert sampling.grid_bytes(10, (28, 28, 1), 4, 3) == (92 * 3) * (122 * 3)
  # Default ncol ceil(sqrt(10)) = 4; RGB triples it.
  assert sampling.grid_bytes(10, (28, 28, 3), None, 1) == 92 * 122 * 3
  # save_grid makes exactly that many bytes.
  images = np.zeros((10, 28, 28, 1), np.float32)
  grid = sampling.make_grid(images, 4)
  assert grid.size == sampling.grid_bytes(10, (28, 28, 1), 4, 1)


def test_checks_raise_one_line_value_errors(tmp_path):
  for scale in (0, -3, sampling.MAX_SCALE + 1):
    with pytest.raises(ValueError, match=f'--scale={scale} must be an integer from 1 to'):
      sampling.check_scale(scale)
  sampling.check_grid(64, (28, 28, 1), None, 2)
  with pytest.raises(ValueError, match=r'over the 1 GiB limit: lower --num or --scale'):
    sampling.check_grid(10_000_000, (28, 28, 1), None, 1)
  assert sampling.check_image_path(str(tmp_path / 'a.png')).endswith('a.png')
  assert sampling.check_image_path(str(tmp_path / 'a.JPG')).endswith('a.JPG')
  for bad, message in ((str(tmp_path), 'is a folder'), (str(tmp_path / 'a.txt'), '.txt is not'),
                       (str(tmp_path / 'grid'), 'no extension is not')):  # fmt: skip
    with pytest.raises(ValueError, match=message):
      sampling.check_image_path(bad)


@pytest.fixture(scope='module')
def run(tmp_path_factory, tfds_dir):
  from gan_jax import train
  from tests.conftest import load_experiment

  config = load_experiment('mnist_dcgan', 'tiny')
  config.data.data_dir = tfds_dir
  workdir = str(tmp_path_factory.mktemp('bounds') / 'run')
  train.train_and_evaluate(config, workdir)
  return workdir


def test_chunked_sampling_gives_the_same_images(run):
  _, gan, state = load_run(run)
  z = gan.sample_latents(jax.random.PRNGKey(3), 10)
  whole = np.asarray(sampling.sample(gan, state, z))
  chunked = sampling.sample_in_chunks(gan, state, z, chunk=3)
  assert chunked.shape == whole.shape == (10, 28, 28, 1)
  np.testing.assert_allclose(chunked, whole, atol=1e-6)
  np.testing.assert_array_equal(sampling.sample_in_chunks(gan, state, z), whole)


def _refused(capsys, argv, message):
  status = cli.main(argv)
  err = capsys.readouterr().err.strip()
  assert status == 2, err
  assert len(err.splitlines()) == 1 and message in err, err
  return err


def test_sample_refuses_before_allocating_or_writing(run, tmp_path, capsys):
  before = sorted(os.listdir(run))
  out = str(tmp_path / 'big.png')
  err = _refused(capsys, ['sample', '--workdir', run, '--num', '10000000', '--out', out],
                 'over the 1 GiB limit')  # fmt: skip
  assert '10000000 images of 28x28 at scale 2' in err
  for argv, message in (
    (['--scale', '0'], '--scale=0 must be an integer from 1 to 64'),
    (['--scale', '100000'], '--scale=100000 must be'),
    (['--out', str(tmp_path)], 'is a folder'),
    (['--out', str(tmp_path / 'x.jpgx')], '.jpgx is not an image format'),
  ):
    full = ['sample', '--workdir', run, '--num', '4', '--out', out] + argv
    _refused(capsys, full, message)
  assert not os.path.exists(out) and sorted(os.listdir(run)) == before
  # A grid just under the limit is written, with the same pixels as the default path.
  ok = str(tmp_path / 'ok.png')
  assert cli.main(['sample', '--workdir', run, '--num', '9', '--scale', '1', '--out', ok]) == 0
  assert Image.open(ok).size == (3 * 30 + 2,) * 2


def test_edit_refuses_non_finite_values(run, tmp_path, capsys):
  digit = str(tmp_path / 'digit.png')
  Image.fromarray(np.zeros((28, 28), np.uint8)).save(digit)
  out = str(tmp_path / 'edit.png')
  base = ['edit', '--workdir', run, '--image', digit, '--attribute', 'ink', '--out', out]
  for argv, message in (
    (['--strengths', 'nan,inf'], 'must be comma-separated finite numbers'),
    (['--strength', 'inf'], '--strength=inf must be a finite number'),
    (['--lr', 'nan'], '--lr=nan must be a positive finite number'),
    (['--lr', '0'], '--lr=0.0 must be a positive finite number'),
    (['--scale', '100000'], '--scale=100000 must be'),
  ):
    _refused(capsys, base + argv, message)
  _refused(capsys, base[:-1] + [str(tmp_path / 'e.txt')], '.txt is not an image format')
  assert not os.path.exists(out)


def _digest(folder):
  """SHA-256 of every file's relative path and bytes under `folder`."""
  h = hashlib.sha256()
  for root, _, files in sorted(os.walk(folder)):
    for name in sorted(files):
      path = os.path.join(root, name)
      h.update(os.path.relpath(path, folder).encode())
      with open(path, 'rb') as f:
        h.update(f.read())
  return h.hexdigest()


@pytest.mark.parametrize(
  'content, message',
  [
    (b'{"model": ', 'is not valid JSON (Expecting value'),
    (b'[1, 2]', 'holds a JSON list, not the object gan-jax train writes'),
    (b'{"model": {"name": "dcgan28"}}', 'does not describe a model gan-jax can build'),
    (b'\xff\xfe', "is not valid JSON ('utf-8' codec"),
  ],
)
def test_garbled_config_json_is_one_line(run, tmp_path, capsys, content, message):
  workdir = str(tmp_path / 'copy')
  shutil.copytree(run, workdir)
  with open(os.path.join(workdir, 'config.json'), 'wb') as f:
    f.write(content)
  before = _digest(workdir)
  out = str(tmp_path / 's.png')
  for argv in (
    ['sample', '--workdir', workdir, '--out', out],
    ['eval', '--workdir', workdir, '--num-samples', '100', '--out', str(tmp_path / 'e.json')],
  ):
    err = _refused(capsys, argv, message)
    assert 'config.json' in err and 'Traceback' not in err
  assert _digest(workdir) == before and not os.path.exists(out)


def test_eval_images_names_the_unreadable_file(tfds_dir, tmp_path, capsys, monkeypatch):
  folder = tmp_path / 'imgs'
  folder.mkdir()
  rng = np.random.default_rng(0)
  for i in range(200):  # FID (LeNet, 128 features) needs more than 128 images
    Image.fromarray(rng.integers(0, 256, (28, 28), np.uint8)).save(folder / f'{i:03d}.png')
  (folder / 'dir.png').mkdir()  # a folder named like an image is not an image
  good = (folder / '150.png').read_bytes()
  (folder / '150.png').write_bytes(good[: len(good) // 2])  # cut short
  base = ['eval', '--images', str(folder), '--dataset', 'mnist', '--data-dir', tfds_dir,
          '--split', 'train[:1000]', '--metrics', 'fid', '--out', str(tmp_path / 'e.json')]  # fmt: skip
  err = _refused(capsys, base, f'--images: {folder / "150.png"} cannot be read as an image')
  assert 'truncated' in err or 'OSError' in err
  (folder / '150.png').write_bytes(good)
  # A decompression bomb (here: any image over twice a lowered pixel limit) is refused too,
  # naming the file, instead of Pillow's traceback.
  monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 100)
  _refused(capsys, base, f'--images: {folder / "000.png"} cannot be read as an image '
           '(DecompressionBombError')  # fmt: skip
  monkeypatch.undo()
  assert cli.main(base) == 0, capsys.readouterr().err
  assert not os.path.exists(tmp_path / 'imgs' / 'e.json')
