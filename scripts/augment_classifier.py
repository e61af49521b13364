"""Conditional-GAN samples as classifier training data: augmentation, CAS, GAN-train/GAN-test.

For each labelled fraction f of the train split (`--fractions`, default 1, 5 and 10 %) and
each seed s (`--seeds`, default 0, 1, 2):

1. The labelled subset is the TFDS slice `train[s*f%:(s+1)*f%]`: disjoint slices, one per
   seed, so the seeds differ in their data as well as in their initialisation (MNIST's and
   Fashion-MNIST's train splits are not sorted by class; each slice holds every class).
2. A class-conditional GAN (`--config`, default experiments/mnist_cdcgan.py: conditional
   BatchNorm in G, projection D) is trained on that subset only, `--gan-steps` steps
   (default 3,000) with seed s, in `<out>/<dataset>/f<f>/seed<s>/gan` (a normal run folder;
   a finished one is reused when the command is run again, as is a finished cell's row of
   results, `row.json`, when the settings are the same).
3. Its EMA generator makes `--per-class` samples of every class (default 500).
4. The same LeNet as FID (LeNet)'s (scripts/train_classifier.py: Adam 1e-3 cosine to 0,
   batch 128, dropout, +-2 px translations; flips for Fashion-MNIST) is trained from scratch,
   `--clf-steps` steps (default 2,000) with seed s, on
     * real: the labelled subset alone (the baseline);
     * real + GAN: the subset plus the GAN samples (augmentation: GAN samples enlarge the
       training set, each image drawn with equal probability);
     * GAN only: the GAN samples alone. Its test accuracy is the Classification Accuracy
       Score (CAS, Ravuri & Vinyals 2019, section 3), also called GAN-train (Shmelkov et al.
       2018, section 4.1).
   and each is scored on the whole test split (10,000 images).
5. GAN-test (Shmelkov et al. 2018, section 4.1): the accuracy of a classifier trained on
   real data on the GAN samples, here the pinned LeNet of FID (LeNet), trained on the full
   train split (accuracy on the test split: 99.2% MNIST, 91.7% Fashion-MNIST): how often a
   sample is recognised as the class it was asked for.

The table has mean +- sample std over the seeds of each test accuracy (and GAN-test). The
numbers are reported as they come out, including where GAN samples do not help: at larger
fractions real data alone usually wins, since a GAN trained on the same subset adds no new
information, only its own errors.

Run from the repository root (offline: `export TFDS_DATA_DIR=../shared/tfds`):

    python scripts/augment_classifier.py --out runs/augment                  # MNIST
    python scripts/augment_classifier.py --out runs/augment \\
        --config experiments/fashion_mnist_cdcgan.py --dataset fashion_mnist

Budget on a 2-core CPU: 9 GANs of 3,000 steps (about 5 minutes each) and 27 classifiers of
2,000 steps (about 150 s each), some 2 hours in all; an interrupted command resumes where it
stopped (finished GANs and cells are reused). Output: `<out>/<dataset>/results.json` (every run) and
`results.md` (the table), both also printed. `--tiny` runs a seconds-long version (tests).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
# This script's path from the repository root, as results.json records it in 'command'.
SCRIPT = Path(__file__).resolve().relative_to(HERE.parent).as_posix()
sys.path.insert(0, str(HERE))

import train_classifier  # noqa: E402

CONDITIONS = ('real', 'real_gan', 'gan')
TITLES = {
  'real': 'real only',
  'real_gan': 'real + GAN',
  'gan': 'GAN only (CAS)',
  'gan_test': 'GAN-test',
}


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument(
    '--config',
    default=str(HERE.parent / 'experiments' / 'mnist_cdcgan.py'),
    help='Conditional GAN config.',
  )
  p.add_argument('--dataset', default='mnist', choices=('mnist', 'fashion_mnist'))
  p.add_argument('--out', required=True, help='Output folder (runs and results).')
  p.add_argument('--fractions', default='1,5,10', help='Labelled % of the train split.')
  p.add_argument('--seeds', default='0,1,2')
  p.add_argument('--gan-steps', type=int, default=3000)
  p.add_argument('--per-class', type=int, default=500, help='GAN samples per class.')
  p.add_argument('--clf-steps', type=int, default=2000, help='Classifier steps (batch 128).')
  p.add_argument('--data-dir', default=None, help='TFDS data dir (default: $TFDS_DATA_DIR).')
  p.add_argument('--tiny', action='store_true', help="The config's tiny variant (smoke tests).")
  args = p.parse_args(argv)
  try:
    args.fractions = [float(f) for f in args.fractions.split(',')]
    args.seeds = [int(s) for s in args.seeds.split(',')]
  except ValueError:
    p.error('--fractions and --seeds are comma-separated numbers, e.g. 1,5,10 and 0,1,2.')
  bad = [f for f in args.fractions if not 0 < f <= 100]
  if bad or any(s < 0 for s in args.seeds):
    p.error(f'fractions must be in (0, 100] (got {bad}) and seeds >= 0.')
  if max(args.seeds) + 1 > 100 / max(args.fractions):
    p.error('the seeds\' disjoint slices do not fit in the split: fewer seeds or fractions.')
  if min(args.gan_steps, args.per_class, args.clf_steps) < 1:
    p.error('--gan-steps, --per-class and --clf-steps must be >= 1.')
  return args


def subset_split(fraction: float, seed: int) -> str:
  """The TFDS slice of seed `seed`'s labelled subset, e.g. 'train[5%:10%]'."""
  lo, hi = fraction * seed, fraction * (seed + 1)
  return f'train[{lo:g}%:{hi:g}%]'


