"""DCGAN-28 on Stacked MNIST (Srivastava et al. 2017, VEEGAN; Lin et al. 2018, PacGAN).

Stacked MNIST puts three MNIST digits in the three channels of one 28x28 image, giving
1,000 modes (the 3-digit number); how many a generator covers measures mode collapse. The
data (`gan_jax.data.stacked_mnist`) is built deterministically from the TFDS `mnist` build, so
nothing new is downloaded; its 'train' split has 60,000 images, each of the 1,000 modes
exactly once in every block of 1,000.

Run it (from the repository root):

    gan-jax train --config experiments/stacked_mnist_dcgan.py --workdir runs/stacked_mnist_dcgan \
        --config.data.data_dir=../shared/tfds

Mode coverage is measured during training every `eval_every` (1,000) steps, and afterwards
with `gan-jax eval --workdir runs/stacked_mnist_dcgan --metrics modes`: it draws
26,000 samples, classifies each channel with the pinned MNIST LeNet
(`gan_jax.metrics.lenet.load_lenet('mnist')`) and reports the number of modes covered (of
1,000) and KL(p || uniform) of the mode histogram (`gan_jax.metrics.mode_coverage`). For
reference, PacGAN (Table 2) reports DCGAN 99 modes / KL 3.40 and PacDCGAN2 1,000 / 0.06, with
their own architecture and training length (the VEEGAN Stacked-MNIST setup); this config uses
the DCGAN-28 of this library, so its numbers are not directly comparable with those.

The `:tiny` variant (`--config experiments/stacked_mnist_dcgan.py:tiny`) trains a narrow
model for a few steps on the first 1,024 Stacked-MNIST images, for tests.
"""

from gan_jax.config import apply_tiny, base_config


def get_config(variant: str = ''):
  """Returns the config; `variant='tiny'` shrinks it to seconds of CPU time."""
  c = base_config()
  c.model.name = 'dcgan28'        # G: Dense->7x7x128, BN, ReLU, ConvT->14x14x64, BN, ReLU, ConvT->28x28x3, tanh.
  c.model.latent_dim = 100        # z ~ N(0, I), 100-d.
  c.model.g_width = 64            # 14x14 feature map has 64 channels, 7x7 has 128.
  c.model.d_width = 64            # D: Conv 64 s2 -> Conv 128 s2 -> Dense 1.
  c.data.name = 'stacked_mnist'   # gan_jax.data.stacked_mnist, built from TFDS mnist 3.0.1 (seed 0).
  c.data.split = 'train'          # 60,000 stacked images; every 1,000 hold each mode once.
  c.data.image_size = 28          # Native MNIST size.
  c.data.channels = 3             # One digit per channel.
  c.train.steps = 5000            # ~5.3 epochs at batch 64.
  c.train.batch_size = 64         # Global batch.
  c.train.loss = 'non_saturating' # -E[log D(G(z))] for G (Goodfellow et al. 2014).
  c.train.g_lr = 2e-4             # Adam, Radford et al. 2016.
  c.train.d_lr = 2e-4
  c.train.b1 = 0.5
  c.sample_every = 500            # A grid every 500 steps.
  c.checkpoint_every = 1000       # A checkpoint every 1000 steps.
  c.eval_every = 1000             # Mode coverage every 1000 steps (and at the end).
  c.eval.metrics = 'modes'        # Modes covered of 1,000 and KL to uniform, on 26,000 samples.
  if variant == 'tiny':
    apply_tiny(c)                 # 'train[:1024]': the first 1,024 stacked images.
  elif variant:
    raise ValueError(f'unknown variant {variant!r} of stacked_mnist_dcgan; use "tiny" or none.')
  return c
