"""Input pipeline: TFDS images -> [-1, 1] float batches -> sharded global jax.Arrays.

Every `data.name` is read through its entry in the data-source registry
(`gan_jax.data.sources`: TFDS, 'stacked_mnist', 'folder:/path'); this module does the rest.

The train stream is a pure function of (dataset, split, seed, batch_size, n_critic): the
global batch consumed by train step ``k`` is the same in every run, in every Python process
and for any number of processes (each process keeps its own rows of it), so a run resumed at
step ``k`` with ``start_step=k``, on the same or another number of hosts, sees exactly the
data an uninterrupted run would have seen.

Typical use::

    mesh = jax.make_mesh((jax.device_count(),), ('data',))
    ds = build_train_dataset('mnist', 'train', data_dir=resolve_data_dir(cfg.data.data_dir),
                             image_size=28, channels=1, batch_size=64, seed=0, n_critic=1,
                             start_step=state.step,
                             rows=process_rows(batch_sharding(mesh), 64))
    batches = device_prefetch(ds.as_numpy_iterator(), batch_sharding(mesh))
    for batch in batches:           # {'image': [n_critic, B, H, W, C], 'label': [n_critic, B]}
        state, metrics = train_step(state, batch)

TensorFlow is only a host-side input library here: it is kept off accelerators (see
``gan_jax.data.tfds_images.keep_tensorflow_on_cpu``) so it never reserves GPU memory that JAX needs.
"""

from __future__ import annotations

import atexit
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np
import tensorflow as tf

from gan_jax.core.sharding import batch_sharding  # re-exported: the train batch's sharding
from gan_jax.errors import ConfigError

# Which code reads a data.name (TFDS, 'stacked_mnist', 'folder:/path'): its registry entry.
from gan_jax.data.sources import source_for

# Reading TFDS builds (gan_jax.data.tfds_images, which stacked_mnist uses too); the first three are
# re-exported, the rest keep the private names this module has always used for them.
from gan_jax.data.tfds_images import DatasetNotFoundError, resolve_data_dir
from gan_jax.data.tfds_images import prepared_datasets  # noqa: F401
from gan_jax.data.tfds_images import deterministic_options as _options
from gan_jax.data.tfds_images import keep_tensorflow_on_cpu as _keep_tensorflow_on_cpu
from gan_jax.data.tfds_images import preprocess as _preprocess  # noqa: F401  (tests use it)
from gan_jax.data.tfds_images import scale as _scale
from gan_jax.data.tfds_images import validate_image_args as _validate_image_args

__all__ = [
  'DatasetNotFoundError',
  'DevicePrefetchIterator',
  'build_eval_dataset',
  'batch_sharding',
  'build_train_dataset',
  'device_prefetch',
  'load_images',
  'measure_throughput',
  'process_rows',
  'resolve_data_dir',
]


def check_dataset(
  name: str,
  split: str,
  *,
  data_dir: str | None,
  download: bool = False,
  fields: tuple[str, str] = ('data.name', 'data.split'),
) -> int | None:
  """Checks, without reading any image, that `split` of dataset `name` can be read.

  The cheap first thing a run does, so a wrong name, split or data dir fails in one line
  before any model is built or file written (`gan_jax.training.run_setup.preflight`).

  Asks the name's data source (`gan_jax.data.sources.source_for(name).num_examples`).

  Args:
    name: a TFDS dataset name, 'stacked_mnist' (built from TFDS 'mnist') or 'folder:/path'.
    split: a TFDS split string, slicing allowed.
    data_dir: the TFDS data dir (None: `$TFDS_DATA_DIR`, else TFDS's default).
    download: let TFDS download a missing dataset.
    fields: the config fields holding the name and the split, named in the messages.

  Returns:
    The split's number of examples (None for 'stacked_mnist', whose length depends on the
    split's blocks and is checked when it is built).

  Raises:
    DatasetNotFoundError: the dataset is not prepared in the data dir (the message names the
      datasets that are).
    ConfigError: the split does not exist (the message lists the splits), or the dataset has
      no 'image' feature.
  """
  _keep_tensorflow_on_cpu()
  return source_for(name).num_examples(
    name, split, data_dir=data_dir, download=download, fields=fields
  )


