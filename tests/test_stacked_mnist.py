"""Stacked MNIST (gan_jax.data.stacked_mnist) and the mode-coverage metric, on the real MNIST build.

The last test classifies 26,000 real Stacked-MNIST images with the pinned MNIST LeNet and
needs its weights (gan_jax/metrics/weights/lenet_mnist.msgpack); it fails, never skips,
without them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow_datasets as tfds

from gan_jax.data import pipeline as data
from gan_jax.data import stacked_mnist as sm
from gan_jax.metrics import mode_coverage as mc
from gan_jax.metrics.features import FeatureNet

# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def mnist(tfds_dir):
  """Raw MNIST read straight from TFDS: {split: (images uint8 [M, 28, 28], labels [M])}."""
  out = {}
  for split in ('train', 'test'):
    ds = tfds.builder('mnist', data_dir=tfds_dir).as_dataset(split=split, batch_size=-1)
    batch = tfds.as_numpy(ds)
    out[split] = (batch['image'][..., 0], batch['label'])
  return out


@pytest.fixture(scope='module')
def train26k(tfds_dir):
  """The first 26,000 examples of 'train' (26 blocks): (images, modes, digits)."""
  return sm.stacked_mnist_arrays('train[:26000]', data_dir=tfds_dir)


def _label_of_image(mnist_split):
  """Maps each MNIST image's bytes to the set of labels it carries."""
  images, labels = mnist_split
  table: dict[bytes, set[int]] = {}
  for image, label in zip(images, labels):
    table.setdefault(image.tobytes(), set()).add(int(label))
  return table


# --- the dataset ----------------------------------------------------------------------------


def test_arrays_shapes_dtypes_and_mode_digits(train26k):
  images, modes, digits = train26k
  assert images.shape == (26_000, 28, 28, 3) and images.dtype == np.uint8
  assert modes.shape == (26_000,) and modes.dtype == np.int32
  assert digits.shape == (26_000, 3) and digits.dtype == np.int32
  np.testing.assert_array_equal(modes, digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2])
  assert digits.min() == 0 and digits.max() == 9


def test_every_block_of_1000_holds_each_mode_exactly_once(train26k, tfds_dir):
  _, modes, _ = train26k
  np.testing.assert_array_equal(
    np.sort(modes.reshape(26, 1000), axis=1), np.tile(np.arange(1000), (26, 1))
  )
  assert (np.bincount(modes, minlength=1000) == 26).all()
  _, test_modes, _ = sm.stacked_mnist_arrays('test', data_dir=tfds_dir)
  assert test_modes.shape == (10_000,)
  assert (np.bincount(test_modes, minlength=1000) == 10).all()


def test_each_channel_is_an_mnist_image_of_its_digit(train26k, mnist, tfds_dir):
  images, _, digits = train26k
  table = _label_of_image(mnist['train'])
  for c in range(3):
    for image, digit in zip(images[..., c], digits[:, c]):
      assert int(digit) in table[image.tobytes()]
  # 'test' examples draw from MNIST 'test' only.
  test_images, _, test_digits = sm.stacked_mnist_arrays('test[:1000]', data_dir=tfds_dir)
  test_table = _label_of_image(mnist['test'])
  for c in range(3):
    for image, digit in zip(test_images[..., c], test_digits[:, c]):
      assert int(digit) in test_table[image.tobytes()]
  # The picks vary: many different MNIST images per digit and channel.
  assert len({im.tobytes() for im in images[:2000, :, :, 0]}) > 1900


