"""Latent-space tools: interpolation, GAN inversion and attribute directions (InterFaceGAN).

Everything here works on a trained `gan_jax.core.state.GAN` / `GANState` pair (e.g. from
`gan_jax.training.checkpoint.load_run`) with G in inference mode: BatchNorm uses its running
averages, so G maps every latent independently of the others in its batch, and the EMA
generator (`state.ema_params`) is used unless `use_ema=False`. The functions that run G take
an optional `batch_stats` (default: `state.g_batch_stats`), so the EMA generator can run with
the statistics its run's policy gives it, `gan_jax.core.sampling.sampling_batch_stats` (as
`gan-jax edit` does). Images are float32
`[..., H, W, C]` in [-1, 1] of any size (28x28x1 MNIST, 64x64x3 CelebA, ...); latents are
float32 `[..., d]` with d = `gan.latent_dim`. For a class-conditional G, the functions that
run G take an optional `labels` (int32 `[N]`) that they pass on to `GAN.generate` only when
given, so unconditional generators need nothing.

1. **Interpolation** (`lerp`, `slerp`, `interpolation_grid`, `save_interpolation_grid`).
   Under z ~ N(0, I) with large d almost all mass lies near the sphere |z| = sqrt(d), and
   the midpoint of a straight line between two samples is atypically short (|z| ~ sqrt(d/2)
   for orthogonal endpoints), so White 2016 ("Sampling Generative Networks") interpolates on
   the great circle instead: Shoemake's (1985) slerp.
2. **GAN inversion** (`invert`): find z with G(z) ~ x for real images x by gradient descent
   (Adam) on a pixel MSE plus an optional classifier-feature ("perceptual") distance, from
   several random starts per image, all optimised at once in one jitted `lax.scan`.
3. **Attribute directions** (`sample_attributes`, `fit_direction`, `fit_attribute_direction`,
   `fit_direction_from_images`, `orthogonalize`, `edit`): InterFaceGAN (Shen et al. 2020,
   "Interpreting the Latent Space of GANs for Semantic Face Editing"): label latents by an
   attribute of their images, fit a separating hyperplane in z, and move along its unit
   normal n: z' = z + alpha n (their eq. 3). Conditional manipulation (their eq. 5)
   projects the other attributes' normals out of n (`orthogonalize`).

CelebA (TFDS `celeb_a`, 40 binary attributes). Train a 64x64 DCGAN on it (model 'dcgan',
`data.image_size=64`, `data.channels=3`), then fit a direction either

* from real labelled images: `images, labels = load_celeba_attribute('Smiling', 'test[:2000]',
  data_dir=...)` (central 140x140 crop, resized to 64x64, `celeba_crop_resize`), then
  `fit_direction_from_images(gan, state, images, labels, key=...)`, which inverts every image
  (`invert`) and fits the hyperplane on the inverted latents; or
* from a classifier you supply: any jittable `attribute_fn(images [B, 64, 64, 3]) -> [B]`
  (a probability, a logit or a 0/1 decision) given to `fit_attribute_direction`, which
  samples latents, labels their images with it and fits the hyperplane (InterFaceGAN's own
  recipe). `class_attribute(classifier, k)` wraps any logits network.

Save the result with `save_direction(path, direction)` and use it from the command line with
`gan-jax edit --workdir RUN --image face.png --direction path.npz`. Every path here is shape
generic (tested at 28x28x1 and 64x64x3).

Modules: `generator` (running G), `interpolation`, `inversion`, `attributes` (attribute
functions and labelled latents), `directions` (fitting, editing along and saving directions),
`celeba`. This package re-exports their public names.
"""

from gan_jax.latent.attributes import (
  AttributeFn,
  attribute_names,
  class_attribute,
  ink_mass,
  sample_attributes,
)
from gan_jax.latent.celeba import CELEBA_CROP, celeba_crop_resize, load_celeba_attribute
from gan_jax.latent.directions import (
  METHODS,
  binary_labels,
  edit,
  fit_attribute_direction,
  fit_direction,
  fit_direction_from_images,
  load_direction,
  orthogonalize,
  save_direction,
)
from gan_jax.latent.generator import ArrayLike, generate
from gan_jax.latent.interpolation import interpolation_grid, lerp, save_interpolation_grid, slerp
from gan_jax.latent.inversion import (
  FeatureFn,
  Inversion,
  LATENT_REGS,
  initial_latents,
  invert,
  lenet_feature_fn,
  perceptual_distance,
)

__all__ = [
  'ArrayLike',
  'AttributeFn',
  'CELEBA_CROP',
  'FeatureFn',
  'Inversion',
  'LATENT_REGS',
  'METHODS',
  'attribute_names',
  'binary_labels',
  'celeba_crop_resize',
  'class_attribute',
  'edit',
  'fit_attribute_direction',
  'fit_direction',
  'fit_direction_from_images',
  'generate',
  'initial_latents',
  'ink_mass',
  'interpolation_grid',
  'invert',
  'lenet_feature_fn',
  'lerp',
  'load_celeba_attribute',
  'load_direction',
  'orthogonalize',
  'perceptual_distance',
  'sample_attributes',
  'save_direction',
  'save_interpolation_grid',
  'slerp',
]
