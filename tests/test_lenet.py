"""The pinned LeNet domain classifiers behind "FID (LeNet)" (gan_jax.metrics.lenet)."""

from __future__ import annotations

import hashlib
import importlib.resources
import shutil

import flax.serialization
import numpy as np
import pytest

from gan_jax.data.pipeline import load_images
from gan_jax.metrics import lenet
from gan_jax.metrics.features import FeatureNet

DATASETS = ('mnist', 'fashion_mnist')
# Floors the shipped weights must clear on the full 10,000-image TFDS test split.
MIN_ACCURACY = {'mnist': 0.992, 'fashion_mnist': 0.91}


@pytest.fixture(scope='module')
def test_split(tfds_dir):
  """dataset -> (images float32 [10000, 28, 28, 1] in [-1, 1], labels int32 [10000])."""
  cache = {}

  def get(dataset):
    if dataset not in cache:
      ds = load_images(dataset, 'test', data_dir=tfds_dir, image_size=28, channels=1)
      batches = list(ds.batch(10000).as_numpy_iterator())
      cache[dataset] = (
        np.concatenate([b['image'] for b in batches]),
        np.concatenate([b['label'] for b in batches]),
      )
    return cache[dataset]

  return get


@pytest.mark.parametrize('dataset', DATASETS)
def test_shipped_weights_match_registry(dataset):
  entry = lenet.WEIGHTS[dataset]
  data = lenet.weights_path(dataset).read_bytes()
  assert hashlib.sha256(data).hexdigest() == entry.sha256
  assert len(data) <= 2 * 1024 * 1024
  assert f'--dataset {dataset}' in entry.command and entry.file in entry.command
  net = lenet.load_lenet(dataset)
  assert isinstance(net, FeatureNet)
  assert net.weights_sha256 == entry.sha256
  assert (net.name, net.label) == (f'lenet_{dataset}', 'LeNet')
  assert (net.feature_dim, net.num_classes, net.image_shape) == (128, 10, (28, 28, 1))
  assert lenet.load_lenet(dataset) is net  # Cached.


@pytest.mark.parametrize('dataset', DATASETS)
def test_test_split_accuracy(dataset, test_split):
  images, labels = test_split(dataset)
  assert images.shape == (10000, 28, 28, 1) and images.dtype == np.float32
  predictions = lenet.predict(lenet.load_lenet(dataset), images)
  assert predictions.shape == (10000,) and predictions.dtype == np.int32
  acc = float(np.mean(predictions == labels))
  assert acc >= MIN_ACCURACY[dataset]
  # The registry records what this very file scores.
  assert acc == pytest.approx(lenet.WEIGHTS[dataset].test_accuracy, abs=1e-3)


def test_apply_shapes_dtypes_and_determinism(test_split):
  images = test_split('mnist')[0][:37]
  net = lenet.load_lenet('mnist')
  features, logits = net.apply(images)
  assert features.shape == (37, 128) and features.dtype == np.float32
  assert logits.shape == (37, 10) and logits.dtype == np.float32
  assert np.all(np.asarray(features) >= 0)  # Post-ReLU penultimate activations.
  again = net.apply(images)
  np.testing.assert_array_equal(np.asarray(features), np.asarray(again[0]))
  np.testing.assert_array_equal(np.asarray(logits), np.asarray(again[1]))
  # A fresh load of the same file (a new jitted function) gives the same bits.
  with importlib.resources.as_file(lenet.weights_path('mnist')) as path:
    fresh = lenet._load_from_path(path, 'mnist')
  np.testing.assert_array_equal(np.asarray(features), np.asarray(fresh.apply(images)[0]))
  # The features are not those of the other dataset's net.
  other = lenet.load_lenet('fashion_mnist').apply(images)[0]
  assert not np.allclose(np.asarray(features), np.asarray(other))


@pytest.mark.parametrize(
  'shape, match',
  [((2, 32, 32, 3), r'\[B, 28, 28, 1\]'), ((28, 28, 1), 'batch axis'), ((2, 28, 28), 'axis')],
)
def test_wrong_shapes_raise(shape, match):
  net = lenet.load_lenet('mnist')
  with pytest.raises(ValueError, match=match):
    lenet.predict(net, np.zeros(shape, np.float32))


def test_integer_images_and_bad_batch_size_raise():
  net = lenet.load_lenet('mnist')
  with pytest.raises(ValueError, match='x / 127.5 - 1'):
    lenet.predict(net, np.zeros((2, 28, 28, 1), np.uint8))
  with pytest.raises(ValueError, match='batch_size'):
    lenet.predict(net, np.zeros((2, 28, 28, 1), np.float32), batch_size=0)


def test_unknown_dataset_raises():
  with pytest.raises(ValueError, match="'mnist', 'fashion_mnist'"):
    lenet.load_lenet('cifar10')


def test_corrupted_or_missing_weights_are_rejected(tmp_path):
  source = lenet.weights_path('mnist')
  corrupted = tmp_path / 'lenet_mnist.msgpack'
  with importlib.resources.as_file(source) as path:
    shutil.copyfile(path, corrupted)
  data = bytearray(corrupted.read_bytes())
  data[len(data) // 2] ^= 0x01  # One flipped bit in a weight.
  corrupted.write_bytes(bytes(data))
  with pytest.raises(RuntimeError, match='corrupted') as info:
    lenet._load_from_path(corrupted, 'mnist')
  assert lenet.WEIGHTS['mnist'].command in str(info.value)
  # The fashion_mnist file is intact but is not the mnist net.
  with importlib.resources.as_file(lenet.weights_path('fashion_mnist')) as path:
    with pytest.raises(RuntimeError, match='corrupted or was replaced'):
      lenet._load_from_path(path, 'mnist')
  with pytest.raises(RuntimeError, match='Cannot read'):
    lenet._load_from_path(tmp_path / 'missing.msgpack', 'mnist')


def test_model_from_bytes_checks_the_architecture():
  with pytest.raises(ValueError, match='msgpack'):
    lenet.model_from_bytes(b'not msgpack at all \xc1')
  wrong = flax.serialization.msgpack_serialize({'fc1': {'kernel': np.zeros((3, 3), np.float32)}})
  with pytest.raises(ValueError, match='do not match'):
    lenet.model_from_bytes(wrong)
