"""Tests for gan_jax.data.pipeline on the real offline TFDS data in ../shared/tfds (no mocks, no network).

Kept fast: small slices ('test[:512]'), small batches, one subprocess pair.
"""

from __future__ import annotations

import gc
import hashlib
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import jax
import numpy as np
import pytest
import tensorflow as tf

from gan_jax.data import pipeline as data

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(__file__).resolve().parents[2] / 'shared' / 'tfds'
DATASETS = {  # name -> (image_size, channels) as stored
  'mnist': (28, 1),
  'fashion_mnist': (28, 1),
  'cifar10_jpeg': (32, 3),
}


@pytest.fixture(scope='module')
def data_dir() -> str:
  if not DATA_DIR.is_dir():
    pytest.fail(
      f'Offline TFDS data not found at {DATA_DIR} (expected the shared read-only folder '
      f'with mnist, fashion_mnist and cifar10_jpeg next to the repository). These tests '
      f'use real data only and are not skipped.'
    )
  missing = [name for name in DATASETS if not (DATA_DIR / name).is_dir()]
  if missing:
    pytest.fail(f'Datasets {missing} are missing from {DATA_DIR}.')
  return str(DATA_DIR)


def _first(ds: tf.data.Dataset, n: int = 1) -> list[dict[str, np.ndarray]]:
  iterator = ds.as_numpy_iterator()
  return [next(iterator) for _ in range(n)]


def _train(data_dir: str, **overrides) -> tf.data.Dataset:
  kwargs = dict(
    name='mnist',
    split='test[:512]',
    data_dir=data_dir,
    image_size=28,
    channels=1,
    batch_size=16,
    seed=0,
  )
  kwargs.update(overrides)
  return data.build_train_dataset(**kwargs)


# --- loading real datasets -------------------------------------------------------------------


@pytest.mark.parametrize('name', sorted(DATASETS))
def test_real_dataset_loads_in_range(data_dir, name):
  size, channels = DATASETS[name]
  ds = data.build_eval_dataset(
    name,
    'test[:256]',
    data_dir=data_dir,
    image_size=size,
    channels=channels,
    batch_size=256,
  )
  (batch,) = _first(ds)
  images, labels = batch['image'], batch['label']
  assert images.shape == (256, size, size, channels)
  assert images.dtype == np.float32
  assert -1.0 <= images.min() < -0.9
  assert 0.9 < images.max() <= 1.0
  assert labels.shape == (256,) and labels.dtype == np.int32
  assert labels.min() >= 0 and labels.max() <= 9
  assert len(np.unique(labels)) == 10  # 256 real examples cover all classes.


def test_load_images_element_spec_and_values(data_dir):
  ds = data.load_images('mnist', 'test[:8]', data_dir=data_dir, image_size=28, channels=1)
  assert ds.element_spec['image'].shape == (28, 28, 1)
  assert ds.element_spec['image'].dtype == tf.float32
  assert ds.element_spec['label'].dtype == tf.int32
  examples = list(ds.as_numpy_iterator())
  assert len(examples) == 8
  # Exactly x / 127.5 - 1 of the stored uint8 pixels: every value is on that grid.
  pixels = (examples[0]['image'] + 1.0) * 127.5
  np.testing.assert_allclose(pixels, np.round(pixels), atol=1e-3)


def test_eval_dataset_in_order_with_remainder(data_dir):
  ds = data.build_eval_dataset(
    'mnist', 'test[:50]', data_dir=data_dir, image_size=28, channels=1, batch_size=16
  )
  batches = list(ds.as_numpy_iterator())
  assert [b['label'].shape[0] for b in batches] == [16, 16, 16, 2]
  plain = data.load_images('mnist', 'test[:50]', data_dir=data_dir, image_size=28, channels=1)
  labels = np.array([e['label'] for e in plain.as_numpy_iterator()])
  np.testing.assert_array_equal(np.concatenate([b['label'] for b in batches]), labels)


def test_resize_and_gray_to_rgb(data_dir):
  rgb = _first(_train(data_dir, image_size=32, channels=3))[0]['image']
  gray = _first(_train(data_dir, image_size=32, channels=1))[0]['image']
  assert rgb.shape == (1, 16, 32, 32, 3)
  np.testing.assert_array_equal(rgb[..., 0], rgb[..., 1])
  np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])
  np.testing.assert_array_equal(rgb[..., :1], gray)  # Same examples, same resize.
  assert rgb.min() >= -1.0 and rgb.max() <= 1.0


