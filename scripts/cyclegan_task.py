"""Trains CycleGAN (Zhu et al. 2017) on the unpaired Fashion-MNIST sneakers <-> ankle boots task
for some seeds and scores it on held-out images against trivial baselines.

  TFDS_DATA_DIR=../shared/tfds python scripts/cyclegan_task.py --steps 1000 --seeds 0 1 2 \
      --out /tmp/cyclegan_sb

Each seed trains in OUT/seed_<s>/ with Orbax checkpoints every --checkpoint-every steps
(`gan_jax.training.checkpoint.Checkpointer`); rerunning the same command resumes every seed from its
latest checkpoint and, because the state holds the histories and the RNG and the batches of
step k depend only on (seed, k), ends with the same state as an uninterrupted run. A rerun
with other model or training arguments for the same OUT is refused. Each seed folder is a
translation run folder (`gan_jax.translation.run`: translation_run.json beside checkpoints/),
which `gan-jax translate --workdir OUT/seed_<s>` reads.

Writes --results (default OUT/results.json: per seed and averaged over seeds, for G: sneaker
-> boot and F: boot -> sneaker, the translation accuracy, cycle-reconstruction L1 and FID
(LeNet), each beside its baseline (`gan_jax.translation.metrics`), the last training losses,
wall times, the arguments) and --grid (default OUT/grid.png: rows of input | translation |
cycle reconstruction, first the held-out sneakers, then the boots, of the first seed).

Your own unpaired images instead of the built-in task: --data unpaired:/path/A,/path/B (two
folders or .zips, one per domain; the last --num-test images of each, by sorted path, are
held out) or --data cycle_gan/<name> (TFDS's CycleGAN datasets, e.g. horse2zebra, from a
prepared build in --data-dir; --download fetches it, with internet), read by
`gan_jax.data.translation_sources` at --image-size (default 64) and --channels (default: the
images' own; domains that differ are an error). Without a domain classifier only the
cycle-reconstruction L1 (and the change |G(x) - x|) is scored; accuracy and FID are null:

  python scripts/cyclegan_task.py --data unpaired:/data/horses,/data/zebras --image-size 64 \
      --num-test 100 --steps 5000 --out /tmp/cyclegan_h2z

Bad data (a missing folder, domains of different channels, images smaller than
--image-size, an unknown cycle_gan name, paired data) ends with one line
`cyclegan_task.py: error: ...` and exit status 2.

--tiny shrinks everything for tests and notebooks (seconds of CPU): 2 steps of batch 4 on 16
training and 8 test images per domain, generators of width 4 with 1 residual block,
PatchGANs of width 4, histories of 4 images; flags given explicitly still win.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

# The arguments that define a seed's training; a resumed run must keep them.
TRAINING_ARGS = (
  'task',
  'data',
  'image_size',
  'channels',
  'steps',
  'num_train',
  'batch_size',
  'width',
  'blocks',
  'd_width',
  'patch_layers',
  'history',
  'cycle_weight',
  'identity_ratio',
  'lr',
  'hold_steps',
)


# --tiny: defaults of a run of seconds (explicit flags override them).
TINY = dict(
  steps=2, num_train=16, num_test=8, batch_size=4, width=4, blocks=1, d_width=4, history=4,
  log_every=1,
)  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--task', default=None, choices=['sneakers_boots'], help='default sneakers_boots')
  p.add_argument(
    '--data', default=None,
    help="your own unpaired data instead of --task: 'unpaired:/a,/b' or 'cycle_gan/<name>'",
  )  # fmt: skip
  p.add_argument('--image-size', type=int, default=None, help='--data: image side (default 64)')
  p.add_argument('--channels', type=int, default=None, help="--data: 1 or 3 (default: the data's)")
  p.add_argument('--download', action='store_true', help='--data cycle_gan/*: let TFDS download it')
  p.add_argument(
    '--tiny', action='store_true', help='a few steps of a small model (tests, notebooks)'
  )
  pre = argparse.ArgumentParser(add_help=False)
  pre.add_argument('--tiny', action='store_true')
  tiny = pre.parse_known_args(argv)[0].tiny
  p.add_argument('--steps', type=int, required=not tiny, help='train steps (one G + one D update)')
  p.add_argument('--seeds', type=int, nargs='+', default=[0])
  p.add_argument('--out', required=True, help='run folder (one seed_<s> folder per seed)')
  p.add_argument('--results', default=None, help='results JSON (default OUT/results.json)')
  p.add_argument('--grid', default=None, help='picture (default OUT/grid.png)')
  p.add_argument('--data-dir', default=None, help='TFDS data dir (default $TFDS_DATA_DIR)')
  p.add_argument('--num-train', type=int, default=2048, help='training images per domain')
  p.add_argument('--num-test', type=int, default=1000, help='held-out images per domain')
  p.add_argument('--batch-size', type=int, default=16)
  p.add_argument('--width', type=int, default=16, help="generators' first-layer channels")
  p.add_argument('--blocks', type=int, default=3, help="generators' residual blocks")
  p.add_argument('--d-width', type=int, default=32)
  p.add_argument('--patch-layers', type=int, default=1, help='PatchGAN stride-2 layers')
  p.add_argument('--history', type=int, default=50, help='images per discriminator history')
  p.add_argument('--cycle-weight', type=float, default=10.0)
  p.add_argument('--identity-ratio', type=float, default=0.5)
  p.add_argument('--lr', type=float, default=2e-4)
  p.add_argument('--hold-steps', type=int, default=None, help='default: half of --steps')
  p.add_argument('--checkpoint-every', type=int, default=200)
  p.add_argument('--log-every', type=int, default=50)
  if tiny:
    p.set_defaults(**TINY)
  args = p.parse_args(argv)
  if args.steps < 1 or args.batch_size < 1 or args.checkpoint_every < 1 or args.log_every < 1:
    p.error('--steps, --batch-size, --checkpoint-every and --log-every must be >= 1')
  if args.hold_steps is None:
    args.hold_steps = args.steps // 2
  if not 0 <= args.hold_steps < args.steps:
    p.error(f'--hold-steps must be in [0, {args.steps - 1}]')
  if args.data is None:
    if args.image_size is not None or args.channels is not None or args.download:
      p.error('--image-size, --channels and --download go with --data')
    args.task = args.task or 'sneakers_boots'
  elif args.task is not None:
    p.error('give --task (the built-in task) or --data (your own domains), not both')
  return args


def build(args: argparse.Namespace):
  """The run's `UnpairedTask`: the built-in --task, or --data read at --image-size.

  Raises:
    SystemExit(2): bad --data, with one line on stderr.
  """
  from gan_jax.data.tfds_images import DatasetNotFoundError
  from gan_jax.errors import ConfigError
  from gan_jax.models.resnet_generator import check_resnet_size
  from gan_jax.translation.tasks import build_source_task, build_unpaired_task

  if args.data is None:
    return build_unpaired_task(
      args.task, data_dir=args.data_dir, num_train=args.num_train, num_test=args.num_test
    )
  try:
    task = build_source_task(
      args.data,
      kind='unpaired',
      image_size=64 if args.image_size is None else args.image_size,
      channels=args.channels,
      num_train=args.num_train,
      num_test=args.num_test,
      data_dir=args.data_dir,
      download=args.download,
    )
    check_resnet_size(task.image_size)
  except (ConfigError, DatasetNotFoundError, ValueError) as e:
    print(f'cyclegan_task.py: error: {e}', file=sys.stderr)
    raise SystemExit(2) from None
  return task


def check_same_training(folder: str, args: argparse.Namespace) -> None:
  """Writes folder/args.json, or refuses (one line) a rerun that changes TRAINING_ARGS."""
  want = {k: getattr(args, k) for k in TRAINING_ARGS}
  path = os.path.join(folder, 'args.json')
  if os.path.exists(path):
    with open(path) as f:
      have = json.load(f)
    changed = sorted(k for k in want if have.get(k) != want[k])
    if changed:
      raise SystemExit(
        f'error: {folder} was trained with other arguments ({", ".join(changed)}: '
        f'{[have.get(k) for k in changed]}); use another --out or the same arguments.'
      )
  os.makedirs(folder, exist_ok=True)
  with open(path, 'w') as f:
    json.dump(want, f, indent=2)


def batch_indices(seed: int, step: int, stream: int, n: int, size: int) -> np.ndarray:
  """The training images of domain `stream` (0: A, 1: B) in step `step`: a function of
  (seed, step) only, so that a resumed run draws the same batches."""
  return np.random.default_rng([seed, 2 + stream, step]).choice(n, size=size, replace=False)


def read_log(path: str) -> list[dict]:
  """The logged rows of metrics.jsonl, the last one of each step (a resumed run relogs)."""
  rows = {}
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        row = json.loads(line)
        rows[row['step']] = row
  return [rows[k] for k in sorted(rows)]


def train_seed(args: argparse.Namespace, task, seed: int) -> dict:
  """Trains (or resumes) one seed and scores it on the held-out images."""
  import jax

  from gan_jax.training.checkpoint import Checkpointer
  from gan_jax.metrics.lenet import load_lenet
  from gan_jax.core.sharding import make_mesh, replicate
  from gan_jax.translation.cyclegan import create_cyclegan, make_train_step, translate_batches
  from gan_jax.translation.metrics import direction_scores
  from gan_jax.translation.run import write_run_record
  from gan_jax.translation.tasks import describe_unpaired

  folder = os.path.join(args.out, f'seed_{seed}')
  check_same_training(folder, args)
  model_args = dict(
    image_size=task.image_size,
    a_channels=task.channels,
    seed=seed,
    width=args.width,
    num_blocks=args.blocks,
    d_width=args.d_width,
    patch_layers=args.patch_layers,
    history_size=args.history,
    cycle_weight=args.cycle_weight,
    identity_ratio=args.identity_ratio,
    lr=args.lr,
    hold_steps=args.hold_steps,
    decay_steps=args.steps - args.hold_steps,
  )
  model, state = create_cyclegan(**model_args)
  # For `gan-jax translate --workdir OUT/seed_<s>` (gan_jax.translation.run).
  write_run_record(folder, 'cyclegan', describe_unpaired(task), model_args, seed=seed)
  mesh = make_mesh()
  state = replicate(state, mesh)
  t0 = time.time()
  with Checkpointer(folder, keep=2) as ckpt:
    resumed_from = ckpt.latest_step()
    if resumed_from is not None:
      state = ckpt.restore(state)
    step_fn = make_train_step(model, mesh=mesh)
    n_a, n_b = task.train_a.shape[0], task.train_b.shape[0]
    bs = min(args.batch_size, n_a, n_b)
    log_path = os.path.join(folder, 'metrics.jsonl')
    for k in range(int(state.step), args.steps):
      ia, ib = batch_indices(seed, k, 0, n_a, bs), batch_indices(seed, k, 1, n_b, bs)
      state, metrics = step_fn(state, task.train_a[ia], task.train_b[ib])
      if (k + 1) % args.log_every == 0 or k + 1 == args.steps:
        row = {'step': k + 1, **{key: round(float(v), 6) for key, v in metrics.items()}}
        with open(log_path, 'a') as f:
          f.write(json.dumps(row) + '\n')
        print(json.dumps({'seed': seed, **row}), flush=True)
      if (k + 1) % args.checkpoint_every == 0 or k + 1 == args.steps:
        ckpt.save(state)
    jax.block_until_ready(state)
  t_train = time.time() - t0
  # The Fashion-MNIST LeNet reads the built-in task's classes; own data has no classifier.
  net = load_lenet('fashion_mnist') if task.class_a is not None else None
  outs = {}
  for direction, inputs in (('a2b', task.test_a), ('b2a', task.test_b)):
    outputs = translate_batches(model, state, inputs, direction)
    back = 'b2a' if direction == 'a2b' else 'a2b'
    outs[direction] = (inputs, outputs, translate_batches(model, state, outputs, back))
  scores = {
    'a2b': direction_scores(
      net, *outs['a2b'], task.test_b, task.class_b, task.train_a.mean(axis=0)
    ),
    'b2a': direction_scores(
      net, *outs['b2a'], task.test_a, task.class_a, task.train_b.mean(axis=0)
    ),
  }
  return {
    'seed': seed,
    'scores': scores,
    'history': read_log(os.path.join(folder, 'metrics.jsonl')),
    'resumed_from_step': resumed_from,
    'train_wall_s_this_invocation': round(t_train, 1),
    'images': outs,
  }


def summarize(runs: list[dict]) -> dict:
  """Mean and standard deviation (ddof=1 when more than one seed) of every score."""
  out = {}
  for direction in ('a2b', 'b2a'):
    out[direction] = {}
    for key in runs[0]['scores'][direction]:
      vals = [r['scores'][direction][key] for r in runs]
      if any(v is None for v in vals):
        out[direction][key] = None
        continue
      out[direction][key] = {
        'mean': float(np.mean(vals)),
        'std': float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0,
      }
  return out


def save_picture(path: str, images: dict, k: int = 6) -> None:
  """Rows of input | translation | cycle: k held-out sneakers, then k boots."""
  from gan_jax.core.sampling import save_grid

  rows = []
  for direction in ('a2b', 'b2a'):
    inputs, outputs, cycled = (x[:k] for x in images[direction])
    rows.append(np.stack([inputs, outputs, cycled], axis=1).reshape((-1,) + inputs.shape[1:]))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  save_grid(path, np.concatenate(rows), ncol=3, scale=3)


def main(argv: list[str] | None = None) -> dict:
  args = parse_args(argv)
  import jax

  from gan_jax.translation.tasks import describe_unpaired

  t0 = time.time()
  task = build(args)
  t_data = time.time() - t0
  runs = [train_seed(args, task, seed) for seed in args.seeds]
  grid = args.grid or os.path.join(args.out, 'grid.png')
  save_picture(grid, runs[0]['images'])
  for run in runs:
    del run['images']
  result = {
    'task': describe_unpaired(task),
    'method': 'CycleGAN (Zhu et al. 2017): ResNet generators, PatchGAN, LSGAN, history 50',
    'args': {k: v for k, v in vars(args).items() if k not in ('out', 'results', 'grid')},
    'directions': {
      'a2b': f'G: {task.names[0]} -> {task.names[1]}',
      'b2a': f'F: {task.names[1]} -> {task.names[0]}',
    },
    'summary': summarize(runs),
    'runs': runs,
    'wall_s': {'data': round(t_data, 1), 'total': round(time.time() - t0, 1)},
    'backend': jax.default_backend(),
    'devices': jax.device_count(),
  }
  path = args.results or os.path.join(args.out, 'results.json')
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'w') as f:
    json.dump(result, f, indent=2)
  print(json.dumps({'summary': result['summary'], 'wall_s': result['wall_s']}), flush=True)
  return result


if __name__ == '__main__':
  sys.exit(0 if main() else 1)
