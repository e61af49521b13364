"""gan_jax: a GAN research library for JAX and Flax NNX.

The package is layered, top to bottom; each layer imports only its own and the ones below
(tests/test_architecture.py checks it):

command line
  cli          the `gan-jax` command line (train, sample, eval, sweep, edit, export, translate)
applications
  sweep        `gan-jax sweep`: ablation grids x seeds, and their summary
  latent       latent-space tools: interpolation, inversion, attribute directions
  translation  image-to-image translation: pix2pix, CycleGAN, paired/unpaired tasks, PSNR/SSIM
  export       `gan-jax export`: a run's generator as jax.export StableHLO and a TF SavedModel
training machinery
  training     the one loop for one or K GANs, checkpoints, locks, rollback, preflight
the run config (its checks ask the registries below)
  config       the run config (`base_config`, `validate`)
  config_files  experiment config files and `--config.<field>=<value>` overrides
ingredients
  core         the GAN state, losses, penalties, augmentation, the train step, sampling
  models       generators and discriminators, a registry of builders that declare support
  data         data sources (TFDS, Stacked MNIST, image folders) and the input pipeline
  metrics      FID, KID, IS, precision/recall, ..., the pinned LeNets and the FID InceptionV3
foundations
  errors       the one-line errors a user can fix (ConfigError, NonFiniteError, ...)
  cache_dir    where cached reference statistics and decoded image folders live

The stable API, importable from the top (loaded on first use, so `import gan_jax` is light;
training and data import TensorFlow):

    gan_jax.base_config()                           a run config to edit
    gan_jax.train_and_evaluate(config, workdir)     train (and evaluate) one GAN or K replicas
    gan_jax.train_replicas(configs, workdirs)       K GANs in one compiled program
    gan_jax.load_run(workdir)                       (config, gan, state) of a run folder
    gan_jax.sample(gan, state, z, labels=None)      images [N, H, W, C] in [-1, 1] from latents z
    gan_jax.Evaluator                               FID/KID/IS/PR of a generator or of images
"""

import importlib

__version__ = '0.1.0'

_API = {
  'base_config': 'gan_jax.config',
  'train_and_evaluate': 'gan_jax.training.train',
  'train_replicas': 'gan_jax.training.train',
  'load_run': 'gan_jax.training.checkpoint',
  'sample': 'gan_jax.core.sampling',
  'Evaluator': 'gan_jax.metrics.evaluate',
}

__all__ = sorted(_API)


def __getattr__(name):
  if name in _API:
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
