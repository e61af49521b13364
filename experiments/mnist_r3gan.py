"""R3GAN on MNIST: the modern ResNet of Huang et al. 2024 with RpGAN + R1 + R2, CPU-sized.

Run it (from the repository root):

    gan-jax train --config experiments/mnist_r3gan.py --workdir runs/mnist_r3gan

The architecture of "The GAN is dead; long live the GAN! A modern GAN baseline" (Huang et al.
2024, section 4; gan_jax/models/r3gan.py): residual blocks of 1x1 -> grouped 3x3 -> 1x1
(inverted bottleneck, expansion 2, groups of 16 channels), no normalisation, leaky ReLU,
zero-initialised last layer of every branch, bilinear resampling. For 28 px, G starts from a
learned 7x7 basis and upsamples twice (7 -> 14 -> 28); D mirrors it and ends with a 7x7
depthwise basis convolution and a linear logit. Their objective: the relativistic pairing
loss (`train.loss='rpgan'`) with R1 and R2 on real and generated images, Adam betas (0,
0.99). This small preset (one block per stage, widths 32/16/8 instead of the paper's 768 and
2 blocks) is sized for the 2-core CPU: its cost beside DCGAN-28 is in docs/performance.md
(`benchmarks/r3gan_cost.py`). The paper's schedules (learning rate, gamma, beta2, EMA) are not
used here: constants.

Class-conditional: `--config.model.num_classes=10 --config.model.g_conditioning=concat`
(the label's embedding joins z; D adds the projection <V[y], phi(x)>).

Offline, point TFDS at a local data dir first: `export TFDS_DATA_DIR=../shared/tfds`. The
`:tiny` variant (`--config experiments/mnist_r3gan.py:tiny`) trains a width-8 model for a few
steps, for tests.
"""

from gan_jax.config import apply_tiny, base_config


def get_config(variant: str = ''):
  """Returns the config; `variant='tiny'` shrinks it to seconds of CPU time."""
  c = base_config()
  c.model.name = 'r3gan'             # gan_jax/models/r3gan.py (Huang et al. 2024, section 4).
  c.model.latent_dim = 64            # z ~ N(0, I), 64-d (the paper's NoiseDimension).
  c.model.stage_widths = (32, 16, 8)  # G at 7x7, 14x14, 28x28; D the reverse (28 -> 7).
  c.model.stage_blocks = (1,)        # One residual block per stage (the paper: 2).
  c.model.expansion = 2              # Inverted bottleneck 1x1 -> 2C, as the paper.
  c.model.group_size = 16            # Grouped 3x3 on 16 channels per group, as the paper.
  c.model.g_conditioning = 'concat'  # Only used with model.num_classes > 0 (r3gan has no BatchNorm).
  c.data.name = 'mnist'              # TFDS mnist 3.0.1, train split (60,000 images).
  c.data.image_size = 28             # Native MNIST size.
  c.data.channels = 1                # Grayscale.
  c.train.steps = 5000               # As the DCGAN main job (experiments/mnist_dcgan.py).
  c.train.batch_size = 64            # Global batch, as the DCGAN main job.
  c.train.loss = 'rpgan'             # Relativistic pairing (RpGAN), Huang et al. 2024, section 2.
  c.train.r1_weight = 0.1            # R1 gamma on real images (gamma/2 E||grad D||^2).
  c.train.r2_weight = 0.1            # R2 gamma on generated images, the same gamma (the paper).
  c.train.g_lr = 2e-4                # Adam 2e-4 (the paper's base learning rate).
  c.train.d_lr = 2e-4
  c.train.b1 = 0.0                   # Adam betas (0, 0.99) (the paper's final beta2).
  c.train.b2 = 0.99
  c.sample_every = 500               # A grid every 500 steps.
  c.checkpoint_every = 1000          # A checkpoint every 1000 steps.
  if variant == 'tiny':
    apply_tiny(c)                    # g_width = d_width = 8, batch 16.
    c.model.stage_widths = ()        # () = model.g_width / d_width (8) at every stage.
    c.model.latent_dim = 16
    c.train.steps = 6                # checkpoints at 3 and 6: enough to test resume
    c.sample_every = 3
    c.checkpoint_every = 3
  elif variant:
    raise ValueError(f'unknown variant {variant!r} of mnist_r3gan; use "tiny" or none.')
  return c