def test_deterministic_in_split_seed_and_index(train26k, tfds_dir):
  images, modes, _ = train26k
  again = sm.stacked_mnist_arrays('train[:2000]', data_dir=tfds_dir, seed=0)
  np.testing.assert_array_equal(again[0], images[:2000])
  np.testing.assert_array_equal(again[1], modes[:2000])
  # Example k depends on the index only, not on the slice or on the dataset's length.
  part = sm.stacked_mnist_arrays('train[1500:2500]', data_dir=tfds_dir, num_examples=3000)
  np.testing.assert_array_equal(part[0], images[1500:2500])
  np.testing.assert_array_equal(part[1], modes[1500:2500])
  # Pinned: the first modes of seed 0 (a change here changes the dataset itself).
  np.testing.assert_array_equal(modes[:5], [962, 639, 755, 111, 951])
  other = sm.stacked_mnist_arrays('train[:2000]', data_dir=tfds_dir, seed=1)
  assert (other[1] != modes[:2000]).mean() > 0.99
  assert (other[0] != images[:2000]).any(axis=(1, 2, 3)).mean() > 0.99
  test = sm.stacked_mnist_arrays('test[:1000]', data_dir=tfds_dir)
  assert (test[1] != modes[:1000]).mean() > 0.99  # 'test' has its own order.


def test_num_examples_and_slicing(tfds_dir):
  images, modes, digits = sm.stacked_mnist_arrays('train', data_dir=tfds_dir, num_examples=2000)
  assert images.shape == (2000, 28, 28, 3) and modes.shape == (2000,) and digits.shape == (2000, 3)
  assert sm.stacked_mnist_arrays('test[:10%]', data_dir=tfds_dir)[1].shape == (1000,)
  both = sm.stacked_mnist_arrays('train[:5]+test[:5]', data_dir=tfds_dir)[1]
  assert both.shape == (10,)


def test_bad_arguments(tfds_dir, tmp_path):
  with pytest.raises(ValueError, match=r"'validation'.*Available splits: 'train' \(60000"):
    sm.stacked_mnist_arrays('validation', data_dir=tfds_dir)
  with pytest.raises(ValueError, match='Available splits'):
    sm.stacked_mnist_arrays('test[:20000]', data_dir=tfds_dir)
  for bad in (0, 1500, -1000, 2.5e3):
    with pytest.raises(ValueError, match='multiple of 1000'):
      sm.stacked_mnist_arrays('train', data_dir=tfds_dir, num_examples=bad)
  for bad in (-1, 1.5, None):
    with pytest.raises(ValueError, match='seed'):
      sm.stacked_mnist_arrays('train', data_dir=tfds_dir, seed=bad)
  with pytest.raises(data.DatasetNotFoundError, match="'mnist'") as info:
    sm.stacked_mnist_arrays('train', data_dir=str(tmp_path))
  assert info.value.name == 'mnist' and list(tmp_path.iterdir()) == []


# --- through gan_jax.data.pipeline --------------------------------------------------------------------


def test_eval_dataset_equals_the_arrays_scaled(tfds_dir):
  images, modes, _ = sm.stacked_mnist_arrays('test', data_dir=tfds_dir)
  ds = data.build_eval_dataset(
    'stacked_mnist', 'test', data_dir=tfds_dir, image_size=28, channels=3, batch_size=1000
  )
  batches = list(ds.as_numpy_iterator())
  assert [b['image'].shape for b in batches] == [(1000, 28, 28, 3)] * 10
  np.testing.assert_array_equal(np.concatenate([b['label'] for b in batches]), modes)
  got = np.concatenate([b['image'] for b in batches])
  assert got.dtype == np.float32 and got.min() == -1.0 and got.max() == 1.0
  np.testing.assert_array_equal(got, images.astype(np.float32) / 127.5 - 1.0)


