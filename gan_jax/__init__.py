"""gan_jax: a GAN research library for JAX and Flax NNX.

Modules (import what you need; `gan_jax.data` and `gan_jax.train` import TensorFlow):
  errors      the one-line errors a user can fix (ConfigError, NonFiniteError, ...)
  config      the run config (`base_config`, `validate`)
  config_files  experiment config files and `--config.<field>=<value>` overrides
  models      generators and discriminators (MLP, DCGAN-28, DCGAN, SNGAN-32; conditional), each
              one entry of the model registry (`gan_jax.models.registry`)
  losses      adversarial losses on logits (the `LOSSES` registry)
  penalties   the registry of D penalties (GP, R1, R2, LeCam): fields, constraints, state
  regularizers  the penalties' functions, and WGAN weight clipping
  augment     DiffAugment
  state       `GANState` pytree, `GAN` (G and D as pure functions), `create_state`
  sharding    device mesh and shardings
  distributed  several processes: `jax.distributed`, stop votes, barriers
  signals     stopping a run cleanly on SIGTERM / SIGINT
  objectives  what D and G minimise in a train step (loss + penalties + class loss), `Stabilizers`
  train_step  the jitted, data-parallel train step, composed of pure functions
  tfds_images  reading a prepared TFDS build (data dir, checked builder, decode and resize)
  stacked_mnist  Stacked MNIST (1,000 modes) built deterministically from TFDS mnist
  cache_dir   where cached reference statistics and decoded image folders live
  image_folder  a folder or .zip of your own images as a dataset (`data.name='folder:/path'`)
  data_sources  the registry of data sources (TFDS, Stacked MNIST, image folders): which
              `data.name` each serves, how it is read, counted and checked
  data        the input pipeline: batches, sharding, prefetch
  checkpoint  Orbax checkpoints, `load_run`
  sampling    sampling and image grids
  run_setup   before a run: `preflight` (every check), `host_batches`, clearing a run folder
  run_actions  a run's periodic outputs: scalar log, sample grids, evaluation, best checkpoint
  run_lock    one writer per run folder (a second trainer refuses at once)
  rollback_state  the rollbacks of the run a checkpoint belongs to (rollbacks.json)
  train       `train_and_evaluate(config, workdir)`
  replicas    K GANs in one compiled step (`num_replicas = K`)
  export      `gan-jax export`: a run's generator as jax.export StableHLO and a TF SavedModel
  metrics     FID, KID, IS, precision/recall, density/coverage, Stacked-MNIST modes, the pinned
              LeNet classifiers and the FID InceptionV3 (`gan_jax.metrics.evaluate.Evaluator`)
  latent      latent-space tools: interpolation, inversion, attribute directions, CelebA
  translation  image-to-image translation: pix2pix (U-Net G, PatchGAN D) on paired tasks, PSNR/SSIM;
              CycleGAN (ResNet G, image histories) on unpaired ones, accuracy/cycle/FID
  sweep       `gan-jax sweep`: ablation grids x seeds, and their summary
  lifeline    child processes that stop when their parent dies (sweep --jobs)
  edit_cli    `gan-jax edit`
  main        the `gan-jax` command line (train, sample, eval, sweep, edit, export)
"""

__version__ = '0.1.0'
