"""pix2pix (Isola et al. 2017) colourisation of CIFAR-10: greyscale 32x32 in, colour out.

Run it (from the repository root; offline, `export TFDS_DATA_DIR=../shared/tfds` first):

    gan-jax train --config experiments/pix2pix_colorize_cifar10.py --workdir runs/p2p_colorize

The settings are `scripts/pix2pix_task.py --task colorize`'s defaults (U-Net and PatchGAN of
width 64, lambda 100, Adam 2e-4, batch 32 from the first 4,096 'train' images, 512 'test'
images held out) with the 800 steps of docs/translation.md's results. Every 200 steps it
evaluates PSNR/SSIM of the model and of the greyscale-copy baseline on the held-out images
and writes a grid of input | output | target. The `:tiny` variant is the script's `--tiny`.
"""

from gan_jax.translation.run_config import apply_tiny, translation_config


def get_config(variant: str = ''):
  """Returns the config; `variant='tiny'` shrinks it to seconds of CPU time."""
  c = translation_config('pix2pix')
  c.translation.task = 'colorize'   # TFDS cifar10_jpeg; input luma [32, 32, 1], target RGB
  c.train.steps = 800
  c.sample_every = 200
  c.checkpoint_every = 200
  c.eval_every = 200
  if variant == 'tiny':
    apply_tiny(c)
  elif variant:
    raise ValueError(
      f'unknown variant {variant!r} of pix2pix_colorize_cifar10; use "tiny" or none.'
    )
  return c
