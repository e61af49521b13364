"""The 'classes' metric (gan_jax/metrics/registry.py): the class balance of generated images as
the pinned LeNet classifies them, checked against scipy's KL divergence and against the true
labels of real MNIST images."""

import numpy as np
import pytest
import scipy.stats
import tensorflow_datasets as tfds

from gan_jax.errors import ConfigError
from gan_jax.metrics import evaluate, registry


def test_class_shares_match_scipys_kl_to_uniform():
  rng = np.random.default_rng(0)
  for _ in range(5):
    counts = rng.integers(0, 50, size=10)
    got = registry.class_shares(counts)
    p = counts / counts.sum()
    assert got['classes_kl'] == pytest.approx(scipy.stats.entropy(p, np.full(10, 0.1)), abs=1e-12)
    assert (got['classes_min'], got['classes_max']) == (p.min(), p.max())
  one = registry.class_shares([0, 0, 7, 0])
  assert one == {'classes_kl': pytest.approx(np.log(4)), 'classes_min': 0.0, 'classes_max': 1.0}
  assert registry.class_shares([3, 3, 3])['classes_kl'] == pytest.approx(0.0, abs=1e-15)
  with pytest.raises(ValueError, match='no images'):
    registry.class_shares([0, 0])


def test_real_mnist_digits_give_their_labels_shares(tfds_dir, tmp_path):
  images, labels = tfds.as_numpy(
    tfds.load('mnist', split='test[:3000]', data_dir=tfds_dir, batch_size=-1, as_supervised=True)
  )
  images = images.astype(np.float32) / 127.5 - 1.0
  ev = evaluate.Evaluator.create(
    dataset='mnist',
    split='test[:3000]',
    data_dir=tfds_dir,
    image_size=28,
    channels=1,
    metrics='classes',
    feature_net='lenet_mnist',
    num_samples=3000,
    batch_size=500,
    kid_pr_samples=3000,
    cache_dir=str(tmp_path),
  )
  got = ev.evaluate_batches(images[i : i + 500] for i in range(0, 3000, 500))
  shares = np.bincount(labels, minlength=10) / labels.size  # the LeNet is ~99% accurate
  assert got['classes_lenet_min'] == pytest.approx(shares.min(), abs=0.005)
  assert got['classes_lenet_max'] == pytest.approx(shares.max(), abs=0.005)
  assert got['classes_lenet_kl'] == pytest.approx(
    scipy.stats.entropy(shares, np.full(10, 0.1)), abs=0.003
  )
  collapsed = ev.evaluate_batches([np.repeat(images[labels == 1][:1], 3000, axis=0)])
  assert collapsed['classes_lenet_kl'] == pytest.approx(np.log(10))
  assert collapsed['classes_lenet_max'] == 1.0


def test_inceptions_imagenet_classes_are_refused_in_one_line():
  class Net:
    name, num_classes = 'inception_v3', 1008

  with pytest.raises(ConfigError, match='ImageNet classes'):
    registry.metrics(['classes'])[0].check_net(None, Net())
