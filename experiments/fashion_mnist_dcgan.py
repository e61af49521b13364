"""DCGAN-28 on Fashion-MNIST (Xiao et al. 2017): same model and recipe as the MNIST DCGAN.

    gan-jax train --config experiments/fashion_mnist_dcgan.py --workdir runs/fashion_mnist_dcgan

Offline: `export TFDS_DATA_DIR=../shared/tfds` first. Tiny variant for tests:
`--config experiments/fashion_mnist_dcgan.py:tiny`.
"""

from gan_jax.config import apply_tiny, base_config


def get_config(variant: str = ''):
  """Returns the config; `variant='tiny'` trains a narrow model for a few steps."""
  c = base_config()
  c.model.name = 'dcgan28'        # 28x28 DCGAN (see experiments/mnist_dcgan.py).
  c.model.latent_dim = 100        # z ~ N(0, I), 100-d.
  c.model.g_width = 64            # G: 7x7x128 -> 14x14x64 -> 28x28x1.
  c.model.d_width = 64            # D: Conv 64 s2 -> Conv 128 s2 -> Dense 1.
  c.data.name = 'fashion_mnist'   # TFDS fashion_mnist 3.0.1, train split (60,000 images).
  c.data.image_size = 28          # Native size.
  c.data.channels = 1             # Grayscale.
  c.train.steps = 10000           # Clothing needs more steps than digits.
  c.train.batch_size = 64         # Global batch.
  c.train.loss = 'non_saturating' # -E[log D(G(z))] for G.
  c.train.g_lr = 2e-4             # Adam, Radford et al. 2016.
  c.train.d_lr = 2e-4
  c.train.b1 = 0.5
  if variant == 'tiny':
    apply_tiny(c)
  elif variant:
    raise ValueError(f'unknown variant {variant!r} of fashion_mnist_dcgan; use "tiny" or none.')
  return c
