"""The GAN itself, in pure JAX: the state pytree, the ingredients and the train step.

  state        `GANState` pytree, `GAN` (G and D as pure functions), `create_state`
  losses       adversarial losses on logits (the `LOSSES` registry of `GANLoss` entries)
  penalties    the registry of D penalties (GP, R1, R2, LeCam): fields, constraints, state
  regularizers the penalties' functions, and WGAN weight clipping
  augment      DiffAugment
  ada          ADA: adaptive discriminator augmentation (its pipeline and the p update)
  sharding     device mesh and shardings
  objectives   what D and G minimise: D input, adversarial loss + penalties + class loss
  schedules    hyperparameter schedules of the step (optax) and the EMA half-life in images
  train_step   the jitted, data-parallel train step (D updates, then G, then EMA)
  sampling     sampling and image grids

Depends on `gan_jax.models` and `gan_jax.errors` only.
"""