def test_rgb_to_gray_and_downsize(data_dir):
  ds = data.build_eval_dataset(
    'cifar10_jpeg', 'test[:8]', data_dir=data_dir, image_size=16, channels=1, batch_size=8
  )
  images = _first(ds)[0]['image']
  assert images.shape == (8, 16, 16, 1) and images.dtype == np.float32
  assert images.min() >= -1.0 and images.max() <= 1.0


def test_preprocess_without_static_shape_and_without_labels():
  """Images of unknown (and varying) size and channel count; no 'label' feature."""
  rng = np.random.default_rng(0)
  images = [
    rng.integers(0, 256, (28, 28, 1), dtype=np.uint8),
    rng.integers(0, 256, (40, 30, 3), dtype=np.uint8),
    rng.integers(0, 256, (32, 32, 4), dtype=np.uint8),
    rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
  ]
  ds = tf.data.Dataset.from_generator(
    lambda: ({'image': image} for image in images),
    output_signature={'image': tf.TensorSpec((None, None, None), tf.uint8)},
  )
  for channels in (1, 3):
    out = list(
      ds.map(lambda f, c=channels: data._scale(data._preprocess(f, 32, c))).as_numpy_iterator()
    )
    for example in out:
      assert example['image'].shape == (32, 32, channels)
      assert example['image'].dtype == np.float32
      assert -1.0 <= example['image'].min() and example['image'].max() <= 1.0
      assert example['label'] == -1
  # Already 32x32x3: no resize, exact scaling.
  np.testing.assert_allclose(out[3]['image'], images[3] / 127.5 - 1.0, atol=1e-6)
  np.testing.assert_array_equal(out[0]['image'][..., 0], out[0]['image'][..., 2])


# --- determinism and resume ------------------------------------------------------------------


def test_same_seed_same_batches_different_seed_differs(data_dir):
  a = _first(_train(data_dir, seed=7), 3)
  b = _first(_train(data_dir, seed=7), 3)
  c = _first(_train(data_dir, seed=8), 3)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x['image'], y['image'])
    np.testing.assert_array_equal(x['label'], y['label'])
  assert not np.array_equal(a[0]['image'], c[0]['image'])


def test_start_step_resumes_exactly(data_dir):
  # 100 examples, 16 per step: steps 7 and 13 lie in later, reshuffled epochs.
  kwargs = dict(split='test[:100]', batch_size=8, n_critic=2, seed=3)
  stream = _first(_train(data_dir, **kwargs), 14)
  for k in (1, 7, 13):
    resumed = _first(_train(data_dir, start_step=k, **kwargs))[0]
    np.testing.assert_array_equal(resumed['image'], stream[k]['image'])
    np.testing.assert_array_equal(resumed['label'], stream[k]['label'])


def test_epochs_are_reshuffled_permutations(data_dir):
  steps = _first(_train(data_dir, split='test[:64]', batch_size=16), 8)  # two epochs
  labels = [np.concatenate([s['label'].ravel() for s in steps[i : i + 4]]) for i in (0, 4)]
  reference = np.sort(
    _first(
      data.build_eval_dataset(
        'mnist', 'test[:64]', data_dir=data_dir, image_size=28, channels=1, batch_size=64
      )
    )[0]['label']
  )
  for epoch in labels:
    np.testing.assert_array_equal(np.sort(epoch), reference)  # Each epoch: every example once.
  images = [np.concatenate([s['image'] for s in steps[i : i + 4]], axis=1) for i in (0, 4)]
  assert not np.array_equal(images[0], images[1])  # ... in a new order.


_HASH_SCRIPT = textwrap.dedent('''
    import hashlib, sys
    from gan_jax.data import pipeline as data
    ds = data.build_train_dataset('mnist', 'test[:512]', data_dir=sys.argv[1], image_size=28,
                                  channels=1, batch_size=16, seed=5, n_critic=2)
    digest = hashlib.sha256()
    iterator = ds.as_numpy_iterator()
    for _ in range(3):
        batch = next(iterator)
        digest.update(batch['image'].tobytes())
        digest.update(batch['label'].tobytes())
    print('HASH', digest.hexdigest(), flush=True)
    # Exit with a prefetch thread still pulling from tf.data: must not abort the interpreter.
    import jax
    prefetch = data.device_prefetch(iterator, data.batch_sharding(jax.make_mesh((1,), ('data',))))
    next(prefetch)
''')


