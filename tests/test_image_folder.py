"""Image folders as datasets ('folder:/path', gan_jax/data/image_folder.py), on real MNIST images
written out as PNG / JPEG / WebP from the TFDS build."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from gan_jax.data import pipeline as data, image_folder
from gan_jax.errors import ConfigError

N = 300


def _first(ds, n=1):
  iterator = ds.as_numpy_iterator()
  return [next(iterator) for _ in range(n)]


@pytest.fixture(scope='module')
def mnist(tfds_dir):
  """The first N TFDS MNIST train images (uint8 [N, 28, 28, 1]) and labels, in stored order."""
  batch = next(
    data.build_eval_dataset(
      'mnist', f'train[:{N}]', data_dir=tfds_dir, image_size=28, channels=1, batch_size=N
    ).as_numpy_iterator()
  )
  images = np.rint((batch['image'] + 1.0) * 127.5).astype(np.uint8)
  return images, batch['label']


def _write(folder, images, labels=None, ext='png', **save):
  """images[i] -> folder/<label>/<i>.<ext> (or folder/<i>.<ext> without labels)."""
  for i, img in enumerate(images):
    sub = folder if labels is None else folder / str(labels[i])
    sub.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img[..., 0]).save(sub / f'{i:05d}.{ext}', **save)


@pytest.fixture(scope='module')
def folders(mnist, tmp_path_factory):
  images, labels = mnist
  root = tmp_path_factory.mktemp('folders')
  _write(root / 'flat', images)
  _write(root / 'classes', images, labels)
  _write(root / 'jpeg', images, ext='jpg', quality=95)
  _write(root / 'webp', images[:50], ext='webp', lossless=True)
  return root


def _all(name, image_size=28, channels=1):
  """Every example of the folder, in order, as uint8 images and labels."""
  ds = data.build_eval_dataset(
    name, 'train', data_dir=None, image_size=image_size, channels=channels, batch_size=1000
  )
  batches = list(ds.as_numpy_iterator())
  images = np.concatenate([b['image'] for b in batches])
  return np.rint((images + 1.0) * 127.5).astype(np.uint8), np.concatenate(
    [b['label'] for b in batches]
  )


def test_png_folder_equals_tfds_exactly(folders, mnist):
  name = f'folder:{folders / "flat"}'
  images, labels = _all(name)
  np.testing.assert_array_equal(images, mnist[0])
  assert (labels == -1).all()
  assert data.check_dataset(name, 'train[:100]', data_dir=None) == 100
  assert data.label_classes(name, data_dir=None) is None
  # WebP (lossless) decodes to the same pixels.
  webp, _ = _all(f'folder:{folders / "webp"}')
  np.testing.assert_array_equal(webp, mnist[0][:50])


def test_jpeg_folder_is_close_to_tfds(folders, mnist):
  images, _ = _all(f'folder:{folders / "jpeg"}')
  err = np.abs(images.astype(np.float64) - mnist[0])
  assert err.mean() < 2.0, err.mean()


def test_class_subfolders_give_labels(folders, mnist):
  name = f'folder:{folders / "classes"}'
  images, labels = _all(name)
  order = np.lexsort((np.arange(N), mnist[1]))  # sorted paths: by class folder, then index
  np.testing.assert_array_equal(images, mnist[0][order])
  np.testing.assert_array_equal(labels, mnist[1][order])
  assert data.label_classes(name, data_dir=None) == 10
  cached = image_folder.load_cached(name, image_size=28, channels=1)
  assert cached.classes == tuple(str(k) for k in range(10))
  assert isinstance(cached.images, np.memmap) and cached.images.dtype == np.uint8
  # RGB output: gray tiled over 3 channels.
  rgb, _ = _all(name, channels=3)
  np.testing.assert_array_equal(rgb, np.repeat(mnist[0][order], 3, axis=-1))


def test_zip_reads_like_the_folder(folders, tmp_path):
  path = tmp_path / 'mnist.zip'
  with zipfile.ZipFile(path, 'w') as z:
    for f in sorted((folders / 'classes').rglob('*.png')):
      z.write(f, 'classes/' + f.relative_to(folders / 'classes').as_posix())
    z.writestr('__MACOSX/._junk.png', b'junk')
    z.writestr('classes/README.txt', 'not an image')
  a = _all(f'folder:{folders / "classes"}')
  b = _all(f'folder:{path}')
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert data.label_classes(f'folder:{path}', data_dir=None) == 10


def _train(name, **overrides):
  kwargs = dict(
    name=name,
    split='train[:100]',
    data_dir=None,
    image_size=28,
    channels=1,
    batch_size=8,
    seed=3,
    n_critic=2,
  )
  kwargs.update(overrides)
  return data.build_train_dataset(**kwargs)


def test_seeded_order_and_exact_resume(folders):
  name = f'folder:{folders / "classes"}'
  stream = _first(_train(name), 14)
  again = _first(_train(name), 3)
  other = _first(_train(name, seed=4), 1)
  for x, y in zip(stream, again):
    np.testing.assert_array_equal(x['image'], y['image'])
    np.testing.assert_array_equal(x['label'], y['label'])
  assert not np.array_equal(stream[0]['image'], other[0]['image'])
  for k in (1, 7, 13):  # 100 examples, 16 per step: 7 and 13 lie in reshuffled epochs
    resumed = _first(_train(name, start_step=k))[0]
    np.testing.assert_array_equal(resumed['image'], stream[k]['image'])
    np.testing.assert_array_equal(resumed['label'], stream[k]['label'])
  # Two processes keep disjoint halves of each global batch.
  halves = [_first(_train(name, process_index=i, process_count=2))[0] for i in (0, 1)]
  np.testing.assert_array_equal(
    np.concatenate([h['image'] for h in halves], axis=1), stream[0]['image']
  )
  assert stream[0]['label'].min() >= 0


def test_cache_is_keyed_by_content(folders, tmp_path):
  folder = tmp_path / 'f'
  shutil.copytree(folders / 'flat', folder)  # copy2 keeps sizes and mtimes
  name = f'folder:{folder}'
  key = image_folder.content_key(name)
  assert key == image_folder.content_key(f'folder:{folders / "flat"}')  # not the path
  first = image_folder.load_cached(name, image_size=28, channels=1)
  first_path, expected = first.path, np.array(first.images)  # a copy: no map on the damage
  del first
  assert image_folder.load_cached(name, image_size=28, channels=1).path == first_path
  # A damaged cache is decoded again, into the same place.
  stored = os.path.join(first_path, 'images.npy')
  with open(stored, 'r+b') as f:
    f.truncate(os.path.getsize(stored) // 2)
  again = image_folder.load_cached(name, image_size=28, channels=1)
  assert again.path == first_path
  np.testing.assert_array_equal(again.images, expected)

  @dataclasses.dataclass
  class Net:  # what reference_key reads of a feature network
    name: str = 'lenet_mnist'
    weights_sha256: str = '0' * 64

  from gan_jax.metrics.reference import reference_key

  ref = reference_key(name, 'train', (28, 28, 1), Net())
  assert '/' not in ref and ref.startswith(f'folder-{key[:16]}-crop-train-28x28x1')

  target = folder / '00007.png'
  st = target.stat()
  os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched
  touched = image_folder.content_key(name)
  assert touched != key
  assert reference_key(name, 'train', (28, 28, 1), Net()) != ref
  shutil.copy(folder / '00001.png', folder / 'zz_new.png')  # added
  added = image_folder.content_key(name)
  assert added not in (key, touched)
  cached = image_folder.load_cached(name, image_size=28, channels=1)
  assert cached.path != first_path and len(cached.images) == N + 1
  (folder / 'notes.txt').write_text('ignored')  # other files do not count
  (folder / '.hidden.png').write_bytes(b'skipped')  # nor do hidden ones
  os.symlink(folder, folder / 'loop')  # a link back up the tree is walked once
  os.symlink(folders / 'webp', folder / 'linked')  # a linked folder counts
  listing = image_folder.list_images(image_folder.parse_name(name))
  assert len(listing.files) == N + 1 + 50 and listing.files[-1] == 'zz_new.png'
  assert sum(f.startswith('loop/') for f in listing.files) == 0


def test_reference_statistics_of_a_folder_equal_tfds(folders, tfds_dir, tmp_path):
  from gan_jax.metrics.lenet import load_lenet
  from gan_jax.metrics.reference import load_reference

  net = load_lenet('mnist')
  kw = dict(image_size=28, channels=1, batch_size=N, cache_dir=str(tmp_path))
  ours = load_reference(f'folder:{folders / "flat"}', 'train', net, data_dir=None, **kw)
  theirs = load_reference('mnist', f'train[:{N}]', net, data_dir=tfds_dir, **kw)
  assert ours.path != theirs.path
  np.testing.assert_array_equal(ours.features, theirs.features)


def test_centre_crop_and_stretch(mnist, tmp_path):
  digit = mnist[0][0]
  wide = np.zeros((28, 56, 1), np.uint8)
  wide[:, 14:42] = digit
  _write(tmp_path / 'wide', [wide])
  crop, _ = _all(f'folder:{tmp_path / "wide"}')
  np.testing.assert_array_equal(crop[0], digit)  # the centre square is the digit
  stretched, _ = _all(f'folder:{tmp_path / "wide"}?resize=stretch', image_size=16)
  assert stretched.shape == (1, 16, 16, 1)
  # Upscaling needs upscale=yes.
  with pytest.raises(ConfigError, match=r'1 of 1 images are smaller than data.image_size=32'):
    _all(f'folder:{tmp_path / "wide"}', image_size=32)
  up, _ = _all(f'folder:{tmp_path / "wide"}?upscale=yes', image_size=32)
  assert up.shape == (1, 32, 32, 1)


def test_modes_decode_to_the_same_pixels(mnist, tmp_path):
  import io  # pylint: disable=g-import-not-at-top

  digit = mnist[0][1][..., 0]
  rgb = np.stack([digit, digit, digit], -1)
  encoded = {
    'L': Image.fromarray(digit),
    'LA': Image.fromarray(np.stack([digit, np.full_like(digit, 7)], -1), 'LA'),
    'RGBA': Image.fromarray(np.concatenate([rgb, np.full_like(rgb[..., :1], 9)], -1), 'RGBA'),
    'P': Image.fromarray(rgb).convert('P', palette=Image.Palette.ADAPTIVE, colors=256),
    'I;16': Image.fromarray(digit.astype(np.uint16) * 257),  # 16-bit: v * 257 -> v
  }
  for mode, img in encoded.items():
    buffer = io.BytesIO()
    img.save(buffer, 'PNG')
    for channels in (1, 3):
      arr, gray, size = image_folder.decode_image(buffer.getvalue(), 28, channels)
      assert size == (28, 28) and gray == (mode in ('L', 'LA', 'I;16')), mode
      expected = digit[..., None] if channels == 1 else rgb
      if mode == 'P':  # a 256-colour palette of a grayscale image keeps every level
        np.testing.assert_allclose(arr, expected, atol=1)
      else:
        np.testing.assert_array_equal(arr, expected, err_msg=f'{mode} -> {channels}')


def _one_line(excinfo):
  message = str(excinfo.value)
  assert '\n' not in message, message
  return message


def test_errors_are_one_line(folders, mnist, tmp_path):
  empty = tmp_path / 'empty'
  empty.mkdir()
  (empty / 'notes.txt').write_text('x')
  with pytest.raises(ConfigError, match=r'no images .* \(1 other files ignored\)') as e:
    _all(f'folder:{empty}')
  _one_line(e)
  with pytest.raises(ConfigError, match='no such folder') as e:
    data.check_dataset(f'folder:{tmp_path / "missing"}', 'train', data_dir=None)
  _one_line(e)
  with pytest.raises(ConfigError, match='unknown option') as e:
    data.check_dataset(f'folder:{folders / "flat"}?resize=zoom', 'train', data_dir=None)
  with pytest.raises(ConfigError, match="a folder is one split, 'train'"):
    data.check_dataset(f'folder:{folders / "flat"}', 'test', data_dir=None)

  # Truncated and unreadable files: counted, and the first few named.
  broken = tmp_path / 'broken'
  shutil.copytree(folders / 'flat', broken)
  for i in range(7):
    path = broken / f'{i:05d}.png'
    path.write_bytes(path.read_bytes()[:60])  # truncated
  (broken / '00000_garbage.jpg').write_bytes(b'not a jpeg at all')
  with pytest.raises(ConfigError, match=r'8 of 301 images cannot be read') as e:
    _all(f'folder:{broken}')
  message = _one_line(e)
  assert '00000.png (OSError: image file is truncated)' in message and '(8 in all)' in message
  assert '00000_garbage.jpg (not an image Pillow can decode)' in message

  # Grayscale mixed with colour, with channels=3.
  mixed = tmp_path / 'mixed'
  _write(mixed, mnist[0][:4])
  Image.fromarray(np.repeat(mnist[0][4], 3, axis=-1)).save(mixed / 'colour.png')
  with pytest.raises(ConfigError, match='mixes 4 grayscale and 1 colour') as e:
    _all(f'folder:{mixed}', channels=3)
  _one_line(e)
  assert _all(f'folder:{mixed}?mixed=convert', channels=3)[0].shape == (5, 28, 28, 3)
  assert _all(f'folder:{mixed}', channels=1)[0].shape == (5, 28, 28, 1)

  # Images beside the class folders: no labels for a conditional model.
  loose = tmp_path / 'loose'
  shutil.copytree(folders / 'classes', loose)
  shutil.copy(folders / 'flat' / '00000.png', loose / 'stray.png')
  with pytest.raises(ConfigError, match='1 images lie directly in the folder.*stray.png') as e:
    data.label_classes(f'folder:{loose}', data_dir=None)
  _one_line(e)


def test_config_validates_the_folder_name(tmp_path, monkeypatch):
  from gan_jax.config import base_config, validate

  config = base_config()
  config.data.name = f'folder:{tmp_path / "nowhere"}'
  with pytest.raises(ConfigError, match=r"data.name='folder:.*no such folder"):
    validate(config)
  config.data.name = f'folder:{tmp_path}'
  validate(config)
  # A run records the path absolute, options kept (defaults dropped).
  from gan_jax.training.train import resolve_config  # pylint: disable=g-import-not-at-top

  (tmp_path / 'sub').mkdir()
  monkeypatch.chdir(tmp_path)
  config.data.name = 'folder:sub?upscale=yes&resize=crop'
  assert resolve_config(config).data.name == f'folder:{tmp_path / "sub"}?upscale=yes'


def test_mnist_to_pngs_script(mnist, tfds_dir, tmp_path):
  import importlib.util  # pylint: disable=g-import-not-at-top

  from conftest import REPO  # pylint: disable=g-import-not-at-top

  spec = importlib.util.spec_from_file_location(
    'mnist_to_pngs', REPO / 'scripts' / 'mnist_to_pngs.py'
  )
  script = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(script)
  out = tmp_path / 'pngs'
  assert script.main(['--out', str(out), '--split', 'train[:40]', '--data-dir', tfds_dir]) == 0
  images, labels = _all(f'folder:{out}')
  order = np.lexsort((np.arange(40), mnist[1][:40]))
  np.testing.assert_array_equal(images, mnist[0][:40][order])
  # Labels index the class folders present (here digit 5 has none): classes[label] is the digit.
  classes = image_folder.load_cached(f'folder:{out}', image_size=28, channels=1).classes
  assert '5' not in classes and len(classes) == 9
  digits = np.array([int(c) for c in classes])[labels]
  np.testing.assert_array_equal(digits, mnist[1][:40][order])
  assert script.main(['--out', str(out), '--split', 'train[:1]', '--data-dir', tfds_dir]) == 2


def test_a_bad_image_fails_the_preflight_before_the_workdir_exists(folders, tmp_path):
  from conftest import load_experiment  # pylint: disable=g-import-not-at-top

  from gan_jax.training import train  # pylint: disable=g-import-not-at-top

  broken = tmp_path / 'broken'
  shutil.copytree(folders / 'flat', broken)
  (broken / '00003.png').write_bytes(b'')
  config = load_experiment('mnist_dcgan', 'tiny')
  config.data.name = f'folder:{broken}'
  with pytest.raises(ConfigError, match=r'1 of 300 images cannot be read.*00003.png'):
    train.preflight(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


@pytest.mark.slow
def test_gan_jax_train_on_a_class_folder(folders, tmp_path):
  """A tiny conditional run on the class folders: the labels flow into the model, the run
  folder records the classes, and a second command resumes it."""
  from conftest import REPO  # pylint: disable=g-import-not-at-top

  workdir = tmp_path / 'run'
  gan_jax = os.path.join(os.path.dirname(sys.executable), 'gan-jax')
  cmd = [
    gan_jax,
    'train',
    '--config',
    str(REPO / 'experiments' / 'mnist_cdcgan.py') + ':tiny',
    '--workdir',
    str(workdir),
    f'--config.data.name=folder:{folders / "classes"}',
  ]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  classes = json.loads((workdir / 'classes.json').read_text())
  assert classes['classes'] == [str(k) for k in range(10)] and classes['num_images'] == N
  summary = json.loads((workdir / 'summary.json').read_text())
  assert summary['end_step'] == 4
  # A folder without class subfolders cannot feed a conditional model: one line, exit != 0.
  proc = subprocess.run(
    cmd[:-1] + [f'--config.data.name=folder:{folders / "flat"}', '--workdir', str(tmp_path / 'b')],
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode != 0 and 'has no labels' in proc.stderr, proc.stderr[-2000:]