def label_classes(
  name: str, split: str = 'train', *, data_dir: str | None, download: bool = False
) -> int | None:
  """How many classes the labels of dataset `name` have, from its metadata (TFDS's, a
  folder's class subfolders).

  Reads no example. A class-conditional run (`model.num_classes > 0`) checks this before it
  builds anything (`gan_jax.training.run_setup.preflight`). Asks the name's data source
  (`gan_jax.data.sources.source_for(name).num_classes`).

  Args:
    name: a TFDS dataset name, 'stacked_mnist' (labels are its 1,000 modes) or
      'folder:/path' (labels are its class subfolders).
    split: a split of it (checked as in `check_dataset`).
    data_dir: the TFDS data dir (None: `$TFDS_DATA_DIR`, else TFDS's default).
    download: let TFDS download a missing dataset.

  Returns:
    K when the dataset has a 'label' feature with K classes (labels 0..K-1); 0 when it has a
    'label' feature whose number of classes TFDS does not know; None when it has no 'label'
    feature (the batches then carry label -1).

  Raises:
    DatasetNotFoundError, ConfigError: as `check_dataset`.
  """
  return source_for(name).num_classes(name, split, data_dir=data_dir, download=download)


def _raw_images(
  name: str,
  split: str,
  *,
  data_dir: str | None,
  image_size: int,
  channels: int,
  download: bool,
) -> tuple[tf.data.Dataset, int]:
  """Decoded, resized, channel-converted images in [0, 255] and their count (no scaling),
  from the name's data source (`gan_jax.data.sources`: TFDS, Stacked MNIST, a folder)."""
  _keep_tensorflow_on_cpu()
  _validate_image_args(image_size, channels)
  return source_for(name).load(
    name, split, data_dir=data_dir, image_size=image_size, channels=channels, download=download
  )