def gan_config(args: argparse.Namespace, split: str, seed: int):
  from gan_jax.cli.main import load_config_file  # noqa: PLC0415

  config = load_config_file(f'{args.config}:tiny' if args.tiny else args.config)
  if not config.model.get('num_classes', 0):
    raise SystemExit(f'--config {args.config} is not class-conditional (model.num_classes=0).')
  config.data.name = args.dataset
  config.data.split = split
  if args.data_dir:
    config.data.data_dir = args.data_dir
  config.seed = seed
  config.train.steps = args.gan_steps
  config.eval_every = 0  # This experiment scores the samples with classifiers instead.
  config.checkpoint_every = args.gan_steps
  config.sample_every = args.gan_steps
  config.progress_bar = False
  return config


def train_gan(args, split: str, seed: int, workdir: str) -> float:
  """Trains (or resumes) the subset's GAN; returns the training wall time (0 if reused)."""
  from gan_jax.training.train import train_and_evaluate  # noqa: PLC0415

  summary = os.path.join(workdir, 'summary.json')
  if os.path.isfile(summary):
    with open(summary) as f:
      if json.load(f).get('end_step') == args.gan_steps:
        return 0.0
  start = time.perf_counter()
  train_and_evaluate(gan_config(args, split, seed), workdir)
  return time.perf_counter() - start