def test_deterministic_across_processes(data_dir):
  env = dict(
    os.environ,
    PYTHONPATH=os.pathsep.join(
      [str(REPO_ROOT)] + ([os.environ['PYTHONPATH']] if os.environ.get('PYTHONPATH') else [])
    ),
    TF_CPP_MIN_LOG_LEVEL='3',
    JAX_PLATFORMS='cpu',
  )
  procs = [  # Two fresh interpreters, run side by side.
    subprocess.Popen(
      [sys.executable, '-c', _HASH_SCRIPT, data_dir],
      cwd=REPO_ROOT,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for _ in range(2)
  ]
  hashes = []
  for proc in procs:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert 'FATAL' not in err and 'Exception ignored' not in err, err[-3000:]
    hashes.append([line.split()[1] for line in out.splitlines() if line.startswith('HASH')][0])
  # And this process, too.
  digest = hashlib.sha256()
  for batch in _first(_train(data_dir, seed=5, n_critic=2), 3):
    digest.update(batch['image'].tobytes())
    digest.update(batch['label'].tobytes())
  assert hashes[0] == hashes[1] == digest.hexdigest()


def test_n_critic_shapes(data_dir):
  (batch,) = _first(_train(data_dir, n_critic=2, batch_size=8))
  assert batch['image'].shape == (2, 8, 28, 28, 1)
  assert batch['label'].shape == (2, 8)
  assert not np.array_equal(batch['image'][0], batch['image'][1])


def test_process_shards_are_disjoint(data_dir):
  def epoch_of(process_index):  # 64 examples / 2 processes = 32 = 2 steps of B_local 16.
    steps = _first(
      _train(
        data_dir, split='test[:64]', batch_size=32, process_count=2, process_index=process_index
      ),
      2,
    )
    assert steps[0]['image'].shape == (1, 16, 28, 28, 1)
    images = np.concatenate([s['image'][0] for s in steps])
    return {hashlib.sha1(image.tobytes()).hexdigest() for image in images}

  first, second = epoch_of(0), epoch_of(1)
  assert len(first) == len(second) == 32
  assert not first & second


# --- errors ----------------------------------------------------------------------------------


def test_missing_dataset_in_empty_data_dir(tmp_path):
  with pytest.raises(data.DatasetNotFoundError) as info:
    data.load_images('mnist', 'train', data_dir=str(tmp_path), image_size=28, channels=1)
  message = str(info.value)
  assert isinstance(info.value, FileNotFoundError)
  assert str(tmp_path) in message and 'TFDS_DATA_DIR' in message
  assert "'mnist'" in message and "'train'" in message and 'tfds build mnist' in message
  assert (info.value.name, info.value.split, info.value.data_dir) == (
    'mnist',
    'train',
    str(tmp_path),
  )
  assert list(tmp_path.iterdir()) == []  # download=False wrote nothing.


def test_unknown_dataset_name(tmp_path, data_dir):
  for directory in (str(tmp_path), data_dir):
    with pytest.raises(data.DatasetNotFoundError) as info:
      _train(directory, name='no_such_dataset_xyz')
    assert directory in str(info.value) and 'TFDS_DATA_DIR' in str(info.value)


def test_missing_dataset_default_dir_is_named(tmp_path, monkeypatch):
  monkeypatch.delenv('TFDS_DATA_DIR', raising=False)
  with pytest.raises(data.DatasetNotFoundError) as info:
    data.load_images('no_such_dataset_xyz', 'train', data_dir=None, image_size=8, channels=1)
  assert os.path.expanduser('~/tensorflow_datasets') in str(info.value)


def test_unknown_split(data_dir):
  with pytest.raises(ValueError, match=r"'validation'.*Available splits: 'train'"):
    data.load_images('mnist', 'validation', data_dir=data_dir, image_size=28, channels=1)
  with pytest.raises(ValueError, match='Available splits'):
    data.load_images('mnist', 'test[:20000]', data_dir=data_dir, image_size=28, channels=1)


def test_resolve_data_dir(monkeypatch, tmp_path):
  monkeypatch.setenv('TFDS_DATA_DIR', str(tmp_path))
  assert data.resolve_data_dir(None) == str(tmp_path)
  assert data.resolve_data_dir('') == str(tmp_path)
  assert data.resolve_data_dir('/explicit') == '/explicit'
  assert data.resolve_data_dir('~/x') == os.path.expanduser('~/x')
  monkeypatch.setenv('TFDS_DATA_DIR', '~/from_env')
  assert data.resolve_data_dir(None) == os.path.expanduser('~/from_env')
  monkeypatch.delenv('TFDS_DATA_DIR')
  assert data.resolve_data_dir(None) is None


def test_env_data_dir_is_used_by_loader(monkeypatch, data_dir):
  monkeypatch.setenv('TFDS_DATA_DIR', data_dir)
  ds = data.load_images('mnist', 'test[:2]', data_dir=None, image_size=28, channels=1)
  assert len(list(ds.as_numpy_iterator())) == 2


@pytest.mark.parametrize(
  'overrides, field',
  [
    (dict(batch_size=0), 'train.batch_size=0'),
    (dict(batch_size=-4), 'train.batch_size=-4'),
    (dict(batch_size=10, process_count=4), 'train.batch_size=10'),
    (dict(n_critic=0), 'train.n_critic=0'),
    (dict(image_size=0), 'data.image_size=0'),
    (dict(channels=2), 'data.channels=2'),
    (dict(start_step=-1), 'start_step=-1'),
    (dict(process_index=2, process_count=2), 'process_index=2'),
    (dict(shuffle_buffer=0), 'data.shuffle_buffer=0'),
  ],
)
def test_bad_arguments(data_dir, overrides, field):
  with pytest.raises(ValueError, match=field.replace('.', r'\.')):
    _train(data_dir, **overrides)


def test_bad_eval_batch_size(data_dir):
  with pytest.raises(ValueError, match='batch_size=0 must'):
    data.build_eval_dataset(
      'mnist', 'test', data_dir=data_dir, image_size=28, channels=1, batch_size=0
    )


# --- device_prefetch and throughput ----------------------------------------------------------


@pytest.fixture(scope='module')
def mesh():
  return jax.make_mesh((1,), ('data',))


def _numbered_batches(n, fail_at=None):
  for i in range(n):
    if i == fail_at:
      raise RuntimeError(f'producer failed at {i}')
    yield {'image': np.full((2, 4, 3, 3, 1), i, np.float32), 'label': np.full((2, 4), i, np.int32)}


def test_device_prefetch_sharding_and_order(mesh):
  sharding = data.batch_sharding(mesh)
  assert sharding.spec == jax.sharding.PartitionSpec(None, 'data')
  out = list(data.device_prefetch(_numbered_batches(5), sharding, size=2))
  assert len(out) == 5
  for i, batch in enumerate(out):
    assert isinstance(batch['image'], jax.Array) and isinstance(batch['label'], jax.Array)
    assert batch['image'].sharding == sharding and batch['label'].sharding == sharding
    assert batch['image'].shape == (2, 4, 3, 3, 1) and batch['label'].dtype == np.int32
    assert int(batch['label'][0, 0]) == i and float(batch['image'][1, 3, 0, 0, 0]) == i


def test_device_prefetch_per_leaf_sharding(mesh):
  shardings = {'image': data.batch_sharding(mesh), 'label': data.batch_sharding(mesh, 0)}
  (batch,) = list(data.device_prefetch(_numbered_batches(1), lambda key, x: shardings[key]))
  assert batch['label'].sharding == shardings['label']


def test_device_prefetch_reraises_producer_error(mesh):
  iterator = data.device_prefetch(_numbered_batches(5, fail_at=2), data.batch_sharding(mesh))
  assert int(next(iterator)['label'][0, 0]) == 0
  assert int(next(iterator)['label'][0, 0]) == 1
  with pytest.raises(RuntimeError, match='producer failed at 2'):
    next(iterator)


def test_device_prefetch_stops_thread_on_close(mesh):
  def endless():
    i = 0
    while True:
      yield {'label': np.full((1, 4), i, np.int32)}
      i += 1

  def prefetch_threads():
    return [t for t in threading.enumerate() if t.name == 'gan_jax-device_prefetch']

  iterator = data.device_prefetch(endless(), data.batch_sharding(mesh), size=3)
  assert int(next(iterator)['label'][0, 0]) == 0
  threads = prefetch_threads()
  assert threads and all(t.daemon for t in threads)
  iterator.close()
  assert not any(t.is_alive() for t in threads)
  with pytest.raises(StopIteration):
    next(iterator)

  with data.device_prefetch(endless(), data.batch_sharding(mesh)) as iterator:
    next(iterator)
  assert not prefetch_threads()

  iterator = data.device_prefetch(endless(), data.batch_sharding(mesh))
  next(iterator)
  del iterator  # Abandoned: garbage collection stops the thread.
  gc.collect()
  assert not prefetch_threads()


def test_device_prefetch_real_pipeline(data_dir, mesh):
  ds = _train(data_dir, n_critic=2, batch_size=8)
  batch = next(data.device_prefetch(ds.as_numpy_iterator(), data.batch_sharding(mesh)))
  assert batch['image'].shape == (2, 8, 28, 28, 1) and batch['image'].dtype == np.float32
  assert batch['label'].shape == (2, 8)


def test_measure_throughput(data_dir):
  rate = data.measure_throughput(_train(data_dir, n_critic=2, batch_size=8), 10, warmup=2)
  assert rate > 0
  finite = data.build_eval_dataset(
    'mnist', 'test[:16]', data_dir=data_dir, image_size=28, channels=1, batch_size=8
  )
  with pytest.raises(ValueError, match='ended'):
    data.measure_throughput(finite, 5, warmup=0)
