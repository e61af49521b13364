"""pix2pix (Isola et al. 2017) inpainting on MNIST: a U-Net fills a hidden 14x14 square.

Run it (from the repository root; offline, `export TFDS_DATA_DIR=../shared/tfds` first):

    gan-jax train --config experiments/pix2pix_inpaint_mnist.py --workdir runs/p2p_inpaint
    gan-jax translate --workdir runs/p2p_inpaint --input digits/ --out filled.png

The settings are `scripts/pix2pix_task.py --task inpaint`'s defaults (U-Net and PatchGAN of
width 64, lambda 100, Adam 2e-4, batch 32 from the first 4,096 'train' images, 512 'test'
images held out) with the 800 steps of docs/translation.md's results. Every 200 steps it
evaluates PSNR/SSIM of the model and of the mean-fill baseline on the held-out images
(metrics.jsonl: eval/psnr, eval/ssim, eval/baseline_psnr, eval/baseline_ssim) and writes a
grid of input | output | target (samples/). Rerunning the command resumes from the latest
checkpoint. The fields: gan_jax/translation/run_config.py. The `:tiny` variant is the
script's `--tiny` (3 steps of batch 8 on 64 images, widths 8): seconds of CPU, for tests.
"""

from gan_jax.translation.run_config import apply_tiny, translation_config


def get_config(variant: str = ''):
  """Returns the config; `variant='tiny'` shrinks it to seconds of CPU time."""
  c = translation_config('pix2pix')
  c.translation.task = 'inpaint'
  c.translation.dataset = 'mnist'   # 28x28x1; the hidden square is 14x14 (hole 0: side // 2)
  c.train.steps = 800
  c.sample_every = 200
  c.checkpoint_every = 200
  c.eval_every = 200
  if variant == 'tiny':
    apply_tiny(c)
  elif variant:
    raise ValueError(f'unknown variant {variant!r} of pix2pix_inpaint_mnist; use "tiny" or none.')
  return c