def gan_samples(workdir: str, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(images float32 [K * per_class, H, W, C] in [-1, 1], labels int32) from the EMA G."""
  import jax  # noqa: PLC0415

  from gan_jax.core import sampling  # noqa: PLC0415
  from gan_jax.training.checkpoint import load_run  # noqa: PLC0415

  config, gan, state = load_run(workdir)
  labels = np.asarray(sampling.per_class_labels(gan.num_classes, per_class))
  z = gan.sample_latents(jax.random.PRNGKey(10_000 + seed), len(labels))
  use_ema = config.train.ema_decay > 0
  images = [
    np.asarray(sampling.sample(gan, state, z[i : i + 500], labels[i : i + 500], use_ema=use_ema))
    for i in range(0, len(labels), 500)
  ]
  return np.concatenate(images).astype(np.float32), labels.astype(np.int32)


def accuracy_on(model, images: np.ndarray, labels: np.ndarray) -> float:
  import jax  # noqa: PLC0415
  from flax import nnx  # noqa: PLC0415

  graphdef, params = nnx.split(model)
  apply = jax.jit(lambda x: nnx.merge(graphdef, params)(x))
  return train_classifier.accuracy(apply, images, labels)


def gan_test(dataset: str, images: np.ndarray, labels: np.ndarray) -> float:
  """Accuracy of the pinned LeNet (trained on all real train images) on the GAN samples."""
  from gan_jax.metrics import lenet  # noqa: PLC0415

  net = lenet.load_lenet(dataset)
  return float(np.mean(lenet.predict(net, images) == labels))


def mean_std(values: list[float]) -> str:
  if not values:
    return '-'
  std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
  return f'{100 * np.mean(values):.2f} ± {100 * std:.2f}'


def table(results: list[dict], args) -> str:
  lines = [
    f'Test accuracy (%, {args.dataset} test split, mean ± std over seeds {args.seeds}); '
    f'GAN: {Path(args.config).name}, {args.gan_steps} steps; {args.per_class} GAN samples per '
    f'class; classifiers {args.clf_steps} steps.',
    '',
    '| labelled | real images | ' + ' | '.join(TITLES[k] for k in (*CONDITIONS, 'gan_test')) + ' |',
    '|---|---|' + '---|' * (len(CONDITIONS) + 1),
  ]
  for f in args.fractions:
    rows = [r for r in results if r['fraction'] == f]
    n_real = sorted({r['num_real'] for r in rows})
    cells = [mean_std([r[k] for r in rows]) for k in (*CONDITIONS, 'gan_test')]
    lines.append(f'| {f:g}% | {"/".join(map(str, n_real))} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def main(argv=None) -> dict:
  args = parse_args(argv)
  out = Path(args.out) / args.dataset
  out.mkdir(parents=True, exist_ok=True)
  shift, flip = 2, args.dataset == 'fashion_mnist'
  test = train_classifier.load_split(args.dataset, 'test', args.data_dir)
  results = []
  for fraction in args.fractions:
    for seed in args.seeds:
      split = subset_split(fraction, seed)
      run = out / f'f{fraction:g}' / f'seed{seed}'
      settings = {k: getattr(args, k) for k in ('gan_steps', 'per_class', 'clf_steps', 'tiny')}
      settings['config'] = Path(args.config).name
      cached = run / 'row.json'
      if cached.is_file():  # a cell finished by an earlier, interrupted command
        row = json.loads(cached.read_text())
        if row.pop('settings', None) == settings:
          results.append(row)
          print(f'{split}: reused {cached}', flush=True)
          continue
      gan_s = train_gan(args, split, seed, str(run / 'gan'))
      real_x, real_y = train_classifier.load_split(args.dataset, split, args.data_dir)
      fake_x, fake_y = gan_samples(str(run / 'gan'), args.per_class, seed)
      data = {
        'real': (real_x, real_y),
        'real_gan': (np.concatenate([real_x, fake_x]), np.concatenate([real_y, fake_y])),
        'gan': (fake_x, fake_y),
      }
      row = {
        'fraction': fraction,
        'seed': seed,
        'split': split,
        'num_real': len(real_x),
        'num_gan': len(fake_x),
        'gan_train_s': gan_s,
      }
      for name, (x, y) in data.items():
        t0 = time.perf_counter()
        model = train_classifier.fit(
          x, y, steps=args.clf_steps, seed=seed, shift=shift, flip=flip, log=None
        )
        row[name] = accuracy_on(model, *test)
        row[f'{name}_s'] = time.perf_counter() - t0
      row['gan_test'] = gan_test(args.dataset, fake_x, fake_y)
      results.append(row)
      cached.write_text(json.dumps({**row, 'settings': settings}, indent=1))
      print(
        f'{split} ({len(real_x)} real): '
        + ', '.join(f'{TITLES[k]} {100 * row[k]:.2f}%' for k in (*CONDITIONS, 'gan_test')),
        flush=True,
      )
  md = table(results, args)
  print('\n' + md)
  report = {
    'date': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
    'command': ' '.join([SCRIPT, *(sys.argv[1:] if argv is None else argv)]),
    'args': {k: v for k, v in vars(args).items()},
    'results': results,
  }
  (out / 'results.json').write_text(json.dumps(report, indent=1))
  (out / 'results.md').write_text(md + '\n')
  return report


if __name__ == '__main__':
  main()
