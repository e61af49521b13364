"""PacDCGAN2 on Stacked MNIST: DCGAN-28 with a packing discriminator (Lin et al. 2018, PacGAN).

The PacGAN counterpart of `experiments/stacked_mnist_dcgan.py`: the same data, generator,
discriminator widths, loss, optimizer and schedule, except that the discriminator judges
packs of two samples (`model.pack = 2`, PacGAN section 3). Each two consecutive images of a
batch, both real or both generated, are concatenated along channels into one 28x28x6 input,
D's first convolution takes 6 channels instead of 3, and D returns one logit per pack
(32 logits for a batch of 64). The generator and everything it is evaluated on are
unchanged. Packing gives one logit per pack, so it cannot be combined with the per-image
gradient penalties (train.gp_weight, r1_weight, r2_weight); `validate` refuses that.

Run it (from the repository root):

    gan-jax train --config experiments/stacked_mnist_pacgan.py --workdir runs/stacked_mnist_pacgan \
        --config.data.data_dir=../shared/tfds

and the unpacked baseline with `experiments/stacked_mnist_dcgan.py`. Mode coverage (modes
covered of 1,000 and KL(p || uniform) of the mode histogram, on 26,000 samples classified
per channel by the pinned MNIST LeNet) is measured every `eval_every` (1,000) steps, and
afterwards with `gan-jax eval --workdir runs/stacked_mnist_pacgan --metrics modes`.

Anchors, PacGAN (Lin et al. 2018) Table 2, Stacked MNIST:

    DCGAN        99 modes      KL 3.40
    PacDCGAN2    1,000 modes   KL 0.06

Those numbers come from the paper's own architecture and training setup (see
`experiments/stacked_mnist_dcgan.py`); this config keeps the standard DCGAN-28, so compare
the two configs here with each other rather than with the table.

The `:tiny` variant (`--config experiments/stacked_mnist_pacgan.py:tiny`) trains a narrow
model for a few steps on the first 1,024 Stacked-MNIST images, for tests.
"""

from gan_jax.config import apply_tiny, base_config


def get_config(variant: str = ''):
  """Returns the config; `variant='tiny'` shrinks it to seconds of CPU time."""
  c = base_config()
  c.model.name = 'dcgan28'        # G: Dense->7x7x128, BN, ReLU, ConvT->14x14x64, BN, ReLU, ConvT->28x28x3, tanh.
  c.model.latent_dim = 100        # z ~ N(0, I), 100-d.
  c.model.g_width = 64            # 14x14 feature map has 64 channels, 7x7 has 128.
  c.model.d_width = 64            # D: Conv 64 s2 -> Conv 128 s2 -> Dense 1, on 28x28x(2*3) packs.
  c.model.pack = 2                # PacDCGAN2: D judges 2 images at once (Lin et al. 2018, section 3).
  c.data.name = 'stacked_mnist'   # gan_jax.data.stacked_mnist, built from TFDS mnist 3.0.1 (seed 0).
  c.data.split = 'train'          # 60,000 stacked images; every 1,000 hold each mode once.
  c.data.image_size = 28          # Native MNIST size.
  c.data.channels = 3             # One digit per channel.
  c.train.steps = 5000            # ~5.3 epochs at batch 64.
  c.train.batch_size = 64         # Global batch: 64 real and 64 generated images, 32 packs each.
  c.train.loss = 'non_saturating' # -E[log D(G(z))] for G (Goodfellow et al. 2014).
  c.train.g_lr = 2e-4             # Adam, Radford et al. 2016.
  c.train.d_lr = 2e-4
  c.train.b1 = 0.5
  c.sample_every = 500            # A grid every 500 steps.
  c.checkpoint_every = 1000       # A checkpoint every 1000 steps.
  c.eval_every = 1000             # Mode coverage every 1000 steps (and at the end).
  c.eval.metrics = 'modes'        # Modes covered of 1,000 and KL to uniform, on 26,000 samples.
  if variant == 'tiny':
    apply_tiny(c)                 # 'train[:1024]': the first 1,024 stacked images; batch 16 = 8 packs.
  elif variant:
    raise ValueError(f'unknown variant {variant!r} of stacked_mnist_pacgan; use "tiny" or none.')
  return c
