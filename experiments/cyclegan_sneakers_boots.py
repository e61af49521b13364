"""CycleGAN (Zhu et al. 2017) on unpaired Fashion-MNIST: sneakers (A) <-> ankle boots (B).

Run it (from the repository root; offline, `export TFDS_DATA_DIR=../shared/tfds` first):

    gan-jax train --config experiments/cyclegan_sneakers_boots.py --workdir runs/cyclegan_sb
    gan-jax translate --workdir runs/cyclegan_sb --input sneakers/ --out boots.png

The settings are `scripts/cyclegan_task.py`'s defaults (ResNet generators of width 16 with 3
residual blocks, PatchGANs of width 32, histories of 50 images, lambda 10, identity 0.5,
Adam 2e-4 held for half the steps then decayed linearly to 0, batch 16 per domain from
2,048 training images per domain, 1,000 held out per domain, a checkpoint every 200 steps)
with the 500 steps of docs/translation.md's results. Every 250 steps and at the end it
evaluates both directions against their baselines (translation accuracy and FID on the
Fashion-MNIST LeNet, cycle-reconstruction L1: metrics.jsonl eval/a2b_accuracy, ...) and
writes a grid of input | translation | cycle reconstruction. The `:tiny` variant is the
script's `--tiny` (2 steps of batch 4 on 16 images per domain, widths 4, 1 block, histories
of 4): seconds of CPU, for tests.
"""

from gan_jax.translation.run_config import apply_tiny, translation_config


def get_config(variant: str = ''):
  """Returns the config; `variant='tiny'` shrinks it to seconds of CPU time."""
  c = translation_config('cyclegan')
  c.translation.task = 'sneakers_boots'
  c.train.steps = 500
  c.sample_every = 250
  c.eval_every = 250
  if variant == 'tiny':
    apply_tiny(c)
  elif variant:
    raise ValueError(f'unknown variant {variant!r} of cyclegan_sneakers_boots; use "tiny" or none.')
  return c
