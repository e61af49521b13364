"""Stacked-MNIST mode coverage: how many of the 1,000 modes a generator covers, and its KL.

The benchmark of Srivastava et al. 2017 ("VEEGAN: Reducing Mode Collapse in GANs using
Implicit Variational Learning", NeurIPS) and Lin et al. 2018 ("PacGAN: The power of two
samples in generative adversarial networks", NeurIPS): a GAN is trained on Stacked MNIST
(``gan_jax.data.stacked_mnist``: three MNIST digits as the channels of a 28x28 image, 1,000 modes),
then each channel of 26,000 generated samples is classified by a pretrained MNIST classifier.
The 3 digits give a sample's mode ``d0 * 100 + d1 * 10 + d2``; reported are

* ``modes_covered``: the number of modes with at least one sample, out of 1,000;
* ``kl``: KL(p || uniform) = sum over modes with p > 0 of ``p * log(p * 1000)`` (natural
  log), where p is the empirical mode distribution of the samples. 0 is perfectly uniform,
  log(1000) = 6.91 a single mode.

Reference points, from PacGAN Table 2 (their architecture and training length, the VEEGAN
Stacked-MNIST setup): DCGAN 99 modes, KL 3.40; PacDCGAN2 (packing 2 samples) 1,000 modes,
KL 0.06. Numbers from other architectures (e.g. ``experiments/stacked_mnist_dcgan.py``, this
library's DCGAN-28) are not directly comparable with those. The real Stacked MNIST of ``gan_jax.data.stacked_mnist`` holds every mode
exactly 26 times in any 26,000 consecutive images, so on real data the metric gives 1,000
modes and a KL near 0 (only the classifier's errors move it).

Typical use::

    from gan_jax.metrics.lenet import load_lenet
    from gan_jax.metrics.mode_coverage import stacked_mnist_coverage

    result = stacked_mnist_coverage(sample_fn, load_lenet('mnist'), num_samples=26_000)
    # {'modes_covered': 1000, 'kl': 0.05, 'num_samples': 26000}
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from gan_jax.metrics.features import FeatureNet

__all__ = [
  'NUM_MODES',
  'classify_stacked',
  'coverage_from_histogram',
  'mode_coverage',
  'mode_histogram',
  'stacked_mnist_coverage',
]

NUM_MODES = 1000
IMAGE_SHAPE = (28, 28, 3)
DEFAULT_NUM_SAMPLES = 26_000  # As in VEEGAN and PacGAN.


def mode_histogram(digits: np.ndarray) -> np.ndarray:
  """Counts the samples of each of the 1,000 modes.

  Args:
    digits: int [N, 3], each entry in [0, 9]: the classified digit of channels 0, 1, 2.

  Returns:
    int64 [1000]: ``hist[m]`` is the number of rows with ``d0 * 100 + d1 * 10 + d2 == m``.

  Raises:
    ValueError: ``digits`` is not an integer array of shape [N, 3], or has entries outside
      [0, 9].
  """
  digits = np.asarray(digits)
  if digits.ndim != 2 or digits.shape[1] != 3:
    raise ValueError(f'digits must have shape [N, 3] (one digit per channel), got {digits.shape}.')
  if digits.size and not np.issubdtype(digits.dtype, np.integer):
    raise ValueError(f'digits must be integers in [0, 9], got dtype {digits.dtype}.')
  if digits.size and (digits.min() < 0 or digits.max() > 9):
    raise ValueError(f'digits must be in [0, 9], got values in [{digits.min()}, {digits.max()}].')
  modes = digits[:, 0].astype(np.int64) * 100 + digits[:, 1] * 10 + digits[:, 2]
  return np.bincount(modes, minlength=NUM_MODES).astype(np.int64)


def coverage_from_histogram(hist: np.ndarray) -> dict[str, Any]:
  """Modes covered and KL(p || uniform) of a mode histogram (see ``mode_coverage``).

  Args:
    hist: Non-negative counts [1000] with a positive total.

  Returns:
    ``{'modes_covered': int in [1, 1000], 'kl': float >= 0}``.

  Raises:
    ValueError: Wrong shape, negative counts, or no samples at all.
  """
  hist = np.asarray(hist)
  if hist.shape != (NUM_MODES,):
    raise ValueError(f'hist must have shape [{NUM_MODES}], got {hist.shape}.')
  if (hist < 0).any():
    raise ValueError('hist must hold non-negative counts.')
  total = hist.sum()
  if total <= 0:
    raise ValueError('The mode histogram is empty: the KL of no samples is undefined.')
  p = hist[hist > 0].astype(np.float64) / total
  kl = float(np.sum(p * np.log(p * NUM_MODES)))
  return {'modes_covered': int(np.count_nonzero(hist)), 'kl': max(kl, 0.0)}


def mode_coverage(digits: np.ndarray) -> dict[str, Any]:
  """Stacked-MNIST mode coverage of classified samples (VEEGAN / PacGAN metric).

  Args:
    digits: int [N, 3], N >= 1, entries in [0, 9]: the digit of each channel of each sample
      (e.g. from ``classify_stacked``).

  Returns:
    ``{'modes_covered': int, 'kl': float}``: the number of the 1,000 modes with at least
    one sample, and KL(p || uniform) = sum over p > 0 of p * log(p * 1000) in nats, where p
    is the empirical mode distribution. All modes equally often: 1,000 and 0.0; a single
    mode: 1 and log(1000) = 6.908. Note the KL of a finite sample is biased upwards by
    about (1000 - 1) / (2 N) even for a uniform generator (0.019 at N = 26,000).

  Raises:
    ValueError: As ``mode_histogram``, or N == 0.
  """
  return coverage_from_histogram(mode_histogram(digits))


def _check_images(images: Any) -> np.ndarray:
  """Validated float32 [N, 28, 28, 3] numpy copy of a batch of Stacked-MNIST images."""
  images = np.asarray(images)
  if images.ndim != 4 or tuple(images.shape[1:]) != IMAGE_SHAPE:
    hint = ''
    if images.ndim == 3:
      hint = ' (add a batch axis)'
    elif images.ndim == 4 and images.shape[-1] != 3:
      hint = ' (Stacked MNIST has 3 channels, one digit each; train with data.channels=3)'
    raise ValueError(
      f'Stacked-MNIST images must have shape [N, 28, 28, 3], got {images.shape}{hint}.'
    )
  if not np.issubdtype(images.dtype, np.floating):
    raise ValueError(
      f'Stacked-MNIST images must be float in [-1, 1], got dtype {images.dtype}; scale '
      'uint8 images as x / 127.5 - 1.'
    )
  images = images.astype(np.float32, copy=False)
  if not np.isfinite(images).all():
    raise ValueError(
      f'Stacked-MNIST images contain {int(np.size(images) - np.isfinite(images).sum())} '
      'NaN or Inf values (did training diverge?).'
    )
  return images


def _check_classifier(classifier: FeatureNet) -> None:
  if classifier.num_classes != 10 or (
    classifier.image_shape is not None and tuple(classifier.image_shape) != (28, 28, 1)
  ):
    raise ValueError(
      f'The classifier {classifier.name!r} must be a 10-class MNIST classifier for '
      f'[B, 28, 28, 1] images (e.g. gan_jax.metrics.lenet.load_lenet("mnist")), got '
      f'num_classes={classifier.num_classes}, image_shape={classifier.image_shape}.'
    )


def classify_stacked(
  images: np.ndarray, classifier: FeatureNet, batch_size: int = 1000
) -> np.ndarray:
  """Classifies each channel of Stacked-MNIST images as an MNIST digit.

  Channel c of every image is fed to the classifier as a 1-channel MNIST image
  ``[B, 28, 28, 1]``; the digit is the argmax of the logits. Every classifier call gets
  exactly ``batch_size`` images (the last batch is zero-padded), so a jitted classifier
  compiles once, whatever N.

  Args:
    images: float [N, 28, 28, 3] in [-1, 1] (N may be 0), e.g. generator samples.
    classifier: A 10-class MNIST ``FeatureNet``, e.g.
      ``gan_jax.metrics.lenet.load_lenet('mnist')``.
    batch_size: Single-channel images per classifier call, >= 1.

  Returns:
    int32 [N, 3]: the digit in [0, 9] of channels 0, 1, 2 of each image.

  Raises:
    ValueError: ``images`` not of shape [N, 28, 28, 3] (e.g. [N, 28, 28, 1] or a single
      [28, 28, 3] image), not float, or with NaN/Inf values; a classifier that is not a
      10-class [28, 28, 1] net; ``batch_size`` < 1.
  """
  images = _check_images(images)
  _check_classifier(classifier)
  if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
    raise ValueError(f'batch_size={batch_size!r} must be a positive integer.')
  n = images.shape[0]
  # [N, 28, 28, 3] -> [N, 3, 28, 28] -> [3N, 28, 28, 1]: row 3i + c is channel c of image i.
  channels = np.ascontiguousarray(np.moveaxis(images, -1, 1)).reshape(3 * n, 28, 28, 1)
  out = []
  for start in range(0, 3 * n, batch_size):
    chunk = channels[start : start + batch_size]
    size = chunk.shape[0]
    if size < batch_size:  # Pad, so the jitted classifier sees one shape only.
      chunk = np.concatenate([chunk, np.zeros((batch_size - size, 28, 28, 1), np.float32)])
    _, logits = classifier.apply(chunk)
    out.append(np.asarray(logits)[:size].argmax(axis=-1).astype(np.int32))
  digits = np.concatenate(out) if out else np.zeros([0], np.int32)
  return digits.reshape(n, 3)


def stacked_mnist_coverage(
  samples: Callable[[int], Any] | Iterable[Any],
  classifier: FeatureNet,
  num_samples: int = DEFAULT_NUM_SAMPLES,
  *,
  batch_size: int = 1000,
) -> dict[str, Any]:
  """Mode coverage of a stream of generated Stacked-MNIST images, in constant memory.

  Classifies batch after batch and accumulates the mode histogram, so the ``num_samples``
  images are never held at once. The protocol of Srivastava et al. 2017 and Lin et al. 2018
  uses 26,000 samples.

  Args:
    samples: Either ``sample_fn(n) -> images`` called as ``sample_fn(batch_size)`` until
      ``num_samples`` images have been seen (extra images of the last call are dropped), or
      an iterable of image batches (numpy or JAX arrays, or dicts with an ``'image'`` entry,
      e.g. ``build_eval_dataset(...).as_numpy_iterator()``). Images are float
      [B, 28, 28, 3] in [-1, 1].
    classifier: A 10-class MNIST ``FeatureNet``, e.g. ``load_lenet('mnist')``.
    num_samples: Images to classify, >= 1.
    batch_size: Images per ``sample_fn`` call, >= 1; the classifier gets
      ``3 * batch_size`` single-channel images per call.

  Returns:
    ``{'modes_covered': int, 'kl': float, 'num_samples': int}`` as in ``mode_coverage``.

  Raises:
    ValueError: ``num_samples`` or ``batch_size`` < 1; a batch of the wrong shape or with
      NaN/Inf values (see ``classify_stacked``); ``sample_fn`` returned no images; the
      iterable ran out before ``num_samples`` images.
  """
  if not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
    raise ValueError(f'num_samples={num_samples!r} must be a positive integer, e.g. 26000.')
  if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
    raise ValueError(f'batch_size={batch_size!r} must be a positive integer.')
  _check_classifier(classifier)
  if callable(samples) and not isinstance(samples, Iterable):
    sample_fn = samples

    def batches():
      while True:
        yield sample_fn(batch_size)

    stream = batches()
  else:
    stream = iter(samples)
  hist = np.zeros(NUM_MODES, np.int64)
  seen = 0
  for batch in stream:
    if isinstance(batch, Mapping):
      batch = batch['image']
    images = _check_images(batch)[: num_samples - seen]
    if images.shape[0] == 0:
      raise ValueError('The sample source returned an empty batch; it must yield images.')
    hist += mode_histogram(classify_stacked(images, classifier, batch_size=3 * batch_size))
    seen += images.shape[0]
    if seen >= num_samples:
      break
  if seen < num_samples:
    raise ValueError(
      f'The sample source ran out after {seen} images; num_samples={num_samples} were asked.'
    )
  return {**coverage_from_histogram(hist), 'num_samples': int(seen)}
