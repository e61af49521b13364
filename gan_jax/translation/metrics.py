"""Scores of translated images: PSNR and SSIM (paired tasks), and translation accuracy,
cycle-reconstruction error and FID (LeNet) (unpaired tasks), each beside a trivial baseline.

PSNR and SSIM are computed by dm-pix (DeepMind's JAX image library).

Both take images float `[N, H, W, C]` in [-1, 1], map them to [0, 1] (x + 1) / 2 (dynamic
range 1, dm-pix's convention), score each image against its target and average over images:

* PSNR (dB) = 10 log10(1 / MSE) per image (`dm_pix.psnr`), averaged over the N images (the
  mean of per-image PSNR, as image-restoration papers report it, not the PSNR of the pooled
  MSE). A pair of identical images has PSNR = inf.
* SSIM (Wang et al. 2004) per image (`dm_pix.ssim`: 11x11 Gaussian window, sigma 1.5, k1 =
  0.01, k2 = 0.03, 'valid' filtering, averaged over positions and channels), averaged over
  the N images; in [-1, 1], 1 for identical images.

Unpaired translation (`direction_scores`, CycleGAN on Fashion-MNIST sneakers <-> ankle boots),
per direction, each with its baseline:

* translation accuracy: the fraction of translated images the pinned Fashion-MNIST LeNet
  (`gan_jax.metrics.lenet`) assigns to the target class; baseline: the same fraction for the
  untranslated inputs (near 0: the classifier reads sneakers as sneakers); for reference the
  fraction for real target-domain images ('target_accuracy', the classifier's own ceiling).
* cycle-reconstruction error: mean |F(G(x)) - x| per pixel on [-1, 1] images; baseline: mean
  |m - x| with m the mean training image of x's domain, the error of a "reconstruction" that
  knows the domain but nothing of the image (the identity map would score 0 but translates
  nothing, which the accuracy shows).
* FID (LeNet) of the translated images against held-out images of the target domain
  (`gan_jax.metrics.fid`, the LeNet's 128 features); baseline: the FID of the untranslated
  inputs against the same images. None when either set has 128 images or fewer.
"""

from __future__ import annotations

from typing import Any

import dm_pix
import jax.numpy as jnp
import numpy as np

from gan_jax.metrics.features import FeatureNet
from gan_jax.metrics.fid import fid_from_stats
from gan_jax.metrics.lenet import predict
from gan_jax.metrics.stats import feature_stats


def _prepare(images: Any, targets: Any) -> tuple[jnp.ndarray, jnp.ndarray]:
  a, b = np.asarray(images, np.float32), np.asarray(targets, np.float32)
  if a.ndim != 4 or a.shape != b.shape:
    raise ValueError(
      f'PSNR/SSIM need images and targets of one shape [N, H, W, C], got {a.shape} and {b.shape}.'
    )
  return jnp.asarray((a + 1.0) / 2.0), jnp.asarray((b + 1.0) / 2.0)


def psnr_per_image(images: Any, targets: Any) -> np.ndarray:
  """float64 `[N]`: PSNR in dB of each image against its target (both in [-1, 1])."""
  a, b = _prepare(images, targets)
  return np.asarray(dm_pix.psnr(a, b), np.float64)


def ssim_per_image(images: Any, targets: Any) -> np.ndarray:
  """float64 `[N]`: SSIM of each image against its target (both in [-1, 1])."""
  a, b = _prepare(images, targets)
  return np.asarray(dm_pix.ssim(a, b, max_val=1.0), np.float64)


def image_quality(images: Any, targets: Any) -> dict[str, float]:
  """{'psnr': mean PSNR (dB), 'ssim': mean SSIM} of `images` against `targets`, both float
  `[N, H, W, C]` in [-1, 1].

  Raises:
    ValueError: if the shapes differ or are not 4-D.
  """
  return {
    'psnr': float(np.mean(psnr_per_image(images, targets))),
    'ssim': float(np.mean(ssim_per_image(images, targets))),
  }


def class_fraction(net: FeatureNet, images: Any, label: int) -> float:
  """Fraction in [0, 1] of `images` (float32 `[N, 28, 28, 1]` in [-1, 1], N >= 1) that the
  classifier `net` assigns to class `label`.

  Raises:
    ValueError: for images the classifier does not take, or N = 0.
  """
  images = np.asarray(images, np.float32)
  if images.shape[:1] == (0,):
    raise ValueError('class_fraction needs at least one image, got 0.')
  return float(np.mean(predict(net, images) == label))


def mean_l1(images: Any, targets: Any) -> float:
  """Mean absolute difference per pixel and channel of images against targets (both float
  `[N, H, W, C]` in [-1, 1]; targets may broadcast, e.g. one mean image `[H, W, C]`), in [0, 2].

  Raises:
    ValueError: if the shapes do not broadcast.
  """
  a, b = np.asarray(images, np.float64), np.asarray(targets, np.float64)
  try:
    return float(np.mean(np.abs(a - b)))
  except ValueError as err:
    raise ValueError(f'mean_l1 got shapes {a.shape} and {b.shape} that do not broadcast.') from err


def feature_fid(
  net: FeatureNet, images: Any, reference: Any, batch_size: int = 500
) -> float | None:
  """FID between `net`'s features of images and of reference images (both float `[N, H, W,
  C]` in [-1, 1]); None when either has at most `net.feature_dim` images (no reliable
  covariance)."""
  if min(len(images), len(reference)) <= net.feature_dim:
    return None

  def features(x):
    x = np.asarray(x, np.float32)
    return np.concatenate(
      [np.asarray(net.apply(x[i : i + batch_size])[0]) for i in range(0, len(x), batch_size)]
    )

  return fid_from_stats(feature_stats(features(images)), feature_stats(features(reference)))


def direction_scores(
  net: FeatureNet | None,
  inputs: np.ndarray,
  outputs: np.ndarray,
  cycled: np.ndarray,
  targets: np.ndarray,
  target_label: int | None,
  input_domain_mean: np.ndarray,
) -> dict[str, float | None]:
  """The scores of one translation direction (module docstring).

  Args:
    net: the domain classifier (`gan_jax.metrics.lenet.load_lenet('fashion_mnist')`); None
      for domains without one (your own data): the accuracies and FIDs are then None.
    inputs: float32 `[N, S, S, C]` held-out images of the source domain.
    outputs: their translations `[N, S, S, C]`; cycled: the translations translated back.
    targets: float32 `[M, S, S, C]` held-out images of the target domain.
    target_label: the target domain's class (None without a classifier).
    input_domain_mean: float `[S, S, C]`, the mean training image of the source domain.

  Returns:
    {'accuracy', 'baseline_accuracy', 'target_accuracy', 'cycle_l1', 'baseline_cycle_l1',
    'change_l1' (mean |output - input|), 'fid', 'baseline_fid'}.
  """
  scores = {
    'accuracy': None,
    'baseline_accuracy': None,
    'target_accuracy': None,
    'cycle_l1': mean_l1(cycled, inputs),
    'baseline_cycle_l1': mean_l1(inputs, input_domain_mean),
    'change_l1': mean_l1(outputs, inputs),
    'fid': None,
    'baseline_fid': None,
  }
  if net is not None:
    scores.update(
      accuracy=class_fraction(net, outputs, target_label),
      baseline_accuracy=class_fraction(net, inputs, target_label),
      target_accuracy=class_fraction(net, targets, target_label),
      fid=feature_fid(net, outputs, targets),
      baseline_fid=feature_fid(net, inputs, targets),
    )
  return scores
