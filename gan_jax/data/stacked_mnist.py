"""Stacked MNIST: three MNIST digits stacked as the channels of one 28x28 image, 1,000 modes.

The mode-collapse benchmark of Srivastava et al. 2017 ("VEEGAN: Reducing Mode Collapse in
GANs using Implicit Variational Learning", NeurIPS) and Lin et al. 2018 ("PacGAN: The power
of two samples in generative adversarial networks", NeurIPS): channel ``c`` of an image
holds an MNIST digit ``d_c``, and the image's mode is the 3-digit number
``d0 * 100 + d1 * 10 + d2`` in [0, 1000). A generator's mode coverage is then measured by
classifying each channel of its samples with an MNIST classifier
(``gan_jax.metrics.mode_coverage``).

This version is a *deterministic, exactly uniform* dataset built from the TFDS ``mnist``
build alone (no other download). Example ``k`` of base split ``s`` ('train' or 'test') with
seed ``seed`` is a pure function of ``(s, seed, k)`` and the MNIST data:

* Block ``b = k // 1000``: a pseudo-random generator seeded with ``(seed, crc32(s), b)``
  draws a permutation of the 1,000 modes; example ``k`` gets mode ``perm[k % 1000]``. So
  every block of 1,000 consecutive examples holds each mode exactly once, and any 26
  consecutive blocks (26,000 images, the sample size of VEEGAN and PacGAN) hold each mode
  exactly 26 times.
* Channel ``c``: the same generator picks, uniformly, one of the MNIST images of split
  ``s`` whose label is ``d_c`` (the images of a digit are taken in their stored TFDS order).

The generator is numpy's ``default_rng`` (PCG64) with ``permutation`` and ``integers``; numpy
does not promise these streams across versions, so ``tests/test_stacked_mnist.py`` pins the
first modes of seed 0 to catch a silent change of the dataset.

Why exactly uniform rather than the usual i.i.d. stacking of three random MNIST images:
MNIST's label frequencies are not uniform (in 'train', 5,421 fives vs 6,742 ones), so i.i.d.
stacking gives a mode distribution that is not uniform; and even for a uniform source the
empirical KL(p_hist || uniform) of an N-sample over K = 1,000 modes has a positive bias of
about ``(K - 1) / (2 N)`` = 0.019 for N = 26,000, which is not small beside the KL values
being compared (PacGAN reports 0.06 for its best model). With exact uniformity the real data
scores modes = 1000 and KL = 0 by construction (up to classifier errors), so the metric's
reference point is exact.

The dataset has a chosen length ``num_examples`` per base split, a positive multiple of
1,000 (default 60,000 for 'train' and 10,000 for 'test'; it is a synthetic set and may be
longer than the MNIST split). Split strings use TFDS syntax and slice the *stacked* examples
(not the MNIST source images): ``'train[:26000]'`` is the first 26 blocks (exactly
uniform), ``'train[:50%]'`` the first 30,000 examples, ``'train+test'`` both; the channel
images of a 'train' example always come from MNIST 'train', of a 'test' example from
MNIST 'test'.

Typical use::

    images, modes, digits = stacked_mnist_arrays('train[:26000]', data_dir='../shared/tfds')
    # or, anywhere a TFDS name is accepted (gan_jax.data.pipeline hooks the name 'stacked_mnist'):
    ds = gan_jax.data.pipeline.build_eval_dataset('stacked_mnist', 'test', data_dir='../shared/tfds',
                                         image_size=28, channels=3, batch_size=256)
"""

from __future__ import annotations

import functools
import types
import zlib
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from gan_jax.data import tfds_images
from gan_jax.errors import ConfigError

__all__ = [
  'BLOCK_SIZE',
  'DEFAULT_NUM_EXAMPLES',
  'IMAGE_SHAPE',
  'NAME',
  'NUM_MODES',
  'check_source',
  'raw_images',
  'stacked_mnist_arrays',
  'stacked_mnist_dataset',
]

