"""Image-to-image translation (issue 19): pix2pix on paired tasks (Isola et al. 2017) and
CycleGAN on unpaired ones (Zhu et al. 2017).

* `pix2pix`: the `Pix2PixState` pytree, `create_pix2pix`, the pure `train_step`.
* `cyclegan`: the `CycleGANState` pytree (with the discriminators' image histories),
  `create_cyclegan`, the pure, data-parallel `train_step`, the learning-rate schedule.
* `tasks`: colourisation, 4x super-resolution and inpainting built from the TFDS data, with
  their trivial baselines; the unpaired Fashion-MNIST sneakers <-> ankle boots; your own
  data (`build_source_task`: 'pairs:', 'unpaired:', 'cycle_gan/*' of
  `gan_jax.data.translation_sources`).
* `metrics`: PSNR and SSIM (dm-pix); translation accuracy, cycle-reconstruction error and
  FID (LeNet) with their baselines.
* `run`: translation run folders (`translation_run.json` beside the Orbax checkpoints):
  `write_run_record`, `save_translation_run`, `load_translation_run` (the generators of the
  latest checkpoint).
* `translate`: `gan-jax translate`: image files prepared as each task's training inputs,
  translated in inference mode, written as PNGs or an input | output grid.
* `run_config`: translation configs for `gan-jax train` (a run config with a `translation`
  block): `translation_config`, `apply_tiny`, `validate`, `is_translation`, `EVAL_METRICS`.
* `kinds`: what differs between a pix2pix and a CycleGAN run (task, model, step, batches of
  step k from (seed, k), evaluation, grid), one registry entry each.
* `replicas`: K translation runs in one compiled program (`num_replicas`, `gan-jax sweep
  --replicas`): replica configs, per-replica learning rate and loss weight as traced inputs,
  the replicated step, stacked batches.
* `train`: `train_translation(config, workdir)`, the loop `gan-jax train` runs for a
  translation config (checkpoints, exact resume, evaluation, grids, summary), and
  `train_translation_replicas(configs, workdirs)` for K of them in one program.

The models are `gan_jax.models.unet.UNetGenerator` and `PatchGANDiscriminator` (pix2pix),
`gan_jax.models.resnet_generator.ResnetGenerator` and the PatchGAN (CycleGAN).
"""

from gan_jax.translation.metrics import (
  class_fraction,
  direction_scores,
  feature_fid,
  image_quality,
  mean_l1,
  psnr_per_image,
  ssim_per_image,
)
from gan_jax.translation.pix2pix import (
  Pix2Pix,
  Pix2PixState,
  check_batch,
  create_pix2pix,
  make_train_step,
  train_step,
  translate_batches,
)
from gan_jax.translation.tasks import (
  TASKS,
  UNPAIRED_TASKS,
  PairedTask,
  UnpairedTask,
  build_task,
  build_unpaired_task,
)

__all__ = [
  'TASKS',
  'UNPAIRED_TASKS',
  'PairedTask',
  'Pix2Pix',
  'Pix2PixState',
  'UnpairedTask',
  'build_task',
  'build_unpaired_task',
  'check_batch',
  'class_fraction',
  'create_pix2pix',
  'direction_scores',
  'feature_fid',
  'image_quality',
  'make_train_step',
  'mean_l1',
  'psnr_per_image',
  'ssim_per_image',
  'train_step',
  'translate_batches',
]
