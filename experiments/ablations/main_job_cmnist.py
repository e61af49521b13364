"""Issue 18's study, class-conditional arm: can the main job reach FID (LeNet) <= 10?

    TFDS_DATA_DIR=../shared/tfds nice -n 5 gan-jax sweep experiments/ablations/main_job_cmnist.py:screen \
        --workdir runs/main_job_cmnist

The unconditional screening (experiments/ablations/main_job_mnist.py) left every recipe at FID
(LeNet) 93-140 after 5,000 steps, with one digit holding 17-20% of the samples. The
class-conditional DCGAN-28 (`experiments/mnist_cdcgan.py`: conditional BatchNorm in G,
projection D, Miyato & Koyama 2018) reached 11.7 at the same budget, scored then with the raw
generator's BatchNorm statistics. Its classes are balanced by construction: G's labels are
drawn uniformly. This file asks which recipe takes it under 10:

  cdcgan2016       experiments/mnist_cdcgan.py unchanged (non-saturating loss, Adam 2e-4 / 0.5,
                   EMA decay 0.999)
  ema_hl           EMA half-life of 10,000 images, ramp-up 0.05 (Karras et al. 2020)
  rpgan_r1r2       RpGAN + R1 + R2, gamma 0.1 (Huang et al. 2024)
  rpgan_r1r2_ema   both

Every evaluation scores the EMA generator with its own standing BatchNorm statistics
(`fid_lenet`, ...) and the raw generator (`raw_fid_lenet`, ...), as main_job_mnist.py does.
Results: experiments/results/main_job_cmnist{_screen}.{csv,md}. `:screen` is seed 0, the
default is seeds 0-2, `:<recipe>` is that recipe alone at seeds 0-2 (into the same folder: the
screen's finished seed 0 is skipped), `:tiny` is seconds long, for tests. `:4x` trains
`cdcgan2016` for 4x the main job's budget (20,000 steps, seed 0, evaluated every 2,500), the
counterpart of main_job_speed.py:4x (experiments/results/main_job_4x.{csv,md}).
"""

import importlib.util
import os

# The study's evaluation settings and tiny variant, shared with the unconditional arm.
_spec = importlib.util.spec_from_file_location(
  '_main_job_mnist', os.path.join(os.path.dirname(os.path.abspath(__file__)), 'main_job_mnist.py')
)
_unconditional = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_unconditional)

RECIPES = {
  'cdcgan2016': {},
  'ema_hl': {'train.ema_half_life_images': 10000.0, 'train.ema_rampup': 0.05},
  'rpgan_r1r2': {'train.loss': 'rpgan', 'train.r1_weight': 0.1, 'train.r2_weight': 0.1},
  'rpgan_r1r2_ema': {
    'train.loss': 'rpgan', 'train.r1_weight': 0.1, 'train.r2_weight': 0.1,
    'train.ema_half_life_images': 10000.0, 'train.ema_rampup': 0.05,
  },
}
METRICS = [
  'fid_lenet', 'raw_fid_lenet', 'kid_lenet', 'raw_kid_lenet', 'precision_lenet',
  'recall_lenet', 'classes_lenet_kl', 'classes_lenet_min', 'classes_lenet_max', 'is_lenet',
]


def get_ablation(variant: str = ''):
  """Returns the ablation: '' (3 seeds), 'screen' (seed 0), a recipe's name (it alone, 3 seeds),
  '4x' (cdcgan2016 for 20,000 steps, seed 0) or 'tiny' (seconds, for tests).

  Raises:
    ValueError: for an unknown variant.
  """
  overrides = _unconditional.EVAL_OVERRIDES
  if variant == 'tiny':
    return _unconditional.tiny_ablation(
      'experiments/mnist_cdcgan.py:tiny', {k: RECIPES[k] for k in ('cdcgan2016', 'rpgan_r1r2_ema')}
    )
  if variant == '4x':
    return dict(
      base='experiments/mnist_cdcgan.py',
      overrides={**overrides, 'train.steps': 20000, 'eval_every': 2500},
      grid={'recipe': {'cdcgan2016_4x': RECIPES['cdcgan2016']}},
      seeds=[0],
      metrics=METRICS,
    )
  if variant not in ('', 'screen', *RECIPES):
    raise ValueError(
      f'unknown variant {variant!r} of main_job_cmnist; use "screen", "4x", "tiny", a recipe '
      f'({", ".join(RECIPES)}) or none.'
    )
  recipes = {variant: RECIPES[variant]} if variant in RECIPES else RECIPES
  return dict(
    base='experiments/mnist_cdcgan.py',
    overrides=overrides,
    grid={'recipe': recipes},
    seeds=[0] if variant == 'screen' else [0, 1, 2],
    metrics=METRICS,
  )