NAME = 'stacked_mnist'  # The dataset name gan_jax.data.pipeline accepts in place of a TFDS name.
NUM_MODES = 1000  # 10 ** 3 digit triples.
BLOCK_SIZE = 1000  # Each block of this many consecutive examples holds every mode once.
IMAGE_SHAPE = (28, 28, 3)
DEFAULT_NUM_EXAMPLES = {'train': 60_000, 'test': 10_000}  # Stacked examples per base split.
_SOURCE = 'mnist'  # The TFDS dataset the channels are drawn from.


def _check_seed(seed: int) -> None:
  if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
    raise ValueError(f'seed={seed!r} must be a non-negative integer.')


def _lengths(num_examples: int | None) -> dict[str, int]:
  """The stacked length of each base split, checking ``num_examples``."""
  if num_examples is None:
    return dict(DEFAULT_NUM_EXAMPLES)
  if (
    not isinstance(num_examples, (int, np.integer))
    or isinstance(num_examples, bool)
    or num_examples <= 0
    or num_examples % BLOCK_SIZE
  ):
    raise ValueError(
      f'num_examples={num_examples!r} must be a positive multiple of {BLOCK_SIZE} (so that '
      f'every mode appears equally often), e.g. 60000; None uses {DEFAULT_NUM_EXAMPLES}.'
    )
  return {name: int(num_examples) for name in DEFAULT_NUM_EXAMPLES}


def _segments(split: str | tfds.core.AbstractSplit, lengths: Mapping[str, int]):
  """Resolves a TFDS split spec to ``[(base_split, start, stop), ...]`` of stacked examples.

  Uses TFDS's own parser, so slicing, percent rounding, ``'a+b'``, ``'all'`` and the
  ``tfds.even_splits`` objects of multi-process training behave as for any TFDS dataset.
  """
  infos = {
    name: types.SimpleNamespace(num_examples=n, shard_lengths=[n]) for name, n in lengths.items()
  }
  try:
    instructions = tfds.core.ReadInstruction.from_spec(split).to_absolute(infos)
  except (KeyError, ValueError) as err:
    available = ', '.join(f"'{name}' ({n} examples)" for name, n in lengths.items())
    raise ConfigError(
      f"Invalid split {split!r} for '{NAME}': {err} Available splits: {available}. TFDS "
      f"slicing such as 'train[:26000]' or 'train[:50%]' is supported (it slices the stacked "
      f'examples).'
    ) from None
  segments = []
  for instr in instructions:
    n = lengths[instr.splitname]
    start = 0 if instr.from_ is None else instr.from_
    stop = n if instr.to is None else instr.to
    segments.append((instr.splitname, start, max(start, stop)))
  return segments


@functools.lru_cache(maxsize=4)
def _mnist(split: str, data_dir: str | None, download: bool) -> tuple[np.ndarray, np.ndarray]:
  """MNIST ``split`` as (images uint8 [M, 28, 28], labels int32 [M]) in stored TFDS order."""
  ds = tfds_images.load_tfds_images(
    _SOURCE, split, data_dir=data_dir, image_size=28, channels=1, download=download
  )
  images, labels = [], []
  for batch in ds.batch(10_000).as_numpy_iterator():
    # load_tfds_images maps uint8 u to u / 127.5 - 1 in float32; this inverts it exactly.
    images.append(np.rint((batch['image'][..., 0] + 1.0) * 127.5).astype(np.uint8))
    labels.append(batch['label'].astype(np.int32))
  images, labels = np.concatenate(images), np.concatenate(labels)
  images.flags.writeable = False  # Shared by every caller through the cache.
  labels.flags.writeable = False
  return images, labels


