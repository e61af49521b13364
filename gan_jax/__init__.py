"""gan_jax: a GAN research library for JAX and Flax NNX.

Modules (import what you need; `gan_jax.data` and `gan_jax.train` import TensorFlow):
  config      the run config (`base_config`, `validate`)
  models      generators and discriminators (MLP, DCGAN-28, DCGAN)
  losses      adversarial losses on logits
  state       `GANState` pytree, `GAN` (G and D as pure functions), `create_state`
  sharding    device mesh and shardings
  train_step  the jitted, data-parallel train step
  data        TFDS input pipeline
  train       `train_and_evaluate(config, workdir)`
  checkpoint  Orbax checkpoints, `load_run`
  sampling    sampling and image grids
  export      `gan-jax export`: a run's generator as jax.export StableHLO and a TF SavedModel
  metrics     FID, KID, IS, precision/recall, density/coverage, Stacked-MNIST modes, the pinned
              LeNet classifiers and the FID InceptionV3 (`gan_jax.metrics.evaluate.Evaluator`)
  stacked_mnist  Stacked MNIST (1,000 modes) built deterministically from TFDS mnist
  main        the `gan-jax` command line (train, sample, eval)
"""

__version__ = '0.1.0'
