"""Trains pix2pix (Isola et al. 2017) on one paired task built from the TFDS data and scores
it against the task's trivial baseline on held-out images.

  TFDS_DATA_DIR=../shared/tfds python scripts/pix2pix_task.py --task inpaint --steps 300 \
      --out /tmp/p2p_inpaint

Writes DIR/metrics.json (PSNR/SSIM of the model and of the baseline on the test images, the
last training losses, wall time, the arguments), DIR/grid.png (rows of input | output |
target on the first test images), and the final state as a translation run folder
(`gan_jax.translation.run`: DIR/translation_run.json and an Orbax checkpoint in
DIR/checkpoints/<steps>/), which `gan-jax translate --workdir DIR` reads. Images of the TFDS
'train' split train, images of 'test' are held out (`gan_jax.translation.tasks`). The model is evaluated deterministically (no
dropout, BatchNorm running averages).

Your own paired images instead of a built-in task: --data pairs:/path, a folder (or .zip) of
A | B images side by side (pix2pix's format: width twice the height; A the input, B the
target), read by `gan_jax.data.translation_sources` at --image-size (default 64) and
--channels (default: the images' own); its last --num-test images (sorted paths) are held
out, and the baseline is the input copied. --direction b2a trains the other way, B -> A (B
the input, A the target). A folder with train/ and test/ subfolders (pix2pix's datasets) is
split by them instead (`gan_jax.data.translation_sources`):

  python scripts/pix2pix_task.py --data pairs:/data/facades --image-size 128 --num-test 50 \
      --steps 2000 --out /tmp/p2p_facades

Bad data (a missing folder, an image that is not A | B, images smaller than --image-size,
unpaired data) ends with one line `pix2pix_task.py: error: ...` and exit status 2.

--seeds S1 S2 ... trains the seeds in turn, each into its own run folder DIR/seed_<s>/ (the
files above); rerunning the command reads back the seeds finished with the same arguments and
trains the others. --results FILE.json (written after each seed) holds the command, per seed
metrics.json, the seeds still missing, and the mean +- std (ddof=1) over the seeds of PSNR,
SSIM (model and baseline) and training wall time; --grid FILE.png is a copy of the first
seed's grid.png.

--tiny shrinks everything for tests and notebooks (a few seconds of CPU): 3 steps of batch 8
on 64 training and 16 test images, widths 8; flags given explicitly still win.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


# --tiny: defaults of a few-second run (explicit flags override them).
TINY = dict(steps=3, num_train=64, num_test=16, batch_size=8, g_width=8, d_width=8, log_every=1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  pre = argparse.ArgumentParser(add_help=False)
  pre.add_argument('--data', default=None)
  own = pre.parse_known_args(argv)[0].data is not None
  p.add_argument('--task', required=not own, choices=['colorize', 'superres', 'inpaint'])
  p.add_argument(
    '--data', default=None, help="your own paired data instead of --task: 'pairs:/path'"
  )
  p.add_argument('--image-size', type=int, default=None, help='--data: image side (default 64)')
  p.add_argument('--channels', type=int, default=None, help="--data: 1 or 3 (default: the data's)")
  p.add_argument(
    '--direction', choices=['a2b', 'b2a'], default=None,
    help='--data: a2b (A -> B, default) or b2a (B the inputs, A the targets)',
  )  # fmt: skip
  p.add_argument(
    '--tiny', action='store_true', help='a few steps of a small model (tests, notebooks)'
  )
  pre = argparse.ArgumentParser(add_help=False)
  pre.add_argument('--tiny', action='store_true')
  tiny = pre.parse_known_args(argv)[0].tiny
  p.add_argument('--steps', type=int, required=not tiny, help='train steps (one D + one G update)')
  p.add_argument('--out', required=True, help='output folder')
  p.add_argument(
    '--dataset', default=None, help="inpaint: mnist (default), fashion_mnist, cifar10_jpeg"
  )
  p.add_argument('--data-dir', default=None, help='TFDS data dir (default $TFDS_DATA_DIR)')
  p.add_argument('--num-train', type=int, default=4096)
  p.add_argument('--num-test', type=int, default=512)
  p.add_argument('--batch-size', type=int, default=32)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument(
    '--seeds', type=int, nargs='+', default=None,
    help='train these seeds in turn, each in OUT/seed_<s>/; a seed already finished there '
    'with the same arguments is read back, not retrained (default: --seed, into OUT)',
  )  # fmt: skip
  p.add_argument(
    '--results', default=None, help='results JSON: per seed and mean +- std over the seeds'
  )
  p.add_argument('--grid', default=None, help="a copy of the first seed's grid.png")
  p.add_argument('--hole', type=int, default=None, help='inpaint: square side (default S // 2)')
  p.add_argument('--g-width', type=int, default=64)
  p.add_argument('--d-width', type=int, default=64)
  p.add_argument('--patch-layers', type=int, default=None)
  p.add_argument('--loss', default='non_saturating')
  p.add_argument('--l1-weight', type=float, default=100.0)
  p.add_argument('--lr', type=float, default=2e-4)
  p.add_argument('--log-every', type=int, default=50)
  if tiny:
    p.set_defaults(**TINY)
  args = p.parse_args(argv)
  if args.steps < 0 or args.batch_size < 1:
    p.error('--steps must be >= 0 and --batch-size >= 1')
  if own and args.task is not None:
    p.error('give --task (a built-in task) or --data (your own pairs), not both')
  if not own and (
    args.image_size is not None or args.channels is not None or args.direction is not None
  ):
    p.error('--image-size, --channels and --direction go with --data')
  return args


def build(args: argparse.Namespace):
  """The run's `PairedTask`: the built-in --task, or --data read at --image-size.

  Raises:
    SystemExit(2): bad --data, with one line on stderr.
  """
  from gan_jax.data.tfds_images import DatasetNotFoundError
  from gan_jax.errors import ConfigError
  from gan_jax.translation.tasks import build_source_task, build_task, reversed_pairs

  if args.data is None:
    return build_task(
      args.task,
      data_dir=args.data_dir,
      dataset=args.dataset,
      num_train=args.num_train,
      num_test=args.num_test,
      seed=args.seed,
      hole=args.hole,
    )
  try:
    task = build_source_task(
      args.data,
      kind='paired',
      image_size=64 if args.image_size is None else args.image_size,
      channels=args.channels,
      num_train=args.num_train,
      num_test=args.num_test,
      data_dir=args.data_dir,
    )
  except (ConfigError, DatasetNotFoundError) as e:
    print(f'pix2pix_task.py: error: {e}', file=sys.stderr)
    raise SystemExit(2) from None
  return reversed_pairs(task) if args.direction == 'b2a' else task


def train(args: argparse.Namespace) -> dict:
  """Trains and scores one seed (args.seed) into args.out; returns what metrics.json holds."""
  import jax

  from gan_jax.core.sampling import save_grid
  from gan_jax.translation import (
    create_pix2pix,
    image_quality,
    make_train_step,
    translate_batches,
  )
  from gan_jax.translation.run import save_translation_run
  from gan_jax.translation.tasks import describe

  t0 = time.time()
  task = build(args)
  t_data = time.time() - t0
  task_record = describe(task)
  if args.data is not None:
    task_record['direction'] = args.direction or 'a2b'  # b2a: B the inputs, A the targets
  model_args = dict(
    image_size=task.image_size,
    in_channels=task.in_channels,
    out_channels=task.out_channels,
    seed=args.seed,
    g_width=args.g_width,
    g_max_width=8 * args.g_width,
    d_width=args.d_width,
    d_max_width=8 * args.d_width,
    patch_layers=args.patch_layers,
    loss=args.loss,
    l1_weight=args.l1_weight,
    lr=args.lr,
  )
  model, state = create_pix2pix(**model_args)
  step_fn = make_train_step(model)
  rng = np.random.default_rng([args.seed, 2])
  n = task.train_inputs.shape[0]
  bs = min(args.batch_size, n)
  history = []
  t1 = time.time()
  metrics = {}
  for k in range(args.steps):
    idx = rng.choice(n, size=bs, replace=False)
    state, metrics = step_fn(state, task.train_inputs[idx], task.train_targets[idx])
    if (k + 1) % args.log_every == 0 or k + 1 == args.steps:
      row = {'step': k + 1, **{key: float(v) for key, v in metrics.items()}}
      history.append(row)
      print(json.dumps(row), flush=True)
  jax.block_until_ready(state)
  t_train = time.time() - t1
  outputs = translate_batches(model, state, task.test_inputs)
  result = {
    'smoke_run_not_a_result': True,
    'task': task_record,
    'args': vars(args),
    'steps': args.steps,
    'model': image_quality(outputs, task.test_targets),
    'baseline': {'name': task.baseline, **image_quality(task.test_baseline, task.test_targets)},
    'history': history,
    'wall_s': {
      'data': round(t_data, 1),
      'train': round(t_train, 1),
      'total': round(time.time() - t0, 1),
    },
    'backend': jax.default_backend(),
  }
  os.makedirs(args.out, exist_ok=True)
  save_translation_run(
    args.out, 'pix2pix', task_record, model_args, state, seed=args.seed
  )  # for `gan-jax translate`
  with open(os.path.join(args.out, 'metrics.json'), 'w') as f:
    json.dump(result, f, indent=2)
  k = min(8, outputs.shape[0])
  rows = np.stack(
    [task.display_inputs(task.test_inputs[:k]), outputs[:k], task.test_targets[:k]], axis=1
  ).reshape((3 * k,) + outputs.shape[1:])
  save_grid(os.path.join(args.out, 'grid.png'), rows, ncol=3, scale=4)
  print(
    json.dumps(
      {'model': result['model'], 'baseline': result['baseline'], 'wall_s': result['wall_s']}
    ),
    flush=True,
  )
  return result


# Arguments that do not change a seed's training (a finished seed with other values is reused).
NOT_TRAINING = ('seed', 'seeds', 'out', 'results', 'grid', 'log_every')


def finished_seed(folder: str, args: argparse.Namespace) -> dict | None:
  """folder/metrics.json if it holds a run of these training arguments, else None."""
  path = os.path.join(folder, 'metrics.json')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    done = json.load(f)
  same = all(done['args'].get(k) == v for k, v in vars(args).items() if k not in NOT_TRAINING)
  return done if same else None


def summarize(runs: list[dict]) -> dict:
  """Mean and standard deviation (ddof=1 when more than one seed) of PSNR/SSIM and wall time."""
  vals = {
    'psnr': [r['model']['psnr'] for r in runs],
    'ssim': [r['model']['ssim'] for r in runs],
    'baseline_psnr': [r['baseline']['psnr'] for r in runs],
    'baseline_ssim': [r['baseline']['ssim'] for r in runs],
    'train_wall_s': [r['wall_s']['train'] for r in runs],
  }
  return {
    k: {'mean': float(np.mean(v)), 'std': float(np.std(v, ddof=1)) if len(v) > 1 else 0.0}
    for k, v in vals.items()
  }


def write_results(
  args: argparse.Namespace, runs: list[dict], seeds: list[int], command: str
) -> dict:
  """Writes --results (the seeds finished so far, the rest listed as missing) and --grid."""
  import shutil

  result = {
    'task': runs[0]['task'],
    'method': 'pix2pix (Isola et al. 2017): U-Net generator, PatchGAN, adversarial + L1',
    'command': command,
    'args': {k: v for k, v in vars(args).items() if k not in ('seed', 'results', 'grid')},
    'steps': args.steps,
    'baseline': runs[0]['baseline']['name'],
    'seeds_done': [r['args']['seed'] for r in runs],
    'seeds_missing': [s for s in seeds if s not in [r['args']['seed'] for r in runs]],
    'summary': summarize(runs),
    'runs': [{k: v for k, v in r.items() if k != 'smoke_run_not_a_result'} for r in runs],
  }
  if args.results:
    os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
    with open(args.results + '.tmp', 'w') as f:
      json.dump(result, f, indent=2)
    os.replace(args.results + '.tmp', args.results)
  if args.grid:
    first = os.path.join(args.out, f'seed_{seeds[0]}') if args.seeds else args.out
    if os.path.exists(os.path.join(first, 'grid.png')):
      os.makedirs(os.path.dirname(os.path.abspath(args.grid)), exist_ok=True)
      shutil.copyfile(os.path.join(first, 'grid.png'), args.grid)
  return result


def main(argv: list[str] | None = None) -> dict:
  args = parse_args(argv)
  command = 'python scripts/pix2pix_task.py ' + ' '.join(sys.argv[1:] if argv is None else argv)
  if args.seeds is None:
    result = train(args)
    if args.results or args.grid:
      write_results(args, [result], [args.seed], command)
    return result
  out, runs = args.out, []
  for seed in args.seeds:
    folder = os.path.join(out, f'seed_{seed}')
    done = finished_seed(folder, argparse.Namespace(**{**vars(args), 'seed': seed}))
    if done is None:
      done = train(argparse.Namespace(**{**vars(args), 'seed': seed, 'out': folder}))
    else:
      print(f'seed {seed}: finished before in {folder}, read back', flush=True)
    runs.append(done)  # results rewritten after each seed, so a partial run counts
    result = write_results(args, runs, args.seeds, command)
  print(json.dumps({'summary': result['summary']}), flush=True)
  return result


if __name__ == '__main__':
  sys.exit(0 if main() else 1)