def _digits_of(modes: np.ndarray) -> np.ndarray:
  """int [...] modes in [0, 1000) -> int32 [..., 3] digits (hundreds, tens, units)."""
  return np.stack([modes // 100, modes // 10 % 10, modes % 10], axis=-1).astype(np.int32)


def _block(
  base: str, seed: int, block: int, by_digit: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
  """Block ``block`` of base split ``base``: (modes int32 [1000], source indices int64 [1000, 3])."""
  rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(base.encode()), block]))
  modes = rng.permutation(NUM_MODES).astype(np.int32)
  digits = _digits_of(modes)
  counts = np.array([len(idx) for idx in by_digit])
  ranks = rng.integers(0, counts[digits])  # [1000, 3], uniform over the digit's images.
  source = np.empty(digits.shape, np.int64)
  for d in range(10):
    mask = digits == d
    source[mask] = by_digit[d][ranks[mask]]
  return modes, source


def _plan(
  split: str | tfds.core.AbstractSplit,
  data_dir: str | None,
  num_examples: int | None,
  seed: int,
  download: bool,
):
  """Per segment: (base split, MNIST images [M, 28, 28], modes [n], source indices [n, 3])."""
  _check_seed(seed)
  segments = _segments(split, _lengths(num_examples))
  data_dir = tfds_images.resolve_data_dir(data_dir)
  plans = []
  for base, start, stop in segments:
    images, labels = _mnist(base, data_dir, bool(download))
    by_digit = [np.flatnonzero(labels == d) for d in range(10)]
    if min(map(len, by_digit)) == 0:
      raise ValueError(f"MNIST '{base}' lacks some digit; cannot build Stacked MNIST from it.")
    first, last = start // BLOCK_SIZE, -(-stop // BLOCK_SIZE)  # Blocks overlapping the range.
    blocks = [_block(base, int(seed), b, by_digit) for b in range(first, last)]
    offset = first * BLOCK_SIZE
    if blocks:
      modes = np.concatenate([m for m, _ in blocks])[start - offset : stop - offset]
      source = np.concatenate([s for _, s in blocks])[start - offset : stop - offset]
    else:
      modes, source = np.zeros([0], np.int32), np.zeros([0, 3], np.int64)
    plans.append((base, images, modes, source))
  return plans


