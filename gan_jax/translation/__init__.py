"""Image-to-image translation (issue 19): pix2pix on paired tasks (Isola et al. 2017).

* `pix2pix`: the `Pix2PixState` pytree, `create_pix2pix`, the pure `train_step`.
* `tasks`: colourisation, 4x super-resolution and inpainting built from the TFDS data, with
  their trivial baselines.
* `metrics`: PSNR and SSIM (dm-pix).

The models are `gan_jax.models.unet.UNetGenerator` and `PatchGANDiscriminator`.
"""

from gan_jax.translation.metrics import image_quality, psnr_per_image, ssim_per_image
from gan_jax.translation.pix2pix import (
  Pix2Pix,
  Pix2PixState,
  check_batch,
  create_pix2pix,
  make_train_step,
  train_step,
  translate_batches,
)
from gan_jax.translation.tasks import TASKS, PairedTask, build_task

__all__ = [
  'TASKS',
  'PairedTask',
  'Pix2Pix',
  'Pix2PixState',
  'build_task',
  'check_batch',
  'create_pix2pix',
  'image_quality',
  'make_train_step',
  'psnr_per_image',
  'ssim_per_image',
  'train_step',
  'translate_batches',
]