def test_train_dataset_batches(train26k, tfds_dir):
  images, modes, _ = train26k
  ds = data.build_train_dataset(
    'stacked_mnist',
    'train[:2048]',
    data_dir=tfds_dir,
    image_size=28,
    channels=3,
    batch_size=16,
    seed=0,
    n_critic=2,
  )
  batch = next(ds.as_numpy_iterator())
  assert batch['image'].shape == (2, 16, 28, 28, 3) and batch['image'].dtype == np.float32
  assert -1.0 <= batch['image'].min() and batch['image'].max() <= 1.0
  assert batch['label'].shape == (2, 16) and batch['label'].dtype == np.int32
  # Every train example is one of the stacked examples, with its mode as the label.
  index = {image.tobytes(): i for i, image in enumerate(images[:2048])}
  for image, label in zip(batch['image'].reshape(-1, 28, 28, 3), batch['label'].reshape(-1)):
    i = index[np.rint((image + 1.0) * 127.5).astype(np.uint8).tobytes()]
    assert modes[i] == label
  # Multi-process sharding (tfds.even_splits objects) splits the stacked examples.
  shard = data.build_train_dataset(
    'stacked_mnist',
    'train[:2000]',
    data_dir=tfds_dir,
    image_size=28,
    channels=3,
    batch_size=16,
    seed=0,
    process_index=1,
    process_count=2,
  )
  assert next(shard.as_numpy_iterator())['image'].shape == (1, 8, 28, 28, 3)


def test_other_sizes_and_channels_use_the_normal_conversion(tfds_dir):
  gray = data.load_images('stacked_mnist', 'test[:4]', data_dir=tfds_dir, image_size=32, channels=1)
  examples = list(gray.as_numpy_iterator())
  assert len(examples) == 4 and examples[0]['image'].shape == (32, 32, 1)
  assert -1.0 <= min(e['image'].min() for e in examples)


# --- the metric ------------------------------------------------------------------------------


