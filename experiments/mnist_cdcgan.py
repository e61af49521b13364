"""Class-conditional DCGAN-28 on MNIST: conditional BatchNorm in G, projection D.

Run it (from the repository root):

    gan-jax train --config experiments/mnist_cdcgan.py --workdir runs/mnist_cdcgan

The DCGAN-28 of experiments/mnist_dcgan.py (same widths, loss and Adam settings), made
class-conditional as in Miyato & Koyama 2018, "cGANs with Projection Discriminator": every
BatchNorm of G has a per-class gain and bias (conditional BatchNorm), and D's logit gets the
projection term <V[y], phi(x)>, V a learned class embedding of D's last features (eq. 3).
G's classes are drawn uniformly from 0..9, D sees real digits with their TFDS labels. The
sample grids have one row per digit, the same latent in each column.

Other conditionings are one override away (gan_jax/models/conditional.py):
`--config.model.g_conditioning=concat` (one-hot labels concatenated to z, Mirza & Osindero
2014, "Conditional Generative Adversarial Nets"), `--config.model.d_conditioning=concat`
(label maps concatenated to the image) or `=acgan` (AC-GAN's auxiliary classifier, Odena et
al. 2017, weighted by train.aux_weight).

Per-class accuracy of the LeNet classifier and per-class FID (LeNet) of the trained run:

    python scripts/eval_conditional.py --workdir runs/mnist_cdcgan

Offline: `export TFDS_DATA_DIR=../shared/tfds` first. Tiny variant for tests:
`--config experiments/mnist_cdcgan.py:tiny`.
"""

from gan_jax.config import apply_tiny, base_config


def get_config(variant: str = ''):
  """Returns the config; `variant='tiny'` trains a narrow model for a few steps."""
  c = base_config()
  c.model.name = 'dcgan28'              # 28x28 DCGAN (see experiments/mnist_dcgan.py).
  c.model.latent_dim = 100              # z ~ N(0, I), 100-d.
  c.model.g_width = 64                  # G: 7x7x128 -> 14x14x64 -> 28x28x1.
  c.model.d_width = 64                  # D: Conv 64 s2 -> Conv 128 s2 -> Dense 1 (+ projection).
  c.model.num_classes = 10              # Digits 0..9 (TFDS mnist labels).
  c.model.g_conditioning = 'cbn'        # Conditional BatchNorm in G (Miyato & Koyama 2018).
  c.model.d_conditioning = 'projection' # logit = psi(phi(x)) + <V[y], phi(x)> (Miyato & Koyama 2018, eq. 3).
  c.data.name = 'mnist'                 # TFDS mnist 3.0.1, train split (60,000 images).
  c.data.image_size = 28                # Native MNIST size.
  c.data.channels = 1                   # Grayscale.
  c.train.steps = 5000                  # ~5.3 epochs at batch 64, as the unconditional DCGAN.
  c.train.batch_size = 64               # Global batch.
  c.train.loss = 'non_saturating'       # -E[log D(G(z, y), y)] for G (Goodfellow et al. 2014).
  c.train.g_lr = 2e-4                   # Adam, Radford et al. 2016.
  c.train.d_lr = 2e-4
  c.train.b1 = 0.5
  c.num_samples = 100                   # Sample grids: 10 rows (digits) x 10 latents.
  c.sample_every = 500                  # A grid every 500 steps.
  c.checkpoint_every = 1000             # A checkpoint every 1000 steps.
  if variant == 'tiny':
    apply_tiny(c)
    c.num_samples = 20                  # 10 rows x 2
  elif variant:
    raise ValueError(f'unknown variant {variant!r} of mnist_cdcgan; use "tiny" or none.')
  return c
