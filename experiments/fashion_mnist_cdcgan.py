"""Class-conditional DCGAN-28 on Fashion-MNIST: conditional BatchNorm in G, projection D.

    gan-jax train --config experiments/fashion_mnist_cdcgan.py --workdir runs/fashion_mnist_cdcgan

The model and recipe of experiments/mnist_cdcgan.py on Fashion-MNIST (Xiao et al. 2017),
with the 10,000 steps of experiments/fashion_mnist_dcgan.py: G with conditional BatchNorm
(per-class gains and biases) and a projection discriminator (Miyato & Koyama 2018, "cGANs
with Projection Discriminator"); the ten classes are T-shirt/top, trouser, pullover, dress,
coat, sandal, shirt, sneaker, bag, ankle boot. `--config.model.g_conditioning=concat` and
`--config.model.d_conditioning=concat|acgan` give Mirza & Osindero 2014's concatenation and
AC-GAN (Odena et al. 2017) instead. Evaluate per class with
`python scripts/eval_conditional.py --workdir runs/fashion_mnist_cdcgan`.

Offline: `export TFDS_DATA_DIR=../shared/tfds` first. Tiny variant for tests:
`--config experiments/fashion_mnist_cdcgan.py:tiny`.
"""

from gan_jax.config import apply_tiny, base_config


def get_config(variant: str = ''):
  """Returns the config; `variant='tiny'` trains a narrow model for a few steps."""
  c = base_config()
  c.model.name = 'dcgan28'              # 28x28 DCGAN (see experiments/mnist_dcgan.py).
  c.model.latent_dim = 100              # z ~ N(0, I), 100-d.
  c.model.g_width = 64                  # G: 7x7x128 -> 14x14x64 -> 28x28x1.
  c.model.d_width = 64                  # D: Conv 64 s2 -> Conv 128 s2 -> Dense 1 (+ projection).
  c.model.num_classes = 10              # The ten clothing classes (TFDS fashion_mnist labels).
  c.model.g_conditioning = 'cbn'        # Conditional BatchNorm in G (Miyato & Koyama 2018).
  c.model.d_conditioning = 'projection' # logit = psi(phi(x)) + <V[y], phi(x)> (Miyato & Koyama 2018, eq. 3).
  c.data.name = 'fashion_mnist'         # TFDS fashion_mnist 3.0.1, train split (60,000 images).
  c.data.image_size = 28                # Native size.
  c.data.channels = 1                   # Grayscale.
  c.train.steps = 10000                 # As the unconditional Fashion-MNIST DCGAN.
  c.train.batch_size = 64               # Global batch.
  c.train.loss = 'non_saturating'       # -E[log D(G(z, y), y)] for G.
  c.train.g_lr = 2e-4                   # Adam, Radford et al. 2016.
  c.train.d_lr = 2e-4
  c.train.b1 = 0.5
  c.num_samples = 100                   # Sample grids: 10 rows (classes) x 10 latents.
  if variant == 'tiny':
    apply_tiny(c)
    c.num_samples = 20                  # 10 rows x 2
  elif variant:
    raise ValueError(f'unknown variant {variant!r} of fashion_mnist_cdcgan; use "tiny" or none.')
  return c
