"""DCGAN on CIFAR-10 at 32x32 (Radford et al. 2016): G 4x4x512 -> 8x8x256 -> 16x16x128 -> 32x32x3.

    gan-jax train --config experiments/cifar10_dcgan.py --workdir runs/cifar10_dcgan

This names TFDS `cifar10`, which TFDS downloads when `data.download` is true (and internet is
there). Offline, use the JPEG copy shipped beside the checkout:

    gan-jax train --config experiments/cifar10_dcgan.py --workdir runs/cifar10_dcgan \
        --config.data.name=cifar10_jpeg --config.data.data_dir=../shared/tfds

(`cifar10_jpeg` is lossy: FID against it is not comparable with published CIFAR-10 figures.)

FID (Inception) every 5,000 steps needs the pytorch-fid InceptionV3 weights (92 MB): put
`pt_inception-2015-12-05-6726825d.pth` in ~/.cache/gan_jax/ or name it with
`GAN_JAX_INCEPTION_WEIGHTS`, or add `--config.eval.download_inception=true` (needs internet).
Without them, add `--config.eval_every=0` to train without evaluation.
Tiny variant for tests: `--config experiments/cifar10_dcgan.py:tiny` (uses cifar10_jpeg).
"""

from gan_jax.config import apply_tiny, base_config


def get_config(variant: str = ''):
  """Returns the config; `variant='tiny'` trains a narrow 8x8 model for a few steps."""
  c = base_config()
  c.model.name = 'dcgan'          # Radford et al. 2016 DCGAN for power-of-two sizes.
  c.model.latent_dim = 100        # z ~ N(0, I), 100-d.
  c.model.g_width = 128           # Channels before G's output layer; 4x4 map has 512.
  c.model.d_width = 128           # D: 128 -> 256 -> 512 channels, BN after the first layer.
  c.data.name = 'cifar10'         # TFDS cifar10 (use cifar10_jpeg offline, see above).
  c.data.image_size = 32          # Native CIFAR-10 size.
  c.data.channels = 3             # RGB.
  c.data.download = True          # Let TFDS fetch cifar10 if it is not in the data dir.
  c.train.steps = 50000           # ~64 epochs at batch 64.
  c.train.batch_size = 64         # Global batch.
  c.train.loss = 'non_saturating' # -E[log D(G(z))] for G.
  c.train.g_lr = 2e-4             # Adam, Radford et al. 2016.
  c.train.d_lr = 2e-4
  c.train.b1 = 0.5
  c.sample_every = 1000           # A grid every 1000 steps.
  c.checkpoint_every = 2000       # A checkpoint every 2000 steps.
  c.eval_every = 5000             # FID (Inception), KID, IS, PR on 10,000 samples (see above).
  c.eval.feature_net = 'inception_v3'
  if variant == 'tiny':
    apply_tiny(c)
    c.data.name = 'cifar10_jpeg'  # offline copy in ../shared/tfds
    c.data.download = False
    c.data.split = 'train[:512]'
    c.data.image_size = 8         # the smallest DCGAN
  elif variant:
    raise ValueError(f'unknown variant {variant!r} of cifar10_dcgan; use "tiny" or none.')
  return c
