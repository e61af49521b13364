"""Issue 18's time-to-quality goal: can the main job reach the PyTorch DCGAN's FID sooner?

    TFDS_DATA_DIR=../shared/tfds nice -n 5 gan-jax sweep experiments/ablations/main_job_speed.py \
        --workdir runs/main_job_speed

The goal is the PyTorch DCGAN-28's FID (LeNet) after 5,000 steps (104.3) in at most 1/3 of
PyTorch's wall time. The main job (`experiments/mnist_main.py`) took 0.76x of it on a quiet
machine (benchmarks/results/time_to_quality_cpu_main_job_quiet.json): it crosses 104.3
between steps 1,000 (121.1) and 1,500 (63.7), at 486 images/s against PyTorch's 1,259. Two
changes attack the two factors:

  main            the main job (learning rates 2e-4, R1 + R2 every step)
  lazy16          R1 and R2 every 16th step at 16x gamma (`train.penalty_interval=16`, lazy
                  regularization, Karras et al. 2020, StyleGAN2 section 4): a cheaper step
  lr4e4           learning rates 4e-4 (G and D), which took Fashion-MNIST from 30.5 to 12.6
                  at step 5,000 (experiments/results/fashion_main_screen.md): fewer steps
  lr4e4_lazy16    both

Every recipe names its own learning rates and interval. Evaluation every 250 steps (the
crossing's step), EMA generator with standing statistics only (no raw generator: 20
evaluations per run), FID (LeNet), KID, precision/recall and the class balance on 10,000
samples. Seed 0 by default (a screen); `:all` adds `main`; `:<recipe>` is that recipe at
seeds 0-2; `:seeds` is the screen's three recipes at seeds 0-2 (the runs of `:<recipe>`, in
the same folders: the table that `scripts/merge_sweep_results.py` merges them into);
`:tiny` is seconds long, for tests. Results: experiments/results/main_job_speed.{csv,md} and the FID by step in
experiments/results/main_job_speed_by_step.json (`scripts/run_evals.py`).

`:4x` is issue 18's study at 4x the main job's budget: `lr4e4_lazy16` (the main job) for
20,000 steps, seed 0, evaluated every 2,500 steps with the raw generator too
(experiments/results/main_job_4x.{csv,md}; its 2016 counterpart is main_job_cmnist.py:4x);
`:4x_seeds` is the same cell at seeds 0-2 in the same folder (the finished seed 0 is skipped).
No schedule in the recipe depends on the run's length, so its first 5,000 steps are the main
job's.
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
  '_main_job_mnist', os.path.join(os.path.dirname(os.path.abspath(__file__)), 'main_job_mnist.py')
)
_study = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_study)

_LR2 = {'train.g_lr': 2e-4, 'train.d_lr': 2e-4, 'train.penalty_interval': 1}
RECIPES = {
  'main': _LR2,
  'lazy16': {**_LR2, 'train.penalty_interval': 16},
  'lr4e4': {**_LR2, 'train.g_lr': 4e-4, 'train.d_lr': 4e-4},
  'lr4e4_lazy16': {'train.g_lr': 4e-4, 'train.d_lr': 4e-4, 'train.penalty_interval': 16},
}
OVERRIDES = {
  **_study.EVAL_OVERRIDES,
  'eval.raw_generator': False,
  'eval.metrics': 'fid,kid,pr,classes',
  'eval_every': 250,
}
# 4x the main job's budget: 20,000 steps, an evaluation (EMA and raw generator) every 2,500.
FOUR_X = {'train.steps': 20000, 'eval_every': 2500, 'eval.raw_generator': True}
METRICS = [
  'fid_lenet', 'kid_lenet', 'precision_lenet', 'recall_lenet', 'classes_lenet_min',
  'classes_lenet_max',
]


def get_ablation(variant: str = ''):
  """Returns the ablation: '' (the three changes, seed 0), 'all' (with `main`), a recipe's
  name (it alone at seeds 0-2, into the same folder: a finished seed 0 is skipped), 'seeds'
  (the three changes at seeds 0-2), '4x'
  (the main job for 20,000 steps, seed 0), '4x_seeds' (the same at seeds 0-2) or 'tiny'
  (seconds, for tests).

  Raises:
    ValueError: for an unknown variant.
  """
  if variant == 'tiny':
    return _study.tiny_ablation(
      'experiments/mnist_main.py:tiny', {k: RECIPES[k] for k in ('main', 'lr4e4_lazy16')}
    )
  if variant in ('4x', '4x_seeds'):
    return dict(
      base='experiments/mnist_main.py',
      overrides={**OVERRIDES, **FOUR_X},
      grid={'recipe': {'lr4e4_lazy16_4x': RECIPES['lr4e4_lazy16']}},
      seeds=[0] if variant == '4x' else [0, 1, 2],
      metrics=METRICS + ['raw_fid_lenet', 'raw_kid_lenet'],
    )
  if variant not in ('', 'all', 'seeds', *RECIPES):
    raise ValueError(
      f'unknown variant {variant!r} of main_job_speed; use "all", a recipe '
      f'({", ".join(RECIPES)}), "seeds", "4x", "4x_seeds", "tiny" or none.'
    )
  if variant in RECIPES:
    recipes = {variant: RECIPES[variant]}
  else:
    recipes = RECIPES if variant == 'all' else {k: v for k, v in RECIPES.items() if k != 'main'}
  return dict(
    base='experiments/mnist_main.py',
    overrides=OVERRIDES,
    grid={'recipe': recipes},
    seeds=[0, 1, 2] if variant in (*RECIPES, 'seeds') else [0],
    metrics=METRICS,
  )
