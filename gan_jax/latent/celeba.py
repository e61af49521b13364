"""CelebA for attribute directions (`gan_jax.latent`): aligned faces cropped and resized to
a generator's size, with one of their 40 binary attributes.
"""

from __future__ import annotations

import jax
import numpy as np

from gan_jax.latent.generator import ArrayLike

CELEBA_CROP = 140  # central square crop of the 218x178 aligned faces before resizing


def celeba_crop_resize(images: ArrayLike, size: int = 64, crop: int = CELEBA_CROP) -> np.ndarray:
  """Central `crop` x `crop` square of aligned CelebA faces, resized to `size` x `size`.

  Args:
    images: uint8 (or float in [0, 255]) `[N, H, W, 3]`, e.g. CelebA's `[N, 218, 178, 3]`.
    size: output height and width.
    crop: side of the central square (clipped to min(H, W)).

  Returns:
    float32 `[N, size, size, 3]` in [-1, 1] (bilinear, antialiased: `jax.image.resize`).
  """
  x = np.asarray(images, np.float32)
  h, w = x.shape[1:3]
  s = min(crop, h, w)
  top, left = (h - s) // 2, (w - s) // 2
  x = x[:, top : top + s, left : left + s]
  x = jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), 'linear', antialias=True)
  return np.clip(np.asarray(x) / 127.5 - 1.0, -1.0, 1.0)


def load_celeba_attribute(
  attribute: str,
  split: str = 'test[:2000]',
  *,
  data_dir: str | None = None,
  size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
  """Real CelebA images and one of their 40 binary attributes (TFDS `celeb_a`).

  Args:
    attribute: a CelebA attribute name, e.g. 'Smiling', 'Eyeglasses', 'Male'.
    split: TFDS split (slicing allowed).
    data_dir: TFDS data dir holding a prepared `celeb_a` (None: TFDS_DATA_DIR / default).
    size: output size (`celeba_crop_resize`).

  Returns:
    (images float32 `[N, size, size, 3]` in [-1, 1], labels bool `[N]`), for
    `fit_direction_from_images`.

  Raises:
    ValueError: unknown attribute (the message lists the 40 names).
    tensorflow_datasets errors: celeb_a is not prepared in data_dir.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  from gan_jax.data.tfds_images import keep_tensorflow_on_cpu  # pylint: disable=g-import-not-at-top

  keep_tensorflow_on_cpu()
  builder = tfds.builder('celeb_a', data_dir=data_dir)
  names = sorted(builder.info.features['attributes'].keys())
  if attribute not in names:
    raise ValueError(f'unknown CelebA attribute {attribute!r}; choose from {", ".join(names)}.')
  ds = builder.as_dataset(split=split, shuffle_files=False)
  images, labels = [], []
  for ex in tfds.as_numpy(ds.batch(256)):
    images.append(celeba_crop_resize(ex['image'], size))
    labels.append(np.asarray(ex['attributes'][attribute], bool))
  return np.concatenate(images), np.concatenate(labels)
