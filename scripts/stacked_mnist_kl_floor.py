"""The Stacked-MNIST KL that a perfect generator would score: the metric's floor.

Issue 18's goal on Stacked MNIST is all 1,000 modes with KL <= 0.05, where the KL is that of
the mode histogram of 26,000 samples, each channel classified by the pinned MNIST LeNet
(`gan_jax.metrics.mode_coverage`). Even a generator that samples the real data exactly
scores above 0:
  - a finite sample: 26,000 draws from the uniform distribution over 1,000 modes have
    KL ~ (1000 - 1) / (2 x 26,000) = 0.019 (`multinomial` rows: perfect classifier);
  - the classifier's errors: each misread digit moves a sample to another mode
    (`real_iid` rows: 26,000 real Stacked-MNIST training images drawn uniformly with
    replacement, i.e. i.i.d. from the data distribution, then classified as a generator's
    samples are).
`real_balanced` classifies 26,000 consecutive training images (every mode exactly 26 times),
which leaves only the classifier's errors. Each draw uses its own seed; the JSON holds every
draw and their mean and std.

    TFDS_DATA_DIR=../shared/tfds python scripts/stacked_mnist_kl_floor.py \
        --out experiments/results/stacked_mnist_kl_floor.json     # ~1 minute on 2 cores
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import numpy as np

from gan_jax.data.stacked_mnist import stacked_mnist_arrays
from gan_jax.metrics.lenet import load_lenet
from gan_jax.metrics.mode_coverage import (
  NUM_MODES,
  classify_stacked,
  coverage_from_histogram,
  mode_coverage,
)

NUM_SAMPLES = 26_000


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--draws', type=int, default=5, help='Seeds per row (default 5).')
  p.add_argument('--num-samples', type=int, default=NUM_SAMPLES, help='Samples per draw.')
  p.add_argument('--data-dir', default=None, help='TFDS data dir (default: TFDS_DATA_DIR).')
  p.add_argument('--out', default=None, help='JSON path (default: print only).')
  args = p.parse_args(argv)
  if args.draws < 1 or args.num_samples < 1:
    p.error('--draws and --num-samples must be >= 1.')
  return args


def _summary(values: list[float]) -> dict[str, float | None]:
  return {
    'mean': float(np.mean(values)),
    'std': float(np.std(values, ddof=1)) if len(values) > 1 else None,
  }


def main(argv=None) -> dict:
  args = parse_args(argv)
  images, _, digits = stacked_mnist_arrays('train', data_dir=args.data_dir)
  if args.num_samples > images.shape[0]:
    sys.exit(f'--num-samples {args.num_samples} exceeds the {images.shape[0]} training images.')
  lenet = load_lenet('mnist')
  to_float = lambda x: x.astype(np.float32) / 127.5 - 1.0  # noqa: E731  [-1, 1], as samples
  rows: dict[str, list[dict]] = {'multinomial': [], 'real_iid': [], 'real_balanced': []}
  for seed in range(args.draws):
    rng = np.random.default_rng(seed)
    modes = rng.integers(0, NUM_MODES, args.num_samples)
    rows['multinomial'].append(coverage_from_histogram(np.bincount(modes, minlength=NUM_MODES)))
    idx = rng.integers(0, images.shape[0], args.num_samples)
    read = classify_stacked(to_float(images[idx]), lenet)
    cov = mode_coverage(read)
    cov['digit_error_rate'] = float(np.mean(read != digits[idx]))
    rows['real_iid'].append(cov)
  # Consecutive block: every mode exactly num_samples / 1000 times before classification.
  start = 0
  read = classify_stacked(to_float(images[start : start + args.num_samples]), lenet)
  cov = mode_coverage(read)
  cov['digit_error_rate'] = float(np.mean(read != digits[start : start + args.num_samples]))
  rows['real_balanced'].append(cov)
  report = {
    'date': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
    'command': ' '.join(['python', 'scripts/stacked_mnist_kl_floor.py', *(argv or sys.argv[1:])]),
    'num_samples': args.num_samples,
    'expected_multinomial_kl_approx': (NUM_MODES - 1) / (2 * args.num_samples),
    'rows': rows,
    'summary': {
      name: {
        'kl': _summary([r['kl'] for r in draws]),
        'modes_covered': _summary([r['modes_covered'] for r in draws]),
      }
      for name, draws in rows.items()
    },
  }
  for name, s in report['summary'].items():
    std = s['kl']['std']
    print(
      f'{name:14s} KL {s["kl"]["mean"]:.4f}'
      + (f' +- {std:.4f}' if std is not None else '')
      + f'  modes {s["modes_covered"]["mean"]:.1f}'
    )
  if args.out:
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + '\n')
    print(f'wrote {args.out}')
  return report


if __name__ == '__main__':
  main()
