"""The feature-network interface every metric uses: images in, (features, logits) out.

A `FeatureNet` is a frozen description of a pinned, versioned feature network: its name, the
SHA-256 of its weights (part of every cached reference statistic's key), the sizes of what it
returns, and a jitted `apply`. Implementations: `gan_jax.metrics.lenet.load_lenet` (domain
classifiers for MNIST and Fashion-MNIST, "FID (LeNet)") and
`gan_jax.metrics.inception.load_inception` (the pytorch-fid InceptionV3, "FID (Inception)").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import numpy as np


@dataclasses.dataclass(frozen=True)
class FeatureNet:
  """A pinned feature network.

  Attributes:
    name: Stable identifier, e.g. 'lenet_mnist', 'lenet_fashion_mnist', 'inception_v3'.
    label: How its FID is reported: 'LeNet' gives "FID (LeNet)", 'Inception' gives
      "FID (Inception)". Never report a LeNet FID as Inception FID.
    weights_sha256: Hex SHA-256 of the weights file; part of every reference-statistics key.
    feature_dim: D, the size of the features (the penultimate layer; 2048 for Inception pool3).
    num_classes: K, the size of the logits (10 for LeNet, 1008 for the FID Inception).
    image_shape: The (H, W, C) the net accepts, or None when it accepts any size and
      1 or 3 channels (it resizes internally, as the Inception net does).
    apply: `apply(images)` with images float32 [B, H, W, C] in [-1, 1] returns
      `(features float32 [B, D], logits float32 [B, K])`. Pure and jitted.
  """

  name: str
  label: str
  weights_sha256: str
  feature_dim: int
  num_classes: int
  image_shape: tuple[int, int, int] | None
  apply: Callable[[jax.Array], tuple[jax.Array, jax.Array]]

  def check_images(self, images: np.ndarray | jax.Array) -> None:
    """Raises ValueError (what was wrong, how to fix) unless images fit this net."""
    shape = tuple(images.shape)
    if len(shape) != 4:
      raise ValueError(
        f'{self.name} needs images of shape [B, H, W, C], got shape {shape}; '
        'add a batch axis or a channel axis.'
      )
    if self.image_shape is not None and shape[1:] != tuple(self.image_shape):
      raise ValueError(
        f'{self.name} needs images of shape [B, {", ".join(map(str, self.image_shape))}], '
        f'got {shape}; it is a classifier for that domain only (pick the feature network '
        'that matches your dataset).'
      )
    if self.image_shape is None and shape[-1] not in (1, 3):
      raise ValueError(f'{self.name} needs 1 or 3 channels, got shape {shape}.')