def stacked_mnist_arrays(
  split: str = 'train',
  *,
  data_dir: str | None,
  num_examples: int | None = None,
  seed: int = 0,
  download: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Stacked MNIST as numpy arrays (see the module docstring for the construction).

  Args:
    split: TFDS split spec over the stacked examples: 'train' or 'test', with slicing
      ('train[:26000]', 'test[:10%]') and '+' allowed. Channel images of a 'train' example
      come from MNIST 'train', of a 'test' example from MNIST 'test'.
    data_dir: TFDS data directory holding the ``mnist`` build (None: ``TFDS_DATA_DIR``,
      then TFDS's default ``~/tensorflow_datasets``).
    num_examples: Length of each base split's stacked dataset, a positive multiple of
      1,000; None uses 60,000 for 'train' and 10,000 for 'test'. Example ``k`` does not
      depend on it (only which examples exist does).
    seed: Non-negative integer; the dataset is a pure function of (base split, seed,
      index). Different seeds give different mode orders and channel images.
    download: Let TFDS download and prepare ``mnist`` if it is missing (needs internet).

  Returns:
    ``(images, modes, digits)``: ``images`` uint8 [N, 28, 28, 3] in [0, 255], channel ``c``
    an MNIST image of digit ``digits[:, c]``; ``modes`` int32 [N] in [0, 1000), equal to
    ``digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2]``; ``digits`` int32 [N, 3] in
    [0, 9]. Every aligned block of 1,000 examples holds each mode exactly once.

  Raises:
    ValueError: (``ConfigError``) an unknown split name or out-of-range slice; a
      ``num_examples`` that is not a positive multiple of 1,000; a negative or non-integer
      ``seed``.
    gan_jax.data.pipeline.DatasetNotFoundError: ``mnist`` is not prepared in ``data_dir`` (and
      ``download`` is False).
  """
  plans = _plan(split, data_dir, num_examples, seed, download)
  # mnist[source] is [n, 3, 28, 28]; channels go last.
  images = np.concatenate([np.moveaxis(mnist[source], 1, -1) for _, mnist, _, source in plans])
  modes = np.concatenate([modes for _, _, modes, _ in plans]).astype(np.int32)
  return np.ascontiguousarray(images), modes, _digits_of(modes)


def stacked_mnist_dataset(
  split: str | tfds.core.AbstractSplit = 'train',
  *,
  data_dir: str | None,
  num_examples: int | None = None,
  seed: int = 0,
  download: bool = False,
) -> tuple[tf.data.Dataset, int]:
  """Stacked MNIST as an in-order ``tf.data.Dataset`` of raw uint8 examples, and its length.

  This is what ``gan_jax.data.pipeline`` uses for the name 'stacked_mnist' (with the default
  ``num_examples`` and ``seed=0``), before its usual resizing, channel conversion and
  scaling. Images are gathered lazily from the MNIST arrays (held once in memory), so the
  dataset costs no more memory than MNIST itself until it is cached.

  Args:
    split: As in ``stacked_mnist_arrays``; also a ``tfds.even_splits`` element.
    data_dir: As in ``stacked_mnist_arrays``.
    num_examples: As in ``stacked_mnist_arrays``.
    seed: As in ``stacked_mnist_arrays``.
    download: As in ``stacked_mnist_arrays``.

  Returns:
    ``(ds, n)``: ``ds`` yields ``{'image': uint8 [28, 28, 3] in [0, 255], 'label': int32 []}``
    (label = the mode in [0, 1000)) in the order of ``stacked_mnist_arrays``; ``n`` is its
    number of examples.

  Raises:
    As ``stacked_mnist_arrays``.
  """
  plans = _plan(split, data_dir, num_examples, seed, download)
  parts = []
  for _, mnist, modes, source in plans:
    images = tf.constant(mnist)  # [M, 28, 28] uint8, captured by the map function.

    def gather(index, mode, images=images):
      image = tf.transpose(tf.gather(images, index), [1, 2, 0])  # [3, 28, 28] -> [28, 28, 3]
      return {'image': tf.ensure_shape(image, IMAGE_SHAPE), 'label': mode}

    part = tf.data.Dataset.from_tensor_slices((source.astype(np.int32), modes.astype(np.int32)))
    parts.append(part.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True))
  ds = functools.reduce(lambda a, b: a.concatenate(b), parts)
  return ds, sum(len(p[2]) for p in plans)


def check_source(*, data_dir: str | None, download: bool = False, field: str = 'data.name') -> None:
  """Checks, reading no image, that the TFDS 'mnist' build Stacked MNIST is made from exists.

  Args:
    data_dir: the TFDS data dir (None: `$TFDS_DATA_DIR`, else TFDS's default).
    download: let TFDS download 'mnist' if it is missing.
    field: the config field that named 'stacked_mnist', for the message.

  Raises:
    gan_jax.data.pipeline.DatasetNotFoundError: 'mnist' is not prepared in the data dir.
  """
  searched = tfds_images.searched_dir(tfds_images.resolve_data_dir(data_dir))
  tfds_images.prepared_builder(_SOURCE, 'train', searched, download, (field, ''))


def raw_images(
  split: str, *, data_dir: str | None, image_size: int, channels: int, download: bool = False
) -> tuple[tf.data.Dataset, int]:
  """`stacked_mnist_dataset` (default length, seed 0) resized and channel-converted as every
  gan_jax dataset is (`gan_jax.data.tfds_images.preprocess`): what the name 'stacked_mnist' gives.

  Returns:
    `(ds, n)`: `ds` yields `{'image': uint8 or float32 [image_size, image_size, channels] in
    [0, 255], 'label': int32 []}` (label = the mode in [0, 1000)) in order; `n` examples.

  Raises:
    As `stacked_mnist_arrays`.
  """
  ds, num_examples = stacked_mnist_dataset(split, data_dir=data_dir, download=download)
  preprocess = functools.partial(tfds_images.preprocess, image_size=image_size, channels=channels)
  return ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True), num_examples
