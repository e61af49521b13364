"""Does a folder of images train as well as TFDS? Issue 20's check of `data.name='folder:...'`.

    python scripts/mnist_to_pngs.py --out runs/mnist_png      # MNIST train as 60,000 PNGs
    TFDS_DATA_DIR=../shared/tfds nice -n 10 gan-jax sweep experiments/ablations/folder_vs_tfds_mnist.py \
        --workdir runs/folder_vs_tfds_mnist

The main job's config (`experiments/mnist_dcgan.py`) at 3,000 steps, seeds 0, 1, 2, once on
TFDS `mnist` and once on the same 60,000 images read from PNG files in class folders
(`GAN_JAX_MNIST_PNG`, default `runs/mnist_png`, as written by `scripts/mnist_to_pngs.py`).
Both are scored by the MNIST LeNet against their own training images (the same 60,000
images, so the same FID reference statistics up to their order), on 10,000 samples at the
end. The folder's stored order is class by class, TFDS's is not, so the seeded shuffles
differ: the two sources should agree within the spread over seeds, not bit for bit.
Results: experiments/results/folder_vs_tfds_mnist.{csv,md}. `:seed0` (`:seed1`, `:seed2`) runs
one seed of both sources into the same folder, so that pairs finish first; the plain ablation
then finds them done and summarises all. `:tiny` is seconds long.
"""

import os


def get_ablation(variant: str = ''):
  """Returns the ablation ('' or 'tiny').

  Raises:
    ValueError: for an unknown variant.
  """
  folder = os.path.abspath(os.environ.get('GAN_JAX_MNIST_PNG', 'runs/mnist_png'))
  grid = {'data': {'tfds': {'data.name': 'mnist'}, 'folder': {'data.name': f'folder:{folder}'}}}
  overrides = {
    'eval.feature_net': 'lenet_mnist',
    'eval.metrics': 'fid,kid,pr,classes',
    'progress_bar': False,
  }
  if variant == 'tiny':
    return dict(
      base='experiments/mnist_dcgan.py:tiny',
      overrides={**overrides, 'train.steps': 2, 'eval_every': 2, 'eval_num_samples': 256,
                 'eval.split': 'train[:512]', 'eval.kid_pr_samples': 256,
                 'eval.metrics': 'fid'},
      grid=grid,
      seeds=[0],
      metrics=['fid_lenet'],
    )
  seeds = [0, 1, 2]
  if variant in ('seed0', 'seed1', 'seed2'):  # one seed of both sources: pairs come first
    seeds = [int(variant[-1])]
  elif variant:
    raise ValueError(
      f'unknown variant {variant!r} of folder_vs_tfds_mnist; use "seed0", "seed1", "seed2", '
      '"tiny" or none.'
    )
  return dict(
    base='experiments/mnist_dcgan.py',
    overrides={**overrides, 'train.steps': 3000, 'eval_every': 3000, 'checkpoint_every': 1000},
    grid=grid,
    seeds=seeds,
    metrics=['fid_lenet', 'kid_lenet', 'precision_lenet', 'recall_lenet', 'classes_lenet_kl'],
  )
