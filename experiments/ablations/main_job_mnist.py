"""Which recipe should the main job train? Issue 18's quality-at-budget study, on MNIST.

    TFDS_DATA_DIR=../shared/tfds nice -n 10 gan-jax sweep experiments/ablations/main_job_mnist.py \
        --workdir runs/main_job_mnist

Base: the main job (`experiments/mnist_dcgan.py`: DCGAN-28, non-saturating loss, Adam 2e-4 /
0.5, EMA decay 0.999, 5,000 steps at batch 64, about 8 minutes of an idle 2-core CPU). Each
cell changes one thing, and `combo` combines the ones that are cheap:

  dcgan2016   today's recipe, unchanged
  ema_hl      the EMA horizon as a half-life of 10,000 images with a ramp-up of 0.05
              (StyleGAN2-ADA's `ema_kimg=10`, `ema_rampup=0.05`; Karras et al. 2020) instead of
              decay 0.999 (a horizon of ~1,000 steps, which lags a 5,000-step run)
  cosine_lr   both learning rates decay to 0 along a half cosine over the run's 320,000 images
  mbstd       the minibatch-stddev layer in D (groups of 4; Karras et al. 2018)
  rpgan_r1r2  the R3GAN objective on the DCGAN: RpGAN + R1 + R2 with gamma 0.1 (Huang et al.
              2024); its two gradient penalties cost more per step (see benchmarks/r3gan_cost.py)
  combo       ema_hl + cosine_lr + mbstd

Every evaluation (every 1,000 steps and at the end, 10,000 samples, as the main job) scores
both generators: the EMA generator with its own standing BatchNorm statistics
(`eval.ema_batch_stats='standing'`, Brock et al. 2019) as `fid_lenet`, ..., and the raw
generator as `raw_fid_lenet`, ...; `classes` is the class balance (the goal: all ten digits
near 10% of samples). The runs' metrics.jsonl hold the wall time at every evaluation, for
time-to-quality. Results: experiments/results/main_job_mnist.{csv,md}
(`gan-jax sweep ... --summary-only` rewrites them). Seed 0 first (`:screen`), then 3 seeds.
The `tiny` variant is seconds long, for tests.
"""

RECIPES = {
  'dcgan2016': {},
  'ema_hl': {'train.ema_half_life_images': 10000.0, 'train.ema_rampup': 0.05},
  'cosine_lr': {'train.schedules': 'g_lr,d_lr=cosine:1->0@320kimg'},
  'mbstd': {'model.minibatch_std': 4},
  'rpgan_r1r2': {'train.loss': 'rpgan', 'train.r1_weight': 0.1, 'train.r2_weight': 0.1},
  'combo': {
    'train.ema_half_life_images': 10000.0,
    'train.ema_rampup': 0.05,
    'train.schedules': 'g_lr,d_lr=cosine:1->0@320kimg',
    'model.minibatch_std': 4,
  },
}
METRICS = [
  'fid_lenet', 'raw_fid_lenet', 'kid_lenet', 'raw_kid_lenet', 'precision_lenet',
  'recall_lenet', 'classes_lenet_kl', 'raw_classes_lenet_kl', 'classes_lenet_min',
  'classes_lenet_max', 'is_lenet',
]

# Every run of the study (this file and main_job_cmnist.py) scores both generators: the EMA
# one with its own standing statistics, the raw one with its running averages.
EVAL_OVERRIDES = {
  'eval.metrics': 'fid,kid,is,pr,classes',
  'eval.raw_generator': True,
  'eval.ema_batch_stats': 'standing',
  'progress_bar': False,
}


def tiny_ablation(base: str, recipes: dict) -> dict:
  """The seconds-long variant of the study over `recipes`, on `base` (a `:tiny` config)."""
  return dict(
    base=base,
    overrides={**EVAL_OVERRIDES, 'train.steps': 2, 'eval_every': 2, 'eval_num_samples': 256,
               'eval.split': 'train[:512]', 'eval.kid_pr_samples': 256,
               'eval.metrics': 'fid,classes'},
    grid={'recipe': recipes},
    seeds=[0],
    metrics=['fid_lenet', 'raw_fid_lenet', 'classes_lenet_kl'],
  )


def get_ablation(variant: str = ''):
  """Returns the ablation: '' (3 seeds), 'screen' (seed 0) or 'tiny' (seconds, for tests).

  Raises:
    ValueError: for an unknown variant.
  """
  overrides = EVAL_OVERRIDES
  if variant == 'tiny':
    return tiny_ablation('experiments/mnist_dcgan.py:tiny', {k: RECIPES[k] for k in ('dcgan2016', 'combo')})
  if variant not in ('', 'screen'):
    raise ValueError(f'unknown variant {variant!r} of main_job_mnist; use "screen", "tiny" or none.')
  return dict(
    base='experiments/mnist_dcgan.py',
    overrides=overrides,
    grid={'recipe': RECIPES},
    seeds=[0] if variant == 'screen' else [0, 1, 2],
    metrics=METRICS,
  )
