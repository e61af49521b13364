"""Reference features and statistics of real data, computed once and cached.

A reference is keyed by (dataset, split, image shape, feature network, the first 16 hex digits
of its weights' SHA-256): change any of them and it is computed afresh; nothing else can
make a cached file stale. Files live in a user cache folder, never beside the data:

    $GAN_JAX_CACHE_DIR, else $XDG_CACHE_HOME/gan_jax, else ~/.cache/gan_jax
        reference/<dataset>-<split>-<H>x<W>x<C>-<net>-<sha256[:16]>.npz

Each file holds the float64 mean and covariance of the features of the whole split (for FID)
and the float32 features themselves (for KID and precision/recall; 60,000 x 128 LeNet
features are 31 MB). Writes are atomic (temporary file, then rename), and a file that cannot
be read or whose stored key differs is recomputed with a warning.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import time

import numpy as np

from gan_jax.cache_dir import cache_root  # (also re-exported: its home before)
from gan_jax.metrics.features import FeatureNet
from gan_jax.metrics.stats import FeatureStats, StreamingStats

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Reference:
  """Real-data features for one (dataset, split, feature network).

  Attributes:
    key: the cache key (see the module docstring).
    stats: mean/covariance over the whole split (`FeatureStats`, float64).
    features: float32 [N, D], every example's features, in the split's stored order.
    path: the cache file it was read from or written to.
  """

  key: str
  stats: FeatureStats
  features: np.ndarray
  path: str


def reference_key(
  dataset: str, split: str, image_shape: tuple[int, int, int], net: FeatureNet
) -> str:
  """`<dataset>-<split>-<H>x<W>x<C>-<net.name>-<sha256[:16]>`, with the split made file-safe.

  An image folder ('folder:/path') stands as 'folder-<content key[:16]>-<resize>'
  (`gan_jax.data.image_folder.reference_name`): a changed folder gets new statistics.
  """
  from gan_jax.data import image_folder  # pylint: disable=g-import-not-at-top

  if image_folder.is_folder_name(dataset):
    dataset = image_folder.reference_name(dataset)
  safe_split = re.sub(r'[^A-Za-z0-9_.%]+', '_', split).strip('_')
  h, w, c = image_shape
  return f'{dataset}-{safe_split}-{h}x{w}x{c}-{net.name}-{net.weights_sha256[:16]}'


def _inside(path: str, folder: str) -> bool:
  path, folder = os.path.realpath(path), os.path.realpath(folder)
  return os.path.commonpath([path, folder]) == folder


def load_reference(
  dataset: str,
  split: str,
  net: FeatureNet,
  *,
  data_dir: str | None,
  image_size: int,
  channels: int,
  batch_size: int = 500,
  cache_dir: str | None = None,
  download: bool = False,
) -> Reference:
  """Returns the cached reference for (dataset, split, net), computing and caching it if needed.

  Args:
    dataset: TFDS name (or 'stacked_mnist', or 'folder:/path'), e.g. 'mnist'.
    split: TFDS split, slicing allowed ('train', 'test[:5000]').
    net: the feature network.
    data_dir: TFDS data dir (None: $TFDS_DATA_DIR or TFDS's default).
    image_size, channels: the shape the images are loaded at when the net accepts any shape
      (`net.image_shape is None`, Inception); otherwise the net's own shape is used.
    batch_size: images per feature-network call.
    cache_dir: overrides the cache folder (see `cache_root`).
    download: passed to TFDS (never downloads unless True).

  Returns:
    A `Reference`.

  Raises:
    ValueError: the cache folder lies inside the TFDS data dir (caches never go beside the
      data), or the split has fewer than 2 examples.
    gan_jax.data.pipeline.DatasetNotFoundError: the dataset is not in the data dir.
  """
  from gan_jax.data import pipeline as data_lib  # pylint: disable=g-import-not-at-top  (TensorFlow)

  shape = tuple(net.image_shape) if net.image_shape else (image_size, image_size, channels)
  key = reference_key(dataset, split, shape, net)
  root = cache_root(cache_dir)
  resolved_data_dir = data_lib.resolve_data_dir(data_dir)
  if resolved_data_dir and os.path.isdir(resolved_data_dir) and _inside(root, resolved_data_dir):
    raise ValueError(
      f'the metrics cache folder {root} is inside the TFDS data dir {resolved_data_dir}; '
      'reference statistics are never written beside the data: set GAN_JAX_CACHE_DIR (or '
      'eval.cache_dir) to a folder of your own.'
    )
  path = os.path.join(root, 'reference', key + '.npz')
  if os.path.exists(path):
    try:
      with np.load(path) as f:
        if str(f['key']) != key:
          raise ValueError(f'stored key {str(f["key"])!r}')
        return Reference(
          key,
          FeatureStats(f['mu'], f['sigma'], int(f['count'])),
          f['features'],
          path,
        )
    except Exception as err:  # pylint: disable=broad-except
      log.warning('Cached reference %s is unreadable (%s); recomputing it.', path, err)

  t0 = time.perf_counter()
  ds = data_lib.build_eval_dataset(
    dataset,
    split,
    data_dir=data_dir,
    image_size=shape[0],
    channels=shape[2],
    batch_size=batch_size,
    download=download,
  )
  acc, feats = StreamingStats(), []
  for batch in ds.as_numpy_iterator():
    f, _ = net.apply(batch['image'])
    f = np.asarray(f, np.float32)
    acc.update(f)
    feats.append(f)
  stats = acc.finalize()
  features = np.concatenate(feats)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = f'{path}.tmp{os.getpid()}.npz'
  np.savez(tmp, key=key, mu=stats.mean, sigma=stats.cov, count=stats.count, features=features)
  os.replace(tmp, path)
  log.info(
    'Computed reference %s (%d images) in %.1f s; cached at %s',
    key,
    stats.count,
    time.perf_counter() - t0,
    path,
  )
  return Reference(key, stats, features, path)
