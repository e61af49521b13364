"""Class-conditional SNGAN on CIFAR-10 (Miyato & Koyama 2018): conditional BN G, projection D.

    gan-jax train --config experiments/cifar10_csngan.py --workdir runs/cifar10_csngan

The CIFAR-10 setting of Miyato & Koyama 2018, "cGANs with Projection Discriminator" (ICLR
2018; code: pfnet-research/sngan_projection): the SNGAN ResNets of experiments/cifar10_sngan.py
(Miyato et al. 2018, appendix B), made class-conditional. G's up-ResBlocks use conditional
BatchNorm (a gain and a bias per class; the last BatchNorm stays unconditional, as in their
code); D adds the projection term <V[y], phi(x)> to its logit, phi(x) the sum-pooled
features and V a spectrally normalised class embedding (eq. 3). Hinge loss, n_dis = 5,
Adam lr 2e-4, beta1 0, beta2 0.9, batch 64, 50,000 generator updates, as the unconditional
config. Their CIFAR-10 result for this model: Inception score 8.62, FID 17.5
(their FID protocol; compare loosely). The differences from their code listed in
experiments/cifar10_sngan.py (constant learning rates; G's update on the batch of 64; the
EMA generator for samples and evaluation) hold here as well.

Offline, use the JPEG copy shipped beside the checkout (labels included; lossy, so FID
against it is not comparable with published figures):

    gan-jax train --config experiments/cifar10_csngan.py --workdir runs/cifar10_csngan \
        --config.data.name=cifar10_jpeg --config.data.data_dir=../shared/tfds

FID (Inception) every 5,000 steps needs the pytorch-fid InceptionV3 weights (see
experiments/cifar10_sngan.py), or add `--config.eval_every=0`. Tiny variant for tests:
`--config experiments/cifar10_csngan.py:tiny` (cifar10_jpeg, width 8, n_critic 2).
"""

from gan_jax.config import apply_tiny, base_config


def get_config(variant: str = ''):
  """Returns the config; `variant='tiny'` trains a narrow (width 8) ResNet for a few steps."""
  c = base_config()
  c.model.name = 'sngan32'              # SNGAN ResNet, 32x32 only; D always spectrally normalised.
  c.model.latent_dim = 128              # z ~ N(0, I), 128-d.
  c.model.g_width = 256                 # G: dense 4x4x256 -> 3 up-ResBlocks of 256 -> 32x32x3.
  c.model.d_width = 128                 # D: 4 ResBlocks of 128 -> sum pool -> dense 1 (+ projection).
  c.model.num_classes = 10              # CIFAR-10 classes.
  c.model.g_conditioning = 'cbn'        # Conditional BatchNorm in G's ResBlocks (Miyato & Koyama 2018).
  c.model.d_conditioning = 'projection' # logit = psi(phi(x)) + <V[y], phi(x)>, V spectrally normalised.
  c.data.name = 'cifar10'               # TFDS cifar10 (use cifar10_jpeg offline, see above).
  c.data.image_size = 32                # Native CIFAR-10 size.
  c.data.channels = 3                   # RGB.
  c.data.download = True                # Let TFDS fetch cifar10 if it is not in the data dir.
  c.train.steps = 50000                 # Generator updates (Miyato & Koyama 2018: 50K).
  c.train.batch_size = 64               # Global batch, per D update.
  c.train.n_critic = 5                  # n_dis: D updates per G update.
  c.train.loss = 'hinge'                # D: E[relu(1 - D(x, y))] + E[relu(1 + D(G(z, y), y))]; G: -E[D(G(z, y), y)].
  c.train.g_lr = 2e-4                   # Adam, as Miyato & Koyama 2018.
  c.train.d_lr = 2e-4
  c.train.b1 = 0.0
  c.train.b2 = 0.9
  c.num_samples = 100                   # Sample grids: 10 rows (classes) x 10 latents.
  c.sample_every = 1000                 # A grid every 1000 steps.
  c.checkpoint_every = 2000             # A checkpoint every 2000 steps.
  c.eval_every = 5000                   # FID (Inception), KID, IS, PR on 10,000 samples (balanced classes).
  c.eval.feature_net = 'inception_v3'
  if variant == 'tiny':
    apply_tiny(c)
    c.data.name = 'cifar10_jpeg'        # offline copy in ../shared/tfds
    c.data.download = False
    c.data.split = 'train[:512]'        # 32x32 stays: sngan32 needs it.
    c.train.n_critic = 2                # Still > 1, at less compile time (each D update is unrolled).
    c.num_samples = 20                  # 10 rows x 2
  elif variant:
    raise ValueError(f'unknown variant {variant!r} of cifar10_csngan; use "tiny" or none.')
  return c
