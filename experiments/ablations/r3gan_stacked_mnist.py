"""Issue 18 item 7: R3GAN's Stacked MNIST comparison (Huang et al. 2024, Table 1), at this CPU's budget.

    TFDS_DATA_DIR=../shared/tfds nice -n 5 gan-jax sweep experiments/ablations/r3gan_stacked_mnist.py \
        --workdir runs/r3gan_stacked_mnist

Huang et al. 2024 ("The GAN is dead; long live the GAN! A modern GAN baseline") compare, on
Stacked MNIST (1,000 modes), the objective alone: GAN + R1 + R2 covers 693 modes with
KL(modes || uniform) 0.927, RpGAN + R1 + R2 all 1,000 with KL 0.078 (R1 alone diverges). They
train their own StyleGAN2-like network for millions of images. Here the model is this
library's DCGAN-28 (`experiments/stacked_mnist_dcgan.py`) at its budget: 5,000 steps of batch
64 (320,000 images), with only the objective changed:

  dcgan        non-saturating loss, no penalty (the config as it is)
  gan_r1r2     non-saturating loss + R1 + R2, gamma 0.1 (weight gamma / 2 on each squared
               gradient norm; R1 on real images, Mescheder et al. 2018; R2 on generated ones)
  rpgan_r1r2   RpGAN (relativistic pairing, Jolicoeur-Martineau 2019) + R1 + R2, gamma 0.1

Modes and KL on 26,000 samples of the EMA generator (`eval.metrics=modes`) at steps 2,500 and
5,000.

Beyond the paper's comparison, `:main_recipe` (seeds 0-2; `:main_recipe_seedN` one seed)
runs one more cell toward issue 18's goal (all 1,000 modes, KL <= 0.05): `main_recipe`,
rpgan_r1r2 with the rest of the main job's recipe (experiments/mnist_main.py, unconditional):
learning rates 4e-4, R1 + R2 every 16th step at 16x gamma, an EMA half-life of 10,000 images
with a ramp-up of 0.05, scored with standing statistics. `:main_recipe_4x` trains that cell
(seed 0) for 4x the budget, 20,000 steps (1.28M images), scored every 5,000 steps;
`:main_recipe_4x_decay` the same with both learning rates decayed to a tenth along a half cosine over the last 5,000 steps.
`:seed0`, `:seed1`, `:seed2` run one seed each into the same folder (a finished run is
skipped), the default all three; `:tiny` is seconds long, for tests.
Results: experiments/results/r3gan_stacked_mnist{,_main_recipe,_main_recipe_4x,_main_recipe_4x_decay}.{csv,md}.
"""

CELLS = {
  'dcgan': {},
  'gan_r1r2': {'train.r1_weight': 0.1, 'train.r2_weight': 0.1},
  'rpgan_r1r2': {'train.loss': 'rpgan', 'train.r1_weight': 0.1, 'train.r2_weight': 0.1},
}
MAIN_RECIPE = {
  **CELLS['rpgan_r1r2'],
  'train.g_lr': 4e-4,
  'train.d_lr': 4e-4,
  'train.penalty_interval': 16,
  'train.ema_half_life_images': 10000.0,
  'train.ema_rampup': 0.05,
  'eval.ema_batch_stats': 'standing',
}
# Both learning rates constant for 15,000 steps, then down to a tenth along a half cosine over
# the last 5,000 (of 20,000): the 4x run's KL fell by only 0.007 in its last quarter.
LR_DECAY_LAST_QUARTER = 'g_lr,d_lr=constant:1@15000step,cosine:1->0.1@5000step'
FOUR_X_CELLS = {
  'main_recipe_4x': MAIN_RECIPE,
  'main_recipe_4x_decay': {**MAIN_RECIPE, 'train.schedules': LR_DECAY_LAST_QUARTER},
}


def get_ablation(variant: str = ''):
  """Returns the ablation: '' (seeds 0-2), 'seed0'/'seed1'/'seed2', 'main_recipe' (that cell,
  seeds 0-2), 'main_recipe_seed0'/'_seed1'/'_seed2', 'main_recipe_4x' (that cell, seed 0,
  20,000 steps), 'main_recipe_4x_decay' (the same with the learning rates decayed over the last
  5,000 steps) or 'tiny' (for tests).

  Raises:
    ValueError: for an unknown variant.
  """
  overrides = {'eval_every': 2500, 'progress_bar': False}
  if variant == 'tiny':
    return dict(
      base='experiments/stacked_mnist_dcgan.py:tiny',
      overrides={'train.steps': 2, 'eval_every': 2, 'eval.modes_num_samples': 512},
      grid={'objective': {k: CELLS[k] for k in ('dcgan', 'rpgan_r1r2')}},
      seeds=[0],
      metrics=['modes_covered', 'modes_kl'],
    )
  main_recipe_seeds = {
    'main_recipe': [0, 1, 2],
    'main_recipe_seed0': [0],
    'main_recipe_seed1': [1],
    'main_recipe_seed2': [2],
    'main_recipe_4x': [0],
    'main_recipe_4x_decay': [0],
  }
  if variant in main_recipe_seeds:
    four_x = variant in FOUR_X_CELLS
    return dict(
      base='experiments/stacked_mnist_dcgan.py',
      overrides={**overrides, 'train.steps': 20000, 'eval_every': 5000} if four_x else overrides,
      grid={'objective': {variant: FOUR_X_CELLS[variant]} if four_x else {'main_recipe': MAIN_RECIPE}},
      seeds=main_recipe_seeds[variant],
      metrics=['modes_covered', 'modes_kl'],
    )
  seeds = {'': [0, 1, 2], 'seed0': [0], 'seed1': [1], 'seed2': [2]}
  if variant not in seeds:
    raise ValueError(
      f'unknown variant {variant!r} of r3gan_stacked_mnist; use "seed0", "seed1", "seed2", '
      '"main_recipe", "main_recipe_seedN", "main_recipe_4x", "main_recipe_4x_decay", "tiny" or none.'
    )
  return dict(
    base='experiments/stacked_mnist_dcgan.py',
    overrides=overrides,
    grid={'objective': CELLS},
    seeds=seeds[variant],
    metrics=['modes_covered', 'modes_kl'],
  )
