"""gan_jax: a GAN research library for JAX and Flax NNX.

Modules (import what you need; `gan_jax.data` and `gan_jax.train` import TensorFlow):
  config      the run config (`base_config`, `validate`)
  models      generators and discriminators (MLP, DCGAN-28, DCGAN)
  losses      adversarial losses on logits
  state       `GANState` pytree, `GAN` (G and D as pure functions), `create_state`
  sharding    device mesh and shardings
  train_step  the jitted, data-parallel train step
  tfds_images  reading a prepared TFDS build (data dir, checked builder, decode and resize)
  data        the input pipeline: batches, sharding, prefetch
  run_setup   before a run: `preflight` (every check), `host_batches`, clearing a run folder
  run_actions  a run's periodic outputs: scalar log, sample grids, evaluation, best checkpoint
  train       `train_and_evaluate(config, workdir)`
  replicas    K GANs in one compiled step (`num_replicas = K`)
  checkpoint  Orbax checkpoints, `load_run`
  sampling    sampling and image grids
  metrics     FID, KID, IS, precision/recall, density/coverage, Stacked-MNIST modes, the pinned
              LeNet classifiers and the FID InceptionV3 (`gan_jax.metrics.evaluate.Evaluator`)
  stacked_mnist  Stacked MNIST (1,000 modes) built deterministically from TFDS mnist
  config_files  experiment config files and `--config.<field>=<value>` overrides
  main        the `gan-jax` command line (train, sample, eval, sweep, edit)
"""

__version__ = '0.1.0'
