"""The data-source registry (`gan_jax.data.sources`): which entry serves a `data.name`, and a
source registered from outside the package (a toy, here) read, checked and trained on
through the ordinary path, then unregistered."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from gan_jax import config as config_lib
from gan_jax.data import pipeline as data_lib
from gan_jax.data import sources as data_sources
from gan_jax.errors import ConfigError

N, K = 64, 4  # the toy's examples and classes


def toy_images() -> tuple[np.ndarray, np.ndarray]:
  """uint8 [N, 28, 28, 1]: image i has a bright stripe on row 4 * (i % 7) over a dark
  background of value i; int32 labels i % K."""
  images = np.zeros((N, 28, 28, 1), np.uint8)
  for i in range(N):
    images[i] = i
    images[i, 4 * (i % 7) : 4 * (i % 7) + 3] = 255
  return images, np.arange(N, dtype=np.int32) % K


def _load(name, split, *, data_dir, image_size, channels, download):
  del name, data_dir, download
  import functools  # pylint: disable=g-import-not-at-top

  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from gan_jax.data import image_folder, tfds_images  # pylint: disable=g-import-not-at-top

  images, labels = toy_images()
  lo, hi = image_folder.split_range(split, N, 'toy')
  ds = tf.data.Dataset.from_tensor_slices({'image': images[lo:hi], 'label': labels[lo:hi]})
  process = functools.partial(tfds_images.preprocess, image_size=image_size, channels=channels)
  return ds.map(process), hi - lo


def _count(name, split, *, data_dir, download, fields):
  from gan_jax.data import image_folder  # pylint: disable=g-import-not-at-top

  lo, hi = image_folder.split_range(split, N, name)
  return hi - lo


def _check(config):
  if not config.data.split.startswith('train'):
    raise ConfigError(f'data.split={config.data.split!r} is invalid: toy has one split, train.')


TOY = data_sources.DataSource(
  'toy',
  _load,
  _count,
  lambda *a, **k: K,
  exact=('toy_stripes',),
  image_shape=(28, 28, 1),
  check=_check,
  summary='64 striped 28x28 images in 4 classes',
)


@pytest.fixture
def toy():
  """The toy source registered for one test, and unregistered after it even if it fails."""
  data_sources.register(TOY)
  try:
    yield TOY
  finally:
    data_sources.unregister('toy')


def test_names_are_matched_exactly_then_by_the_longest_prefix_then_by_tfds():
  pick = lambda name: data_sources.source_for(name).name  # noqa: E731
  assert pick('mnist') == 'tfds' and pick('cifar10_jpeg') == 'tfds'
  assert pick('stacked_mnist') == 'stacked_mnist'
  assert pick('stacked_mnist2') == 'tfds'  # exact, not a prefix
  assert pick('folder:/data/x?resize=stretch') == 'folder'
  assert pick('folder') == 'tfds'  # no colon: a (bad) TFDS name, as before the registry
  special = data_sources.DataSource('special', None, None, None, prefix='folder:special:')
  data_sources.register(special)
  try:
    assert pick('folder:special:/x') == 'special'  # the longer prefix wins
    assert pick('folder:/special') == 'folder'
  finally:
    data_sources.unregister('special')
  assert pick('folder:special:/x') == 'folder'


def test_the_built_in_entries_agree_with_their_modules():
  from gan_jax.data import image_folder, stacked_mnist  # pylint: disable=g-import-not-at-top

  entry = data_sources.SOURCES['stacked_mnist']
  assert entry.exact == (stacked_mnist.NAME,)
  assert entry.image_shape == stacked_mnist.IMAGE_SHAPE
  assert entry.num_classes('stacked_mnist', 'train', data_dir=None, download=False) == (
    stacked_mnist.NUM_MODES
  )
  assert data_sources.SOURCES['folder'].prefix == image_folder.PREFIX
  assert [s.name for s in data_sources.SOURCES.values() if s.catch_all] == ['tfds']


def test_register_refuses_a_second_catch_all_and_an_entry_that_matches_nothing():
  with pytest.raises(ValueError, match='catch-all entry already'):
    data_sources.register(data_sources.DataSource('tfds2', None, None, None, catch_all=True))
  with pytest.raises(ValueError, match='matches no name'):
    data_sources.register(data_sources.DataSource('nothing', None, None, None))
  with pytest.raises(ValueError, match='registered already'):
    data_sources.register(data_sources.SOURCES['folder'])
  assert list(data_sources.SOURCES) == ['tfds', 'stacked_mnist', 'folder']


def test_a_toy_source_is_read_and_checked_through_its_entry(toy, tiny_config):
  assert data_lib.check_dataset('toy_stripes', 'train[:40]', data_dir=None) == 40
  assert data_lib.label_classes('toy_stripes', data_dir=None) == K
  batches = list(
    data_lib.build_eval_dataset(
      'toy_stripes', 'train', data_dir=None, image_size=28, channels=3, batch_size=50
    ).as_numpy_iterator()
  )
  images, labels = toy_images()
  got = np.concatenate([b['image'] for b in batches])
  # The reference: uint8 x -> x / 127.5 - 1, gray tiled to RGB.
  np.testing.assert_allclose(got, np.repeat(images / 127.5 - 1, 3, axis=-1), atol=1e-6)
  np.testing.assert_array_equal(np.concatenate([b['label'] for b in batches]), labels)
  c = tiny_config
  c.data.name, c.data.split = 'toy_stripes', 'train'
  config_lib.validate(c)
  c.data.split = 'test'
  with pytest.raises(ConfigError, match="data.split='test' is invalid: toy has one split"):
    config_lib.validate(c)


def test_a_toy_source_trains_a_conditional_gan_through_the_ordinary_path(
  toy, tiny_config, tmp_path
):
  from gan_jax.training import run_setup, train  # pylint: disable=g-import-not-at-top

  c = tiny_config
  c.data.name, c.data.split = 'toy_stripes', 'train'
  c.model.num_classes = K  # preflight asks the entry for its classes
  images, labels = toy_images()
  # The first training batch holds toy examples, each with its own label.
  config, _ = run_setup.preflight(c, str(tmp_path / 'pre'))
  batch = next(run_setup.host_batches(config, 0))
  assert batch['image'].shape == (c.train.n_critic, c.train.batch_size, 28, 28, 1)
  for image, label in zip(batch['image'][0], batch['label'][0]):
    i = int(np.argmin(np.abs(images / 127.5 - 1 - image).reshape(N, -1).max(1)))
    np.testing.assert_allclose(image, images[i] / 127.5 - 1, atol=1e-6)
    assert label == labels[i]
  workdir = str(tmp_path / 'run')
  state = train.train_and_evaluate(c, workdir)
  assert int(state.step) == c.train.steps
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['data']['name'] == 'toy_stripes'
  c.model.num_classes = K + 1
  with pytest.raises(ConfigError, match=f'has {K} classes'):
    run_setup.preflight(c, str(tmp_path / 'other'))


def test_unregistering_the_toy_hands_its_name_back_to_tfds():
  data_sources.register(TOY)
  assert data_sources.source_for('toy_stripes') is TOY
  data_sources.unregister('toy')
  assert data_sources.source_for('toy_stripes').name == 'tfds'
  with pytest.raises(data_lib.DatasetNotFoundError):
    data_lib.check_dataset('toy_stripes', 'train', data_dir=str(os.path.dirname(__file__)))
