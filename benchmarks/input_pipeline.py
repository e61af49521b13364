"""Host input-pipeline throughput of gan_jax.data.pipeline.build_train_dataset (no device, no model).

Measures images/s delivered by tf.data alone, after a warm-up that by default covers one full
epoch so the in-memory cache is filled and every timed batch comes from the steady state.
Prints one markdown table row and one JSON line.

Example (offline data next to the repository):

    python benchmarks/input_pipeline.py --dataset mnist --batch-size 64 \
        --data-dir ../shared/tfds
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

try:
  from gan_jax.data import pipeline as data
except ImportError:  # Run from a checkout without `pip install -e .`.
  sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
  from gan_jax.data import pipeline as data

import tensorflow as tf
import tensorflow_datasets as tfds


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--dataset', default='mnist', help='TFDS dataset name.')
  parser.add_argument('--split', default='train', help='TFDS split (slicing allowed).')
  parser.add_argument('--batch-size', type=int, default=64, help='Global batch size B.')
  parser.add_argument('--image-size', type=int, default=28, help='Output H = W.')
  parser.add_argument('--channels', type=int, default=1, choices=(1, 3), help='Output C.')
  parser.add_argument('--n-critic', type=int, default=1, help='D steps per element.')
  parser.add_argument('--num-batches', type=int, default=500, help='Timed elements.')
  parser.add_argument(
    '--warmup',
    type=int,
    default=-1,
    help='Untimed elements first; -1 = one epoch + 5 (fills the cache).',
  )
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument(
    '--data-dir',
    default=None,
    help='TFDS data_dir (default: $TFDS_DATA_DIR, then ~/tensorflow_datasets).',
  )
  return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
  args = parse_args(argv)
  data_dir = data.resolve_data_dir(args.data_dir)
  start = time.perf_counter()
  ds = data.build_train_dataset(
    args.dataset,
    args.split,
    data_dir=data_dir,
    image_size=args.image_size,
    channels=args.channels,
    batch_size=args.batch_size,
    seed=args.seed,
    n_critic=args.n_critic,
  )
  first = next(ds.as_numpy_iterator())  # Decodes the whole split into cache + shuffle buffer.
  first_batch_s = time.perf_counter() - start
  num_examples = tfds.builder(args.dataset, data_dir=data_dir).info.splits[args.split].num_examples
  images_per_element = args.n_critic * args.batch_size
  warmup = math.ceil(num_examples / images_per_element) + 5 if args.warmup < 0 else args.warmup
  rate = data.measure_throughput(ds, args.num_batches, warmup=warmup)
  result = {
    'dataset': args.dataset,
    'split': args.split,
    'batch_size': args.batch_size,
    'n_critic': args.n_critic,
    'image_shape': list(first['image'].shape[2:]),
    'num_batches': args.num_batches,
    'warmup_batches': warmup,
    'images_per_s': round(rate, 1),
    'steps_per_s': round(rate / images_per_element, 1),
    'first_batch_s': round(first_batch_s, 2),
    'cpu_count': os.cpu_count(),
    'tensorflow': tf.__version__,
    'tensorflow_datasets': tfds.__version__,
    'python': platform.python_version(),
  }
  h, w, c = result['image_shape']
  print('| dataset | B | n_critic | image | images/s | steps/s | first batch (s) |')
  print('|---|---|---|---|---|---|---|')
  print(
    f"| {args.dataset} {args.split} | {args.batch_size} | {args.n_critic} | {h}x{w}x{c} "
    f"| {rate:,.0f} | {result['steps_per_s']:,.1f} | {first_batch_s:.2f} |"
  )
  print(json.dumps(result))
  return result


if __name__ == '__main__':
  main()
