"""SNGAN on CIFAR-10 at 32x32 (Miyato et al. 2018): ResNet G and spectrally normalised ResNet D.

    gan-jax train --config experiments/cifar10_sngan.py --workdir runs/cifar10_sngan

The unconditional CIFAR-10 ResNet setting of Miyato et al. 2018 (networks: appendix B,
Table 4): hinge loss (eqs. 16-17), n_dis = 5 discriminator updates per generator update,
Adam lr 2e-4, beta1 0, beta2 0.9 (the hyper-parameters of Gulrajani et al. 2017's ResNet),
batch 64, 50,000 generator updates. The same values are in the authors' code,
pfnet-research/sngan_projection, configs/sn_cifar10_unconditional.yml. Spectral norm needs no
flag: `model.name = 'sngan32'` normalises every layer of D and has no BatchNorm in D
(gan_jax/models/sngan.py). One step here is one generator update after 5 D updates, so
`train.steps` counts generator updates as the paper does and a run reads 5 x 64 real images
per step (~320 epochs of the 50,000 training images).

Differences from the authors' code, kept because gan_jax has no switch for them: their
learning rates decay linearly to 0 over the 50,000 updates (`LinearShift`, from iteration 0)
and their generator update uses 128 samples; here the rates are constant and G's update uses
the batch of 64. The generator EMA (decay 0.999, our default; the paper has none) is what
samples and evaluations use. Anchor, Miyato et al. 2018 (ResNet, hinge loss): Inception score
8.22, FID 21.7, with their own FID protocol (TF Inception, their sample counts), so compare
loosely.

This names TFDS `cifar10`, which TFDS downloads when `data.download` is true (and internet is
there). Offline, use the JPEG copy shipped beside the checkout:

    gan-jax train --config experiments/cifar10_sngan.py --workdir runs/cifar10_sngan \
        --config.data.name=cifar10_jpeg --config.data.data_dir=../shared/tfds

(`cifar10_jpeg` is lossy: FID against it is not comparable with published CIFAR-10 figures.)

FID (Inception) every 5,000 steps needs the pytorch-fid InceptionV3 weights (92 MB): put
`pt_inception-2015-12-05-6726825d.pth` in ~/.cache/gan_jax/ or name it with
`GAN_JAX_INCEPTION_WEIGHTS`, or add `--config.eval.download_inception=true` (needs internet).
Without them, add `--config.eval_every=0` to train without evaluation.
Tiny variant for tests: `--config experiments/cifar10_sngan.py:tiny` (uses cifar10_jpeg, width
8, n_critic 2).
"""

from gan_jax.config import apply_tiny, base_config


def get_config(variant: str = ''):
  """Returns the config; `variant='tiny'` trains a narrow (width 8) ResNet for a few steps."""
  c = base_config()
  c.model.name = 'sngan32'        # SNGAN ResNet, 32x32 only; D always spectrally normalised.
  c.model.latent_dim = 128        # z ~ N(0, I), 128-d.
  c.model.g_width = 256           # G: dense 4x4x256 -> 3 up-ResBlocks of 256 -> 32x32x3.
  c.model.d_width = 128           # D: 4 ResBlocks of 128 (2 downsampling) -> sum pool -> dense 1.
  c.data.name = 'cifar10'         # TFDS cifar10 (use cifar10_jpeg offline, see above).
  c.data.image_size = 32          # Native CIFAR-10 size.
  c.data.channels = 3             # RGB.
  c.data.download = True          # Let TFDS fetch cifar10 if it is not in the data dir.
  c.train.steps = 50000           # Generator updates (Miyato et al. 2018: 50K).
  c.train.batch_size = 64         # Global batch, per D update.
  c.train.n_critic = 5            # n_dis: D updates per G update.
  c.train.loss = 'hinge'          # D: E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]; G: -E[D(G(z))].
  c.train.g_lr = 2e-4             # Adam, Miyato et al. 2018 (after Gulrajani et al. 2017).
  c.train.d_lr = 2e-4
  c.train.b1 = 0.0
  c.train.b2 = 0.9
  c.sample_every = 1000           # A grid every 1000 steps.
  c.checkpoint_every = 2000       # A checkpoint every 2000 steps.
  c.eval_every = 5000             # FID (Inception), KID, IS, PR on 10,000 samples (see above).
  c.eval.feature_net = 'inception_v3'
  if variant == 'tiny':
    apply_tiny(c)
    c.data.name = 'cifar10_jpeg'  # offline copy in ../shared/tfds
    c.data.download = False
    c.data.split = 'train[:512]'  # 32x32 stays: sngan32 needs it.
    c.train.n_critic = 2          # Still > 1, at less compile time (each D update is unrolled).
  elif variant:
    raise ValueError(f'unknown variant {variant!r} of cifar10_sngan; use "tiny" or none.')
  return c