def _all_digits():
  modes = np.arange(1000)
  return np.stack([modes // 100, modes // 10 % 10, modes % 10], axis=1)


def test_mode_coverage_of_synthetic_digits():
  digits = _all_digits()
  assert mc.mode_coverage(digits) == {'modes_covered': 1000, 'kl': 0.0}
  assert mc.mode_coverage(np.tile(digits, (26, 1)))['kl'] == pytest.approx(0.0, abs=1e-12)
  single = mc.mode_coverage(np.tile([[3, 1, 4]], (500, 1)))
  assert single['modes_covered'] == 1
  assert single['kl'] == pytest.approx(math.log(1000))
  half = mc.mode_coverage(np.array([[0, 0, 1]] * 5 + [[9, 9, 9]] * 5))
  assert half['modes_covered'] == 2 and half['kl'] == pytest.approx(math.log(500))
  hist = mc.mode_histogram(np.array([[3, 1, 4], [3, 1, 4], [0, 0, 0]]))
  assert hist.dtype == np.int64 and hist.shape == (1000,)
  assert hist[314] == 2 and hist[0] == 1 and hist.sum() == 3


@pytest.mark.parametrize(
  'digits,match',
  [
    (np.zeros((5, 2), np.int32), r'shape \[N, 3\]'),
    (np.zeros((3,), np.int32), r'shape \[N, 3\]'),
    (np.array([[1, 2, 10]]), r'\[0, 9\]'),
    (np.array([[-1, 2, 3]]), r'\[0, 9\]'),
    (np.array([[1.0, 2.0, 3.0]]), 'integers'),
    (np.zeros((0, 3), np.int32), 'empty'),
  ],
)
def test_mode_coverage_rejects_bad_digits(digits, match):
  with pytest.raises(ValueError, match=match):
    mc.mode_coverage(digits)


def _intensity_classifier() -> FeatureNet:
  """A stand-in "MNIST classifier": digit k <=> a constant image of value -1 + 2k/9."""
  centres = -1.0 + 2.0 * np.arange(10, dtype=np.float32) / 9.0

  def apply(images):
    mean = np.asarray(images).mean(axis=(1, 2, 3))
    return mean[:, None], -((mean[:, None] - centres) ** 2)

  return FeatureNet('intensity', 'test', '0' * 64, 1, 10, (28, 28, 1), apply)


def _constant_images(digits):
  values = (-1.0 + 2.0 * digits.astype(np.float32) / 9.0)[:, None, None, :]
  return np.broadcast_to(values, (len(digits), 28, 28, 3)).copy()


def test_classify_and_stream_with_a_stand_in_classifier():
  rng = np.random.default_rng(0)
  digits = rng.integers(0, 10, (2500, 3))
  images = _constant_images(digits)
  net = _intensity_classifier()
  got = mc.classify_stacked(images, net, batch_size=64)  # Many batches, a padded last one.
  assert got.dtype == np.int32 and got.shape == (2500, 3)
  np.testing.assert_array_equal(got, digits)
  assert mc.classify_stacked(images[:0], net).shape == (0, 3)
  expected = mc.mode_coverage(digits[:2300])
  batches = [images[i : i + 100] for i in range(0, 2500, 100)]
  streamed = mc.stacked_mnist_coverage(iter(batches), net, num_samples=2300, batch_size=50)
  assert streamed == {**expected, 'num_samples': 2300}
  dicts = ({'image': b, 'label': np.zeros(len(b))} for b in batches)
  assert mc.stacked_mnist_coverage(dicts, net, num_samples=2300) == streamed
  calls = []

  def sample_fn(n):
    calls.append(n)
    start = 128 * (len(calls) - 1)
    return images[start : start + n]

  assert mc.stacked_mnist_coverage(sample_fn, net, num_samples=2300, batch_size=128) == streamed
  assert calls == [128] * 18  # ceil(2300 / 128) calls of batch_size each.


def test_coverage_input_errors():
  net = _intensity_classifier()
  good = _constant_images(np.zeros((4, 3), np.int32))
  for bad, match in [
    (np.zeros((4, 28, 28, 1), np.float32), r'\[N, 28, 28, 3\].*3 channels'),
    (np.zeros((28, 28, 3), np.float32), r'\[N, 28, 28, 3\].*batch axis'),
    (np.zeros((4, 32, 32, 3), np.float32), r'\[N, 28, 28, 3\]'),
    (np.zeros((4, 28, 28, 3), np.uint8), 'float'),
    (np.where(np.arange(4)[:, None, None, None] == 2, np.nan, good), 'NaN'),
  ]:
    with pytest.raises(ValueError, match=match):
      mc.classify_stacked(bad, net)
    with pytest.raises(ValueError, match=match):
      mc.stacked_mnist_coverage([bad], net, num_samples=4)
  for n in (0, -5):
    with pytest.raises(ValueError, match='num_samples'):
      mc.stacked_mnist_coverage([good], net, num_samples=n)
  with pytest.raises(ValueError, match='ran out after 4 images'):
    mc.stacked_mnist_coverage([good], net, num_samples=5)
  with pytest.raises(ValueError, match='empty batch'):
    mc.stacked_mnist_coverage(lambda n: good[:0], net, num_samples=5)
  with pytest.raises(ValueError, match='batch_size'):
    mc.classify_stacked(good, net, batch_size=0)
  wrong = FeatureNet('rgb', 'test', '0' * 64, 1, 10, (28, 28, 3), net.apply)
  with pytest.raises(ValueError, match='10-class MNIST classifier'):
    mc.classify_stacked(good, wrong)


def test_real_stacked_mnist_covers_all_modes_with_the_lenet(tfds_dir, train26k):
  from gan_jax.metrics.lenet import load_lenet  # pylint: disable=g-import-not-at-top

  net = load_lenet('mnist')  # Fails (RuntimeError) if the pinned weights are missing.
  ds = data.build_eval_dataset(
    'stacked_mnist',
    'train[:26000]',
    data_dir=tfds_dir,
    image_size=28,
    channels=3,
    batch_size=1000,
  )
  result = mc.stacked_mnist_coverage(ds.as_numpy_iterator(), net, num_samples=26_000)
  assert result['num_samples'] == 26_000
  assert result['modes_covered'] == 1000
  assert result['kl'] < 0.01
  # The per-channel classifications agree with the true digits almost everywhere.
  images, _, digits = train26k
  predicted = mc.classify_stacked(images[:1000].astype(np.float32) / 127.5 - 1.0, net)
  assert (predicted == digits[:1000]).mean() > 0.98
