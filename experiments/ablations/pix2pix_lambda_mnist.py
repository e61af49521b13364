"""pix2pix's L1 weight on MNIST inpainting: lambda 10 vs 100 (Isola et al. 2017 use 100).

Run it from the repository root (offline data beside the checkout):

    TFDS_DATA_DIR=../shared/tfds gan-jax sweep experiments/ablations/pix2pix_lambda_mnist.py \
        --workdir runs/pix2pix_lambda

That is 2 cells x seeds 0, 1, 2 = 6 runs of experiments/pix2pix_inpaint_mnist.py (800 steps
each, evaluated every 200 steps and at the end). results.md holds, per cell, the mean ± std
over seeds of PSNR and SSIM of the model and of the mean-fill baseline on the 512 held-out
images; psnr_vs_step.png plots PSNR against the step; samples.png the last grid (input |
output | target) of each cell. Rerun the same command after an interruption: finished runs
are skipped, the others resume from their checkpoints.

The `tiny` variant (tests and smoke runs, seconds per run) uses the `:tiny` config, 2 steps,
one seed:

    gan-jax sweep experiments/ablations/pix2pix_lambda_mnist.py:tiny --workdir /tmp/lambda_tiny
"""

LAMBDAS = {'10': {'translation.l1_weight': 10.0}, '100': {'translation.l1_weight': 100.0}}
METRICS = ['psnr', 'ssim', 'baseline_psnr', 'baseline_ssim']


def get_ablation(variant: str = ''):
  """Returns the ablation; `variant='tiny'` is a seconds-long version on the tiny config.

  Raises:
    ValueError: for an unknown variant.
  """
  if variant == 'tiny':
    return dict(
      base='experiments/pix2pix_inpaint_mnist.py:tiny',
      overrides={'train.steps': 2, 'eval_every': 2, 'sample_every': 2},
      grid={'l1': LAMBDAS},
      seeds=[0],
      metrics=METRICS,
    )
  if variant:
    raise ValueError(f'unknown variant {variant!r} of pix2pix_lambda_mnist; use "tiny" or none.')
  return dict(
    base='experiments/pix2pix_inpaint_mnist.py',
    grid={'l1': LAMBDAS},
    seeds=[0, 1, 2],
    metrics=METRICS,
  )
