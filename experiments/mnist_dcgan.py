"""DCGAN-28 on MNIST (the main job): the seed tutorials' DCGAN, non-saturating loss, Adam.

Run it (from the repository root):

    gan-jax train --config experiments/mnist_dcgan.py --workdir runs/mnist_dcgan

Offline, point TFDS at a local data dir first: `export TFDS_DATA_DIR=../shared/tfds` (or add
`--config.data.data_dir=../shared/tfds`). The `:tiny` variant
(`--config experiments/mnist_dcgan.py:tiny`) trains a narrow model for a few steps, for tests.
"""

from gan_jax.config import apply_tiny, base_config


def get_config(variant: str = ''):
  """Returns the config; `variant='tiny'` shrinks it to seconds of CPU time."""
  c = base_config()
  c.model.name = 'dcgan28'        # G: Dense->7x7x128, BN, ReLU, ConvT->14x14x64, BN, ReLU, ConvT->28x28x1, tanh.
  c.model.latent_dim = 100        # z ~ N(0, I), 100-d.
  c.model.g_width = 64            # 14x14 feature map has 64 channels, 7x7 has 128.
  c.model.d_width = 64            # D: Conv 64 s2 -> Conv 128 s2 -> Dense 1.
  c.data.name = 'mnist'           # TFDS mnist 3.0.1, train split (60,000 images).
  c.data.image_size = 28          # Native MNIST size.
  c.data.channels = 1             # Grayscale.
  c.train.steps = 5000            # ~5.3 epochs at batch 64.
  c.train.batch_size = 64         # Global batch.
  c.train.loss = 'non_saturating' # -E[log D(G(z))] for G (Goodfellow et al. 2014).
  c.train.g_lr = 2e-4             # Adam, Radford et al. 2016.
  c.train.d_lr = 2e-4
  c.train.b1 = 0.5
  c.sample_every = 500            # A grid every 500 steps.
  c.checkpoint_every = 1000       # A checkpoint every 1000 steps.
  if variant == 'tiny':
    apply_tiny(c)
    c.train.steps = 6             # checkpoints at 3 and 6: enough to test resume
    c.sample_every = 3
    c.checkpoint_every = 3
  elif variant:
    raise ValueError(f'unknown variant {variant!r} of mnist_dcgan; use "tiny" or none.')
  return c
