"""MLP GAN on MNIST: the seed tutorials' fully connected GAN (Goodfellow et al. 2014).

G: z(100) -> 256 -> 256 -> 784 (ReLU, tanh); D: 784 -> 256 -> 256 -> 1 (LeakyReLU 0.2).

    gan-jax train --config experiments/mnist_mlp.py --workdir runs/mnist_mlp

Offline: `export TFDS_DATA_DIR=../shared/tfds` first. Tiny variant for tests:
`--config experiments/mnist_mlp.py:tiny`.
"""

from gan_jax.config import apply_tiny, base_config


def get_config(variant: str = ''):
  """Returns the config; `variant='tiny'` trains a few steps on 1,024 images."""
  c = base_config()
  c.model.name = 'mlp'            # Fully connected G and D.
  c.model.latent_dim = 100        # z ~ N(0, I), 100-d.
  c.model.hidden = (256, 256)     # Hidden widths of both G and D.
  c.data.name = 'mnist'           # TFDS mnist, train split.
  c.data.image_size = 28          # 28x28 -> 784 inputs to D.
  c.data.channels = 1             # Grayscale.
  c.train.steps = 10000           # The MLP GAN needs more steps than the DCGAN.
  c.train.batch_size = 64         # Global batch.
  c.train.loss = 'non_saturating' # -E[log D(G(z))] for G.
  c.train.g_lr = 2e-4             # Adam, lr 2e-4, b1 0.5.
  c.train.d_lr = 2e-4
  c.train.b1 = 0.5
  if variant == 'tiny':
    apply_tiny(c)
  elif variant:
    raise ValueError(f'unknown variant {variant!r} of mnist_mlp; use "tiny" or none.')
  return c
