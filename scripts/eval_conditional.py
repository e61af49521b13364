"""Per-class evaluation of a trained class-conditional GAN: classifier accuracy and FID (LeNet).

    python scripts/eval_conditional.py --workdir runs/mnist_cdcgan \
        [--num-per-class 1000] [--classes 0,1,2] [--split train] [--out results.json]
        [--ema-stats raw|standing]

For every requested class c the EMA generator (the raw one with --no-ema) makes N images of
class c, with the BatchNorm statistics every sampler of the run uses
(`gan_jax.core.sampling.sampling_batch_stats`: the run's `eval.ema_batch_stats`, or
--ema-stats; standing statistics are seeded with the run's seed), and the dataset's pinned LeNet classifier (gan_jax/metrics/lenet.py, the network
behind "FID (LeNet)") judges them:

* accuracy: the fraction the classifier assigns to class c (how well G obeys its label; the
  "classification accuracy" of Odena et al. 2017's AC-GAN evaluation, here with a fixed
  classifier that never saw generated images), per class and overall;
* FID (LeNet) per class: the Frechet distance (Heusel et al. 2017) between the LeNet
  features of G's class-c images and those of the real class-c images of the split, and
  overall: all generated images against the real images of the requested classes (the whole
  split when every class is requested). FID (LeNet) is comparable only with other FID
  (LeNet) numbers (same pinned weights), never with Inception FID.

The classifier's accuracy on the real images of each class is printed beside it, as the
ceiling a perfect generator could reach. The latents are those of `gan-jax eval` (z_i a
function of (seed, i) only) and the same N latents serve every class, so classes differ in
their label only. Prints a markdown table and writes JSON (default
<workdir>/eval_conditional_step<N>.json). Works for runs on 'mnist' and 'fashion_mnist' (the
datasets with a pinned LeNet); FID needs more than 128 images (the feature size) on both
sides, so a class with fewer gets no FID (null), not an error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Sequence

import numpy as np

FID_MIN = 129  # FID (LeNet) needs more samples than its 128 feature dimensions.


def _class_list(spec: str | None, num_classes: int) -> list[int]:
  if not spec:
    return list(range(num_classes))
  try:
    classes = [int(c) for c in spec.split(',') if c.strip()]
  except ValueError:
    raise ValueError(f'--classes={spec!r} must be comma-separated integers, e.g. 0,1,2.') from None
  bad = [c for c in classes if not 0 <= c < num_classes]
  if bad or not classes or len(set(classes)) != len(classes):
    raise ValueError(
      f'--classes={spec!r} must list distinct classes in 0..{num_classes - 1}, e.g. 0,1,2.'
    )
  return classes


def evaluate_conditional(
  workdir: str,
  *,
  num_per_class: int = 1000,
  classes: str | Sequence[int] | None = None,
  split: str = 'train',
  data_dir: str | None = None,
  step: int | None = None,
  use_ema: bool = True,
  seed: int = 0,
  batch_size: int = 500,
  ema_stats: str | None = None,
) -> dict[str, Any]:
  """Evaluates a conditional run per class (see the module docstring).

  Args:
    workdir: a run folder of a class-conditional config (`model.num_classes > 0`) on mnist
      or fashion_mnist.
    num_per_class: N generated images per class, >= 1.
    classes: the classes to evaluate (a comma-separated string or ints); default all.
    split: the real split for the reference features (TFDS slicing allowed).
    data_dir: TFDS data dir (default: the run's, else $TFDS_DATA_DIR).
    step: checkpoint step (default: the latest).
    use_ema: evaluate the EMA generator (when the run has one).
    seed: seed of the latents (`gan_jax.metrics.evaluate.latents`).
    batch_size: images per generator / classifier call.
    ema_stats: the EMA generator's BatchNorm statistics, 'raw' or 'standing'
      (`gan_jax.core.sampling.sampling_batch_stats`); None: the run's `eval.ema_batch_stats`.

  Returns:
    A JSON-ready dict: run facts (workdir, step, ema, ema_stats (the policy, None for the raw
    G), dataset, split, feature_net, seed, num_per_class) and 'classes': [{class, accuracy, fid_lenet (None with <= 128 images on
    a side), real_accuracy, real_count, generated}], and 'overall': {accuracy, fid_lenet,
    real_accuracy, real_count, generated}. Accuracies are fractions in [0, 1].

  Raises:
    ValueError: not a conditional run, a dataset without a pinned LeNet, bad classes or
      sizes, an unknown `ema_stats`.
    FileNotFoundError: no run or checkpoint in workdir.
  """
  import jax  # pylint: disable=g-import-not-at-top

  from gan_jax.config import ema_batch_stats  # pylint: disable=g-import-not-at-top
  from gan_jax.data import pipeline as data_lib  # pylint: disable=g-import-not-at-top
  from gan_jax.core import sampling  # pylint: disable=g-import-not-at-top
  from gan_jax.training.checkpoint import load_run  # pylint: disable=g-import-not-at-top
  from gan_jax.metrics import fid as fid_lib  # pylint: disable=g-import-not-at-top
  from gan_jax.metrics.evaluate import latents  # pylint: disable=g-import-not-at-top
  from gan_jax.metrics.lenet import WEIGHTS, load_lenet  # pylint: disable=g-import-not-at-top
  from gan_jax.metrics.stats import StreamingStats  # pylint: disable=g-import-not-at-top

  if num_per_class < 1 or batch_size < 1:
    raise ValueError(f'num_per_class={num_per_class} and batch_size={batch_size} must be >= 1.')
  config, gan, state = load_run(workdir, step)
  if not gan.conditional:
    raise ValueError(
      f'{workdir!r} is an unconditional run (model.num_classes=0); train a conditional config '
      'such as experiments/mnist_cdcgan.py.'
    )
  dataset = config.data.name
  if dataset not in WEIGHTS:
    raise ValueError(
      f'{workdir!r} trained on {dataset!r}, which has no pinned LeNet classifier; this script '
      f'evaluates runs on {", ".join(sorted(WEIGHTS))}.'
    )
  if not isinstance(classes, (list, tuple)):
    classes = _class_list(classes, gan.num_classes)
  classes = [int(c) for c in classes]
  net = load_lenet(dataset)
  use_ema = use_ema and config.train.ema_decay > 0
  ema_stats = ema_stats or ema_batch_stats(config)
  g_stats = sampling.sampling_batch_stats(
    gan, state, use_ema=use_ema, ema_stats=ema_stats, seed=config.seed
  )
  data_dir = data_dir or config.data.get('data_dir')

  # Real features and classifier predictions, per class.
  real = {c: StreamingStats() for c in classes}
  real_all = StreamingStats()
  real_hits = {c: 0 for c in classes}
  ds = data_lib.build_eval_dataset(
    dataset,
    split,
    data_dir=data_dir,
    image_size=config.data.image_size,
    channels=config.data.channels,
    batch_size=batch_size,
  )
  for batch in ds.as_numpy_iterator():
    labels = batch['label']
    keep = np.isin(labels, classes)
    if not keep.any():
      continue
    features, logits = jax.device_get(net.apply(batch['image'][keep]))
    labels, pred = labels[keep], np.argmax(logits, axis=-1)
    real_all.update(features)
    for c in classes:
      rows = labels == c
      if rows.any():
        real[c].update(features[rows])
        real_hits[c] += int(np.sum(pred[rows] == c))

  # Generated images of each class: the same latents for every class.
  params = state.ema_params if use_ema else state.g_params
  generate = jax.jit(lambda p, s, z, y: gan.generate(p, s, z, y, train=False)[0])
  gen_all = StreamingStats()
  rows_out = []
  total_hits = 0
  for c in classes:
    stats, hits = StreamingStats(), 0
    for lo in range(0, num_per_class, batch_size):
      n = min(batch_size, num_per_class - lo)
      z = latents(seed, lo, batch_size, gan.latent_dim)  # full batches: one compile
      y = sampling.per_class_labels(gan.num_classes, batch_size, [c])
      images = generate(params, g_stats, z, y)[:n]
      features, logits = jax.device_get(net.apply(images))
      stats.update(features)
      hits += int(np.sum(np.argmax(logits, axis=-1) == c))
    gen_all.merge(stats)
    total_hits += hits
    fid = None
    if stats.count >= FID_MIN and real[c].count >= FID_MIN:
      fid = fid_lib.fid_from_stats(stats.finalize(), real[c].finalize())
    rows_out.append(
      {
        'class': c,
        'accuracy': hits / num_per_class,
        'fid_lenet': fid,
        'real_accuracy': real_hits[c] / real[c].count if real[c].count else None,
        'real_count': real[c].count,
        'generated': num_per_class,
      }
    )
  real_count = real_all.count
  overall_fid = None
  if gen_all.count >= FID_MIN and real_count >= FID_MIN:
    overall_fid = fid_lib.fid_from_stats(gen_all.finalize(), real_all.finalize())
  return {
    'workdir': workdir,
    'step': int(state.step),
    'ema': use_ema,
    'ema_stats': ema_stats if use_ema else None,
    'dataset': dataset,
    'split': split,
    'feature_net': net.name,
    'feature_net_sha256': net.weights_sha256,
    'seed': seed,
    'num_per_class': num_per_class,
    'classes': rows_out,
    'overall': {
      'accuracy': total_hits / (num_per_class * len(classes)),
      'fid_lenet': overall_fid,
      'real_accuracy': sum(real_hits.values()) / real_count if real_count else None,
      'real_count': real_count,
      'generated': num_per_class * len(classes),
    },
  }


def format_table(results: dict[str, Any]) -> str:
  """The results as a markdown table: one row per class and an 'all' row."""

  def pct(x):
    return '-' if x is None else f'{100 * x:.1f}%'

  def num(x):
    return 'n/a' if x is None else f'{x:.3f}'

  g = 'raw G'
  if results['ema']:
    g = f'EMA G, {results.get("ema_stats") or "raw"} BatchNorm statistics'
  lines = [
    f'{results["dataset"]}, step {results["step"]} ({g}), '
    f'{results["num_per_class"]} samples per class, real split {results["split"]!r}',
    '',
    '| class | accuracy (LeNet) | FID (LeNet) | real accuracy | real images |',
    '|---|---|---|---|---|',
  ]
  for row in [*results['classes'], {**results['overall'], 'class': 'all'}]:
    lines.append(
      f'| {row["class"]} | {pct(row["accuracy"])} | {num(row["fid_lenet"])} | '
      f'{pct(row["real_accuracy"])} | {row["real_count"]} |'
    )
  return '\n'.join(lines)


def main(argv: Sequence[str] | None = None) -> int:
  """Command line entry point; returns the exit status (2 and one line for a usage error)."""
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--workdir', required=True, help='run folder of a conditional config')
  parser.add_argument('--num-per-class', type=int, default=1000, help='images per class')
  parser.add_argument('--classes', help='comma-separated classes (default: all)')
  parser.add_argument('--split', default='train', help='real split (default train)')
  parser.add_argument('--data-dir', help="TFDS data dir (default: the run's or $TFDS_DATA_DIR)")
  parser.add_argument('--step', type=int, help='checkpoint step (default: latest)')
  parser.add_argument('--no-ema', action='store_true', help='evaluate the raw, not the EMA, G')
  parser.add_argument(
    '--ema-stats',
    choices=('raw', 'standing'),
    default=None,
    help="BatchNorm statistics of the EMA G: 'raw' (the raw G's running averages) or "
    "'standing' (recomputed from the EMA weights, seeded with the run's seed, Brock et al. "
    "2019); default: the run's eval.ema_batch_stats",
  )
  parser.add_argument('--seed', type=int, default=0, help='seed of the latents')
  parser.add_argument('--batch-size', type=int, default=500, help='images per call')
  parser.add_argument('--out', help='JSON file (default <workdir>/eval_conditional_step<N>.json)')
  args = parser.parse_args(argv)
  try:
    results = evaluate_conditional(
      args.workdir,
      num_per_class=args.num_per_class,
      classes=args.classes,
      split=args.split,
      data_dir=args.data_dir,
      step=args.step,
      use_ema=not args.no_ema,
      seed=args.seed,
      batch_size=args.batch_size,
      ema_stats=args.ema_stats,
    )
  except (ValueError, FileNotFoundError) as e:
    print(f'eval_conditional: error: {str(e).splitlines()[0]}', file=sys.stderr)
    return 2
  print(format_table(results))
  out = args.out or os.path.join(args.workdir, f'eval_conditional_step{results["step"]}.json')
  with open(out, 'w') as f:
    json.dump(results, f, indent=2)
  print(f'wrote {out}')
  return 0


if __name__ == '__main__':
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  sys.exit(main())