def load_images(
  name: str,
  split: str,
  *,
  data_dir: str | None,
  image_size: int,
  channels: int,
  download: bool = False,
) -> tf.data.Dataset:
  """Loads any TFDS image dataset as preprocessed, unbatched, in-order examples.

  Reads ``name`` with ``shuffle_files=False`` from ``data_dir`` (see ``resolve_data_dir``:
  None falls back to ``TFDS_DATA_DIR`` and then TFDS's default ``~/tensorflow_datasets``).
  Images are resized (``tf.image.resize``, bilinear, antialias) only when their stored size
  differs from ``image_size`` (checked per image when the dataset has no static size);
  grayscale is tiled to RGB and RGB converted with ``tf.image.rgb_to_grayscale`` when
  ``channels`` differs (RGBA drops alpha first). uint8 values map to [-1, 1] as x/127.5 - 1.

  Args:
    name: TFDS dataset name with an ``'image'`` feature (``'label'`` optional),
      e.g. ``'mnist'``, ``'fashion_mnist'``, ``'cifar10_jpeg'``; or ``'stacked_mnist'``
      (``gan_jax.data.stacked_mnist``, built from ``'mnist'``; its split slices the stacked
      examples, label = mode in [0, 1000)); or ``'folder:/path'``, a folder or .zip of
      images (``gan_jax.data.image_folder``; labels from its class subfolders, split 'train').
    split: TFDS split string, slicing allowed: ``'train'``, ``'test[:512]'``,
      ``'train[:90%]'``.
    data_dir: TFDS data directory, or None (environment / TFDS default).
    image_size: Output height and width H = W, >= 1.
    channels: Output channels C, 1 or 3.
    download: Whether TFDS may download and prepare a missing dataset (needs internet).
      False by default so nothing ever touches the network unless asked.

  Returns:
    A ``tf.data.Dataset`` of dicts ``{'image': float32 [H, W, C] in [-1, 1],
    'label': int32 []}``; ``label`` is -1 when the dataset has no labels.

  Raises:
    DatasetNotFoundError: The dataset is not prepared in the data_dir (and download=False)
      or downloading it failed; also for names TFDS does not know.
    ValueError: Unknown split name or out-of-range slice (the message lists the available
      splits), ``image_size < 1``, ``channels`` not in (1, 3), or no ``'image'`` feature.
  """
  ds, _ = _raw_images(
    name,
    split,
    data_dir=data_dir,
    image_size=image_size,
    channels=channels,
    download=download,
  )
  return ds.map(_scale, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def process_rows(
  sharding: jax.sharding.Sharding, batch_size: int, batch_axis: int = 1
) -> np.ndarray:
  """The rows of a global batch that this process's devices hold under `sharding`.

  What `jax.make_array_from_process_local_data(sharding, local)` expects as `local`: these
  rows of the global batch, in this (ascending) order. With one process that is every row.
  With several it is usually one contiguous block per process, but it follows the mesh's
  device order (which `jax.make_mesh` may permute, e.g. on TPU), so it is read from the
  sharding rather than assumed.

  Args:
    sharding: the batch's sharding, e.g. `batch_sharding(mesh)` (batch on axis 1).
    batch_size: the global batch size B.
    batch_axis: the dimension of the batch in the arrays `sharding` places.

  Returns:
    int64 `[B_local]`: ascending indices in [0, B), `B_local = B / process_count` for a
    data-parallel mesh.
  """
  shape = (1,) * batch_axis + (batch_size,)
  rows: set[int] = set()
  for index in sharding.addressable_devices_indices_map(shape).values():
    rows.update(range(batch_size)[index[batch_axis]])
  return np.array(sorted(rows), np.int64)


def build_train_dataset(
  name: str,
  split: str,
  *,
  data_dir: str | None,
  image_size: int,
  channels: int,
  batch_size: int,
  seed: int,
  n_critic: int = 1,
  start_step: int = 0,
  process_index: int = 0,
  process_count: int = 1,
  rows: Sequence[int] | None = None,
  cache: bool = True,
  shuffle_buffer: int | None = None,
  download: bool = False,
) -> tf.data.Dataset:
  """Builds the infinite, deterministic, resumable training stream of this process.

  Pipeline: the whole split -> decode, resize, convert channels -> ``cache()`` in memory
  (values still in [0, 255]; uint8 when no resizing was needed, 4x smaller than float32)
  -> ``shuffle(buffer, seed=seed, reshuffle_each_iteration=True)`` -> ``repeat()`` ->
  ``skip(start_step * n_critic * B)`` -> ``batch(B, drop_remainder=True)`` -> this
  process's ``rows`` of each global batch -> ``batch(n_critic, drop_remainder=True)`` ->
  scale to [-1, 1] (vectorised over the whole step) -> ``prefetch(AUTOTUNE)``, with
  ``tf.data.Options.deterministic = True``.

  Every process builds the same global stream and keeps its own rows of each global batch,
  so the global batches do not depend on the number of processes: a run on 2 hosts trains on
  exactly the batches of a run on 1, and a checkpoint resumes on any number of hosts with
  the data an uninterrupted run would have seen. The price is that every process decodes
  and caches the whole split (not 1/process_count of it) and shuffles and batches B
  examples per step, of which it converts and transfers only B_local.

  Resuming: element ``k`` of the stream is a pure function of (dataset, split, seed,
  batch_size, n_critic) and of the rows kept. ``start_step=k`` makes element 0 equal to
  element ``k`` of the stream built with ``start_step=0``; the skip is done on single
  examples before batching (equivalent, since the stream is infinite) so it is cheap, but it
  still replays the shuffles, costing roughly ``k * n_critic * B`` cached examples of work.
  The order depends on TF's global seed only if someone calls ``tf.random.set_seed``
  (gan_jax never does); without it the op seed alone fixes the order in every process.
  Each *new* dataset object restarts the stream; iterating the same object twice in one
  process continues the reshuffling instead (a tf.data property), so build a fresh one.

  Args:
    name: TFDS image dataset name (see ``load_images``).
    split: TFDS split string, slicing allowed.
    data_dir: TFDS data directory, or None (``TFDS_DATA_DIR`` / TFDS default).
    image_size: Output H = W.
    channels: Output C, 1 or 3.
    batch_size: Global batch size B per discriminator step.
    seed: Shuffle seed (the run's seed).
    n_critic: Discriminator steps per train step; every element carries that many batches.
    start_step: Train steps already taken (the restored ``state.step``), >= 0.
    process_index: This process's index, ``jax.process_index()``.
    process_count: Number of processes, ``jax.process_count()``.
    rows: The rows of each global batch this process keeps, ascending indices in [0, B)
      (``process_rows(batch_sharding(mesh), B)``); None: the contiguous block
      ``[process_index * B_local, (process_index + 1) * B_local)`` with
      ``B_local = B // process_count``.
    cache: Cache decoded examples in memory (recommended unless the split is too large).
    shuffle_buffer: Shuffle buffer size; None = the whole split (a full uniform shuffle
      every epoch).
    download: Passed to ``load_images``; False never touches the network.

  Returns:
    An infinite ``tf.data.Dataset`` whose elements are one train step's data for this
    process: ``{'image': float32 [n_critic, B_local, H, W, C] in [-1, 1],
    'label': int32 [n_critic, B_local]}`` (label -1 for unlabelled datasets), with
    ``B_local = len(rows)``.

  Raises:
    ValueError: ``train.batch_size`` <= 0 or not divisible by ``process_count``,
      ``train.n_critic`` < 1, ``start_step`` < 0, ``data.image_size`` < 1,
      ``data.channels`` not in (1, 3), a bad ``process_index``/``process_count``, ``rows``
      or ``shuffle_buffer``, an unknown split, or a split smaller than one batch.
    DatasetNotFoundError: As in ``load_images``.
  """
  _check_stream_args(batch_size, n_critic, start_step, process_index, process_count)
  if shuffle_buffer is not None and shuffle_buffer < 1:
    raise ConfigError(f'data.shuffle_buffer={shuffle_buffer!r} must be >= 1 or None.')
  _validate_image_args(image_size, channels)
  rows = _local_rows(rows, batch_size, process_index, process_count)
  ds, num_examples = _raw_images(
    name, split, data_dir=data_dir, image_size=image_size, channels=channels, download=download
  )
  if num_examples < batch_size:
    raise ConfigError(
      f"Split '{split}' of '{name}' has only {num_examples} examples, fewer than one batch "
      f'(train.batch_size={batch_size}).'
    )
  if cache:
    ds = ds.cache()
  buffer = num_examples if shuffle_buffer is None else shuffle_buffer
  ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
  ds = ds.repeat()
  if start_step:
    ds = ds.skip(start_step * n_critic * batch_size)
  ds = _keep_rows(ds.batch(batch_size, drop_remainder=True), rows, batch_size)
  ds = ds.batch(n_critic, drop_remainder=True)
  ds = ds.map(_scale, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.with_options(_options()).prefetch(tf.data.AUTOTUNE)


def _check_stream_args(
  batch_size: int, n_critic: int, start_step: int, process_index: int, process_count: int
) -> None:
  """Checks `build_train_dataset`'s batch and step arguments (raises as it documents)."""
  if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
    raise ConfigError(f'train.batch_size={batch_size!r} must be a positive integer.')
  if not isinstance(process_count, (int, np.integer)) or process_count < 1:
    raise ValueError(f'process_count={process_count!r} must be a positive integer.')
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index={process_index!r} must be in [0, {process_count}).')
  if batch_size % process_count:
    raise ConfigError(
      f'train.batch_size={batch_size} must be divisible by the number of processes '
      f'(process_count={process_count}).'
    )
  if not isinstance(n_critic, (int, np.integer)) or n_critic < 1:
    raise ConfigError(f'train.n_critic={n_critic!r} must be an integer >= 1.')
  if not isinstance(start_step, (int, np.integer)) or start_step < 0:
    raise ValueError(f'start_step={start_step!r} must be an integer >= 0.')


def _local_rows(
  rows: Sequence[int] | None, batch_size: int, process_index: int, process_count: int
) -> list[int]:
  """The checked rows of each global batch this process keeps: `rows`, or when None block
  `process_index` of `process_count` equal blocks (raises ValueError for bad rows)."""
  if rows is None:
    local_batch = batch_size // process_count
    rows = range(process_index * local_batch, (process_index + 1) * local_batch)
  rows = [int(r) for r in rows]
  if not rows or rows != sorted(set(rows)) or rows[0] < 0 or rows[-1] >= batch_size:
    raise ValueError(
      f'rows={rows!r} must be distinct ascending indices in [0, {batch_size}) (the batch).'
    )
  return rows


def _keep_rows(ds: tf.data.Dataset, rows: list[int], batch_size: int) -> tf.data.Dataset:
  """Keeps `rows` (ascending) of each global batch of `batch_size` examples."""
  if rows != list(range(rows[0], rows[-1] + 1)):  # scattered rows (an unusual mesh)
    return ds.map(lambda b: {k: tf.gather(v, rows) for k, v in b.items()})
  if len(rows) < batch_size:  # one block: a slice
    lo, hi = rows[0], rows[-1] + 1
    return ds.map(lambda b: {k: v[lo:hi] for k, v in b.items()})
  return ds


def build_eval_dataset(
  name: str,
  split: str,
  *,
  data_dir: str | None,
  image_size: int,
  channels: int,
  batch_size: int,
  drop_remainder: bool = False,
  download: bool = False,
) -> tf.data.Dataset:
  """One in-order pass over a split, batched, for evaluation and metrics.

  Args:
    name: TFDS image dataset name (see ``load_images``).
    split: TFDS split string, slicing allowed.
    data_dir: TFDS data directory, or None (``TFDS_DATA_DIR`` / TFDS default).
    image_size: Output H = W.
    channels: Output C, 1 or 3.
    batch_size: Examples per batch B.
    drop_remainder: Drop the last, smaller batch (keep it by default so every example
      is seen exactly once).
    download: Passed to ``load_images``.

  Returns:
    A finite ``tf.data.Dataset`` of ``{'image': float32 [B, H, W, C] in [-1, 1],
    'label': int32 [B]}`` in the split's stored order; the last batch may be smaller
    unless ``drop_remainder``.

  Raises:
    ValueError: ``batch_size`` <= 0, or as in ``load_images``.
    DatasetNotFoundError: As in ``load_images``.
  """
  if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
    raise ValueError(f'batch_size={batch_size!r} must be a positive integer.')
  ds, _ = _raw_images(
    name,
    split,
    data_dir=data_dir,
    image_size=image_size,
    channels=channels,
    download=download,
  )
  ds = ds.batch(batch_size, drop_remainder=drop_remainder)
  ds = ds.map(_scale, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.with_options(_options()).prefetch(tf.data.AUTOTUNE)


_END = object()
_POLL_S = 0.1  # How often blocked queue operations re-check for shutdown.
# How long close() waits for the producer thread. Once stopped it only drops its references,
# but dropping the last one to a tf.data iterator can block in TensorFlow's destructor for
# seconds (measured: ~10 s with a cached, fully shuffled MNIST), which a SIGTERM must not
# wait for; the thread is a daemon and finishes on its own.
_JOIN_S = 1.0


class _ProducerError:
  """Carries an exception raised in the producer thread over to the consumer."""

  def __init__(self, error: BaseException):
    self.error = error


def device_prefetch(
  iterator: Iterator[Mapping[str, np.ndarray]],
  sharding: jax.sharding.Sharding | Callable[[str, np.ndarray], jax.sharding.Sharding],
  size: int = 2,
) -> DevicePrefetchIterator:
  """Moves host batches to devices in a background thread, ``size`` batches ahead.

  Each leaf becomes a global ``jax.Array`` via
  ``jax.make_array_from_process_local_data(sharding, local_array)``, which is correct for
  one process and for several (each process passes its own ``B_local`` rows of the global
  batch, ``process_rows(sharding, B)``; the global batch dimension is
  ``B_local * process_count``).

  The producer is a daemon thread, started at once (so loading overlaps e.g. the first
  compilation). It stops when ``iterator`` is exhausted, when it raises (the exception is
  re-raised in the consumer, at the same position, with its original traceback), or when
  the returned iterator is closed, garbage-collected or the interpreter exits (an
  ``atexit`` hook stops it first: a daemon thread killed inside tf.data's C++ code at
  shutdown aborts the process with "FATAL: exception not rethrown").

  Args:
    iterator: Yields dicts of numpy arrays, e.g. ``ds.as_numpy_iterator()`` of
      ``build_train_dataset``: ``{'image': [n_critic, B_local, H, W, C], 'label':
      [n_critic, B_local]}``.
    sharding: One sharding applied to every leaf (e.g. ``batch_sharding(mesh)``, which
      fits leaves of any rank > its batch axis), or a callable ``(key, local_array) ->
      sharding`` for per-leaf control.
    size: Batches kept in flight (>= 1).

  Returns:
    A ``DevicePrefetchIterator`` (an iterator and context manager with ``close()``)
    yielding dicts with the same keys whose values are global ``jax.Array``s with the
    given sharding, in the order of ``iterator``.

  Raises:
    ValueError: ``size < 1``.
    Exception: Whatever ``iterator`` raised, re-raised by ``next()`` at the matching
      position.
  """
  if size < 1:
    raise ValueError(f'size={size!r} must be >= 1.')
  if isinstance(sharding, jax.sharding.Sharding):
    get_sharding = lambda key, value: sharding  # noqa: E731
  else:
    get_sharding = sharding

  def to_device(batch: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
    return {
      key: jax.make_array_from_process_local_data(get_sharding(key, value), value)
      for key, value in batch.items()
    }

  return DevicePrefetchIterator(iterator, to_device, size)


class DevicePrefetchIterator(Iterator[Any]):
  """Iterator over ``transform(x) for x in iterator``, computed ``size`` ahead in a thread.

  Built by ``device_prefetch``. ``close()`` (or leaving a ``with`` block, or garbage
  collection) stops the producer thread after at most one more ``next(iterator)``.
  """

  def __init__(self, iterator: Iterator[Any], transform: Callable[[Any], Any], size: int):
    buffer: queue.Queue[Any] = queue.Queue(maxsize=size)
    stop = threading.Event()

    # The thread and the atexit hook close over these locals only, never over `self`, so
    # an abandoned iterator is still garbage-collected (and then closed).
    def put(item: Any) -> bool:
      while not stop.is_set():
        try:
          buffer.put(item, timeout=_POLL_S)
          return True
        except queue.Full:
          continue
      return False

    def produce() -> None:
      try:
        for batch in iterator:
          if stop.is_set() or not put(transform(batch)):
            return
        put(_END)
      except BaseException as error:  # noqa: BLE001 - handed to the consumer.
        put(_ProducerError(error))

    thread = threading.Thread(target=produce, name='gan_jax-device_prefetch', daemon=True)

    def shutdown() -> None:
      stop.set()
      while True:  # Drop prefetched device buffers now, not at the next GC.
        try:
          buffer.get_nowait()
        except queue.Empty:
          break
      if thread is not threading.current_thread():
        thread.join(timeout=_JOIN_S)

    self._buffer = buffer
    self._thread = thread
    self._shutdown = shutdown
    self._closed = False
    atexit.register(shutdown)
    thread.start()

  def __iter__(self) -> DevicePrefetchIterator:
    return self

  def __next__(self) -> Any:
    while not self._closed:
      try:
        item = self._buffer.get(timeout=_POLL_S)
      except queue.Empty:
        if not self._thread.is_alive() and self._buffer.empty():
          self.close()
          raise RuntimeError('device_prefetch: the producer thread died.') from None
        continue
      if item is _END:
        self.close()
        break
      if isinstance(item, _ProducerError):
        self.close()
        raise item.error
      return item
    raise StopIteration

  def close(self) -> None:
    """Stops the producer thread and drops prefetched batches; idempotent."""
    if not self._closed:
      self._closed = True
      self._shutdown()
      atexit.unregister(self._shutdown)

  def __enter__(self) -> DevicePrefetchIterator:
    return self

  def __exit__(self, *exc_info: object) -> None:
    self.close()

  def __del__(self) -> None:
    try:
      self.close()
    except Exception:  # noqa: BLE001 - never raise from a finalizer (e.g. at shutdown).
      pass


def _images_in(element: Mapping[str, Any]) -> int:
  """Number of images in an element: product of the image's leading (non-HWC) dims."""
  return int(np.prod(np.shape(element['image'])[:-3], dtype=np.int64))


def measure_throughput(ds: tf.data.Dataset, num_batches: int, warmup: int = 5) -> float:
  """Images per second delivered by the host input pipeline alone (no device transfer).

  Pulls ``warmup`` elements untimed (fills caches, shuffle buffer, autotuning), then times
  ``num_batches`` elements through ``ds.as_numpy_iterator()``. Images are counted as the
  product of each image's leading dimensions, i.e. ``n_critic * B`` per train element.

  Args:
    ds: A dataset of dicts with an ``'image'`` entry ``[..., H, W, C]``, e.g. from
      ``build_train_dataset``.
    num_batches: Elements to time, >= 1.
    warmup: Elements to pull before timing, >= 0.

  Returns:
    Images per second over the timed elements.

  Raises:
    ValueError: ``num_batches < 1``, ``warmup < 0``, or ``ds`` ran out before
      ``warmup + num_batches`` elements.
  """
  if num_batches < 1:
    raise ValueError(f'num_batches={num_batches!r} must be >= 1.')
  if warmup < 0:
    raise ValueError(f'warmup={warmup!r} must be >= 0.')
  iterator = ds.as_numpy_iterator()
  try:
    for _ in range(warmup):
      next(iterator)
    images = 0
    start = time.perf_counter()
    for _ in range(num_batches):
      images += _images_in(next(iterator))
    elapsed = time.perf_counter() - start
  except StopIteration:
    raise ValueError(
      f'The dataset ended before warmup={warmup} + num_batches={num_batches} elements.'
    ) from None
  return images / elapsed
