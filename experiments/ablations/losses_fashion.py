"""Loss ablation on real Fashion-MNIST: five GAN objectives x generator EMA off/on, 3 seeds.

Run it from the repository root (offline data beside the checkout):

    TFDS_DATA_DIR=../shared/tfds gan-jax sweep experiments/ablations/losses_fashion.py \
        --workdir runs/losses_fashion

That is 5 losses x seeds 0, 1, 2 = 15 runs of the Fashion-MNIST DCGAN-28
(experiments/fashion_mnist_dcgan.py), each 3,000 steps at batch 64, evaluated every 1,000
steps and at the end with FID, KID, IS and precision/recall on the Fashion-MNIST LeNet
(10,000 samples against the train split). Each evaluation scores both generators of the run:
the EMA generator (decay 0.999, a half-life of ~690 steps), as `fid_lenet`, ..., and the raw
generator, as `raw_fid_lenet`, ... (`eval.raw_generator`). The EMA never feeds back into
training, so the raw generator of a run is the generator of the same run with the EMA off:
"EMA off vs on" costs one more evaluation, not 15 more runs (the tiny variant's test checks
that the two agree). Add `--dry-run` to list the runs first; run the same command again after
an interruption: finished runs are skipped, the others resume. Results:
runs/losses_fashion/results.md (mean ± std over seeds per cell), results.csv (every run),
fid_vs_step.png and samples.png.

Budget: 3,000 steps is what fits this 2-core CPU. Measured on an idle machine, with three
evaluations of both generators: 318-367 s per run for hinge + SN and least-squares, 400-445 s
with R1 and 1,070-1,100 s with WGAN-GP (n_critic 5 and the penalty), about 2.1 hours for the
15 runs. The results are in docs/results.md ("Losses on Fashion-MNIST") and in
experiments/results/losses_fashion.{csv,md}.

The cells (the same step count for all; one step = n_critic D updates + one G update, so
WGAN-GP sees 5x the images of the others):

    non_saturating     -E[log D(G(z))] for G (Goodfellow et al. 2014), Adam 2e-4, b1 0.5.
    wgan_gp            Wasserstein + gradient penalty lambda 10, n_critic 5, Adam 1e-4,
                       b1 0, b2 0.9 (Gulrajani et al. 2017, Algorithm 1). The DCGAN-28 critic
                       has no BatchNorm, so the per-sample penalty is well defined.
    hinge_sn           hinge loss, spectral norm on every D layer (Miyato et al. 2018), Adam
                       2e-4, b1 0.5.
    least_squares      LSGAN (Mao et al. 2017, eq. 2 with a=0, b=c=1), Adam 2e-4, b1 0.5.
    non_saturating_r1  non-saturating + R1 gamma 10 on real images (Mescheder et al. 2018).

R1 gamma = 10, Mescheder et al.'s value, kept for 28x28x1 images: the penalty
gamma/2 E||grad_x D(x)||^2 sums over the 784 input values, so at a given per-pixel slope it is
about 16x smaller than on the 64x64x3 images gamma = 10 was used with; 10 therefore constrains
this D no more than the paper's setting did, while StyleGAN2-ADA's heuristic
gamma = 0.0002 * H * W / batch (0.0025 here) was fitted to a much larger D and would make the
penalty negligible. A gamma sweep (e.g. 1, 10, 100) is a natural follow-up ablation.

The `tiny` variant (tests and smoke runs, about a minute on a CPU) keeps EMA as a second grid
axis, to exercise two-axis grids: the two cheapest loss cells (non_saturating,
least_squares) x EMA off (train.ema_decay 0) / on x seeds 0, 1 of the `:tiny` Fashion-MNIST
config, 2 steps each, evaluated at the end with FID and KID on 256 samples against 512 real
images:

    gan-jax sweep experiments/ablations/losses_fashion.py:tiny --workdir /tmp/losses_tiny \
        --config.data.data_dir=../shared/tfds

Ablation file format (see gan_jax/sweep/__init__.py): `get_ablation(variant)` returns a dict with
`base` (the config file, relative to this file, a folder above it, or the current folder, and
an optional `:variant`), `overrides` (config key -> value for every run), `grid` (axis ->
label -> {config key: value}; the cells are the product of the axes), `seeds` and `metrics`
(evaluation result names; the first one is plotted against the step).
"""

# Loss cells: each sets every field it depends on, so no cell inherits another's settings.
LOSSES = {
  'non_saturating': {'train.loss': 'non_saturating'},
  'wgan_gp': {
    'train.loss': 'wasserstein',
    'train.gp_weight': 10.0,
    'train.n_critic': 5,
    'train.g_lr': 1e-4,
    'train.d_lr': 1e-4,
    'train.b1': 0.0,
    'train.b2': 0.9,
  },
  'hinge_sn': {'train.loss': 'hinge', 'model.spectral_norm': True},
  'least_squares': {'train.loss': 'least_squares'},
  'non_saturating_r1': {'train.loss': 'non_saturating', 'train.r1_weight': 10.0},
}
EMA = {'off': {'train.ema_decay': 0.0}, 'on': {'train.ema_decay': 0.999}}


def get_ablation(variant: str = ''):
  """Returns the ablation; `variant='tiny'` is a seconds-long version on the tiny model.

  Raises:
    ValueError: for an unknown variant.
  """
  if variant == 'tiny':
    return dict(
      base='experiments/fashion_mnist_dcgan.py:tiny',
      overrides={
        'train.steps': 2,
        'eval_every': 2,
        'eval.metrics': 'fid,kid',
        'eval_num_samples': 256,
        'eval.split': 'train[:512]',
        'eval.kid_pr_samples': 256,
        'eval.raw_generator': True,
      },
      grid={
        'loss': {k: LOSSES[k] for k in ('non_saturating', 'least_squares')},
        'ema': EMA,
      },
      seeds=[0, 1],
      metrics=['fid_lenet', 'kid_lenet'],
    )
  if variant:
    raise ValueError(f'unknown variant {variant!r} of losses_fashion; use "tiny" or none.')
  return dict(
    base='experiments/fashion_mnist_dcgan.py',
    overrides={
      'train.steps': 3000,
      'train.ema_decay': 0.999,
      'eval_every': 1000,
      'eval.metrics': 'fid,kid,is,pr',
      'eval.raw_generator': True,
      'eval_num_samples': 10000,
      'checkpoint_every': 1000,
    },
    grid={'loss': LOSSES},
    seeds=[0, 1, 2],
    metrics=[
      'fid_lenet',
      'raw_fid_lenet',
      'kid_lenet',
      'raw_kid_lenet',
      'precision_lenet',
      'raw_precision_lenet',
      'recall_lenet',
      'raw_recall_lenet',
      'is_lenet',
    ],
  )
