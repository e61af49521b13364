"""Issue 18's Fashion-MNIST goal (FID (LeNet) <= 20 at the main job's budget): which change
to the main job's recipe gets there by step 5,000?

    TFDS_DATA_DIR=../shared/tfds nice -n 5 gan-jax sweep experiments/ablations/fashion_main_screen.py \
        --workdir runs/fashion_main_screen

`experiments/fashion_mnist_main.py` as it was before this screen (the main job's recipe on
Fashion-MNIST: class-conditional DCGAN-28, RpGAN + R1 + R2 with gamma 0.1, Adam 2e-4 / (0.5,
0.999), EMA half-life 10,000 images) reached 30.5 at step 5,000 and 19.1 at 7,000, still
falling by ~25% per 1,000 steps: it is slow, not stuck. So the recipes here speed up learning:

  main          that recipe (learning rates 2e-4)
  lr4e4         G's and D's learning rates 4e-4
  b1_0          Adam betas (0, 0.99), R3GAN's (Huang et al. 2024) and StyleGAN2's choice
  lr4e4_b1_0    both
  lazy16        lr4e4 with R1 and R2 every 16th step at 16x gamma (`train.penalty_interval=16`),
                i.e. experiments/mnist_main.py as it is since December 5 with Fashion-MNIST data

Evaluation as in the main job's study (main_job_mnist.py): the EMA generator with standing
statistics and the raw generator, every 1,000 steps on 10,000 samples. Results:
experiments/results/fashion_main_screen.{csv,md}. The default variant is the three changes at
seed 0 (a screen): `main` at seed 0 is the first run of
experiments/results/fashion_mnist_main.json (the same recipe and seed, so the same training
bit for bit), and `:all` adds it. `:tiny` is
seconds long, for tests. `:lr4e4` is that recipe at seeds 0-2 (into the same folder: seed 0
is skipped when done). `:lazy16` is the lazy recipe at seeds 0-2, to learn whether
fashion_mnist_main.py can compute its penalties lazily as mnist_main.py does (results:
experiments/results/fashion_main_lazy16.{csv,md}; it can, and does since December 6).
`:4x` is the config's recipe (`lazy16`) for 4x the main job's budget, 20,000 steps at seeds
0-2, evaluated every 2,500 steps, the Fashion-MNIST counterpart of
main_job_speed.py:4x_seeds (results: experiments/results/fashion_main_4x.{csv,md}).
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
  '_main_job_mnist', os.path.join(os.path.dirname(os.path.abspath(__file__)), 'main_job_mnist.py')
)
_study = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_study)

# The base config's learning rates became 4e-4 after this screen, and its penalties lazy after
# `:lazy16`; every recipe names its own, so the cells keep what they were run with.
_LR2 = {'train.g_lr': 2e-4, 'train.d_lr': 2e-4, 'train.penalty_interval': 1}
_LR4 = {'train.g_lr': 4e-4, 'train.d_lr': 4e-4, 'train.penalty_interval': 1}
_B1_0 = {'train.b1': 0.0, 'train.b2': 0.99}
RECIPES = {
  'main': _LR2,
  'lr4e4': _LR4,
  'b1_0': {**_LR2, **_B1_0},
  'lr4e4_b1_0': {**_LR4, **_B1_0},
}
# Not in `:all`: the lazy penalties came after the screen (mnist_main.py, December 5).
LAZY16 = {**_LR4, 'train.penalty_interval': 16}
# 4x the main job's budget: 20,000 steps, an evaluation (EMA and raw generator) every 2,500.
FOUR_X = {'train.steps': 20000, 'eval_every': 2500}
METRICS = [
  'fid_lenet', 'raw_fid_lenet', 'kid_lenet', 'precision_lenet', 'recall_lenet',
  'classes_lenet_min', 'classes_lenet_max',
]


def get_ablation(variant: str = ''):
  """Returns the ablation: '' (the three changes, seed 0), 'all' (with `main`), 'lr4e4'
  or 'lazy16' (that recipe, seeds 0-2), '4x' (lazy16 for 20,000 steps, seeds 0-2) or 'tiny'
  (seconds, for tests).

  Raises:
    ValueError: for an unknown variant.
  """
  if variant == 'tiny':
    return _study.tiny_ablation(
      'experiments/fashion_mnist_main.py:tiny', {k: RECIPES[k] for k in ('main', 'lr4e4_b1_0')}
    )
  if variant == '4x':
    return dict(
      base='experiments/fashion_mnist_main.py',
      overrides={**_study.EVAL_OVERRIDES, **FOUR_X},
      grid={'recipe': {'lazy16_4x': LAZY16}},
      seeds=[0, 1, 2],
      metrics=METRICS,
    )
  if variant not in ('', 'all', 'lr4e4', 'lazy16'):
    raise ValueError(
      f'unknown variant {variant!r} of fashion_main_screen; use "all", "lr4e4", "lazy16", '
      '"4x", "tiny" or none.'
    )
  if variant == 'lr4e4':
    recipes = {'lr4e4': RECIPES['lr4e4']}
  elif variant == 'lazy16':
    recipes = {'lazy16': LAZY16}
  else:
    recipes = RECIPES if variant == 'all' else {k: v for k, v in RECIPES.items() if k != 'main'}
  return dict(
    base='experiments/fashion_mnist_main.py',
    overrides=_study.EVAL_OVERRIDES,
    grid={'recipe': recipes},
    seeds=[0, 1, 2] if variant in ('lr4e4', 'lazy16') else [0],
    metrics=METRICS,
  )
