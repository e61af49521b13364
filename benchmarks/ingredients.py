"""The cost of each ingredient: images/s of the train step with GP, R1, SN, DiffAugment, ...
vs the plain step.

Every case is the DCGAN-28 of `experiments/fashion_mnist_dcgan.py` (28x28x1, widths 64,
latent 100, Adam, generator EMA 0.999) with the non-saturating loss and n_critic = 1, and
changes exactly one config field from that plain step:

  case            sets                           ingredient
  plain           nothing                        the reference
  gp              train.gp_weight=10             WGAN-GP penalty, Gulrajani et al. 2017
  r1              train.r1_weight=10             R1 penalty on real, Mescheder et al. 2018
  r2              train.r2_weight=10             R2 penalty on fakes, Mescheder et al. 2018
  sn              model.spectral_norm=True       spectral norm in D, Miyato et al. 2018
  diffaugment     train.diffaugment=             DiffAugment of D's inputs, Zhao et al. 2020
                    'color,translation,cutout'
  instance_noise  train.instance_noise=0.1       Gaussian noise on D's inputs (sigma 0.1)
  pack2           model.pack=2                   PacGAN2 packing, Lin et al. 2018
  minibatch_std   model.minibatch_std=4          minibatch stddev, Karras et al. 2018 (groups of 4)
  ema_off         train.ema_decay=0              no generator EMA (plain has 0.999)
  n_critic5       train.n_critic=5               5 D updates per G update

The loss stays non-saturating in every case (`--loss` changes it for all), so that only the
ingredient changes, although the gradient penalty is usually paired with the Wasserstein loss
(Gulrajani et al. 2017): the penalty's cost (the gradient of an input gradient of D, a second
backward pass) does not depend on the loss. Also note:
  * `sn` replaces the BatchNorm of D (gan_jax/models/dcgan.py), so it measures SN minus BN;
  * `pack2` makes D judge B/2 packs of 2 images stacked on channels: D's batch halves;
  * `ema_off` removes a cost the plain step has (one elementwise update of G's parameters):
    expect a ratio of 1 or slightly above;
  * `n_critic5` makes one step 5 D updates (on 5 real batches, [5, B, H, W, C]) and one G
    update. `img/s` is B x steps/s for every case, i.e. generator updates (what
    `train.steps` counts) times the batch, so the `vs plain` column is the speed of a run of
    a given number of steps. `data img/s` = n_critic x B x steps/s is the real images
    consumed, which the input pipeline must supply; it equals `img/s` when n_critic = 1.

Method (as `benchmarks/throughput.py`, whose helpers it imports): one fixed random batch
already on the devices, so only the jitted step `jit_train_step(make_train_step(...),
make_mesh())` is measured, data-parallel over every device JAX sees. Every case is compiled
first (lower + XLA compile timed separately), then run `--warmup` untimed steps. Timing is
interleaved, which keeps a noisy shared machine fair to every case: `--rounds` rounds, each
timing `--steps` steps of every case in turn (the order rotated by one case per round), each
step ending with `jax.block_until_ready` on its metrics. Reported per case and batch size:

  * median images/s over all rounds x steps timed steps, and p10-p90; and the overall
    images/s (all images over all the timed steps' time), the figure to read for a config
    with `train.penalty_interval` > 1, whose median is that of the unpenalised steps;
  * `vs plain`: the median over rounds of (the case's median images/s in that round) /
    (plain's in that round);
  * FLOPs per step from XLA's cost analysis of the compiled step (x device count, as in
    throughput.py), and its ratio to plain's.

`plain` is always measured, whether listed in --cases or not. `--config` picks another
experiment file or variant (e.g. `:tiny`, width 8, for tests); its batch size, loss and
n_critic are replaced as above, and cases its model does not support fail in `validate`.

Run from the repository root (venv active):

    python benchmarks/ingredients.py                       # all cases, batch 64, 5 x 20 steps
    python benchmarks/ingredients.py --cases plain,gp,r1 --batch-sizes 64,256 --rounds 3
    python benchmarks/ingredients.py --config experiments/fashion_mnist_dcgan.py:tiny \
        --rounds 1 --steps 3                               # seconds: the width-8 model

Output: a markdown table on stdout and a JSON file (default
`benchmarks/results/ingredients_<platform>.json`) with every number and step time, the JAX
version, device kind and count, the date and the command.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(HERE) not in sys.path:  # `throughput` is a sibling script, not a package module.
  sys.path.insert(0, str(HERE))
try:
  import gan_jax  # noqa: F401
except ImportError:  # Run from a checkout without `pip install -e .`.
  sys.path.insert(0, str(REPO))

import jax  # noqa: E402
from bench_util import package_version  # noqa: E402
from step_timing import timed_steps, warm_up  # noqa: E402
from throughput import _csv, _fmt, flops_of  # noqa: E402

from gan_jax.config import validate  # noqa: E402
from gan_jax.core.losses import LOSSES, get_loss  # noqa: E402
from gan_jax.cli.main import load_config_file  # noqa: E402
from gan_jax.core.sharding import batch_sharding, check_batch_size, make_mesh, replicate  # noqa: E402
from gan_jax.core.state import create_state  # noqa: E402
from gan_jax.core.train_step import Stabilizers, jit_train_step, make_train_step  # noqa: E402

DEFAULT_CONFIG = 'experiments/fashion_mnist_dcgan.py'

# Case name -> the config fields it sets on top of the plain step ('section.field': value).
CASES: dict[str, dict[str, Any]] = {
  'plain': {},
  'gp': {'train.gp_weight': 10.0},
  'r1': {'train.r1_weight': 10.0},
  'r2': {'train.r2_weight': 10.0},
  'sn': {'model.spectral_norm': True},
  'diffaugment': {'train.diffaugment': 'color,translation,cutout'},
  'instance_noise': {'train.instance_noise': 0.1},
  'pack2': {'model.pack': 2},
  'minibatch_std': {'model.minibatch_std': 4},
  'ema_off': {'train.ema_decay': 0.0},
  'n_critic5': {'train.n_critic': 5},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  doc = __doc__.split('\n\n', 1)
  parser = argparse.ArgumentParser(
    description=doc[0].replace('\n', ' '),
    formatter_class=argparse.RawDescriptionHelpFormatter,
    epilog=doc[1],
  )
  parser.add_argument(
    '--cases',
    type=_csv(str),
    default=list(CASES),
    help=f'Comma-separated cases from {list(CASES)} (default all); plain is always added.',
  )
  parser.add_argument(
    '--batch-sizes',
    type=_csv(int),
    default=[64],
    help='Comma-separated global batch sizes (default 64); each a multiple of the device count '
    '(and of 2 for pack2).',
  )
  parser.add_argument(
    '--rounds', type=int, default=5, help='Interleaved rounds over all cases (default 5).'
  )
  parser.add_argument(
    '--steps', type=int, default=20, help='Timed steps of each case per round (default 20).'
  )
  parser.add_argument(
    '--warmup',
    type=int,
    default=2,
    help='Untimed steps per case after compiling, >= 1; the first is reported as the '
    'first execution (default 2).',
  )
  parser.add_argument(
    '--config',
    default=DEFAULT_CONFIG,
    help=f'Experiment config file, optionally with a variant, e.g. {DEFAULT_CONFIG}:tiny '
    f'(width-8 model, for tests). Relative paths are taken from the repository root '
    f'(default {DEFAULT_CONFIG}). Its train.batch_size is replaced by --batch-sizes.',
  )
  parser.add_argument(
    '--loss',
    default='non_saturating',
    help=f'train.loss of every case, from {sorted(LOSSES)} (default non_saturating).',
  )
  parser.add_argument('--seed', type=int, default=0, help='config.seed and the batch seed.')
  parser.add_argument(
    '--json',
    default=None,
    help='Output JSON path (default benchmarks/results/ingredients_<platform>.json in the '
    'repository).',
  )
  args = parser.parse_args(argv)
  unknown = [c for c in args.cases if c not in CASES]
  if unknown or not args.cases:
    parser.error(f'--cases: unknown {unknown}; choose from {list(CASES)}.')
  args.cases = ['plain'] + [c for c in dict.fromkeys(args.cases) if c != 'plain']
  if not args.batch_sizes or min(args.batch_sizes) <= 0:
    parser.error('--batch-sizes must be positive integers, e.g. 64,256.')
  for flag in ('rounds', 'steps', 'warmup'):
    if getattr(args, flag) < 1:
      parser.error(f'--{flag} must be >= 1.')
  if args.loss not in LOSSES:
    parser.error(f'--loss={args.loss!r}: choose from {sorted(LOSSES)}.')
  path, sep, variant = args.config.partition(':')
  if not Path(path).is_absolute():
    path = str(REPO / path)
  args.config_spec = path + sep + variant
  return args


def make_config(args: argparse.Namespace, case: str, batch_size: int):
  """The experiment config with --loss, n_critic 1, the batch size and the case's fields."""
  config = load_config_file(args.config_spec)
  config.seed = args.seed
  config.train.batch_size = batch_size
  config.train.loss = args.loss
  config.train.n_critic = 1
  for field, value in CASES[case].items():
    section, key = field.split('.')
    config[section][key] = value
  validate(config)
  return config


def fixed_batch(mesh, n_critic: int, batch_size: int, image_shape: tuple[int, ...], seed: int):
  """{'image': float32 [n_critic, B, H, W, C] uniform in [-1, 1]} with batch_sharding(mesh).

  throughput.fixed_batch with a leading n_critic axis instead of 1 (copied, since that one
  fixes it to 1).
  """
  shape = (n_critic, batch_size, *image_shape)
  host = np.random.default_rng(seed).uniform(-1.0, 1.0, shape).astype(np.float32)
  image = jax.make_array_from_callback(host.shape, batch_sharding(mesh), lambda idx: host[idx])
  return {'image': jax.block_until_ready(image)}


class Case:
  """One (case, batch size): its compiled step, its state and its timings."""

  def __init__(self, name: str, batch_size: int, args: argparse.Namespace, mesh):
    self.name, self.batch_size = name, batch_size
    config = make_config(args, name, batch_size)
    check_batch_size(batch_size, mesh)
    self.n_critic = config.train.n_critic
    self.ema_decay = config.train.ema_decay
    gan, state = create_state(config)
    step = make_train_step(
      gan,
      get_loss(config.train.loss),
      n_critic=config.train.n_critic,
      ema_decay=config.train.ema_decay,
      mesh=mesh,
      stabilizers=Stabilizers.from_config(config.train),
    )
    jitted = jit_train_step(step, mesh)
    self.state = replicate(state, mesh)
    self.batch = fixed_batch(mesh, self.n_critic, batch_size, gan.image_shape, args.seed)
    self.image_shape = list(gan.image_shape)
    self.num_params = sum(
      int(np.prod(x.shape)) for x in jax.tree.leaves((state.g_params, state.d_params))
    )
    t0 = time.perf_counter()
    lowered = jitted.lower(self.state, self.batch)
    t1 = time.perf_counter()
    # Called directly from now on: calling `jitted` would compile a second time.
    self.compiled = lowered.compile()
    t2 = time.perf_counter()
    self.lower_s, self.compile_s = t1 - t0, t2 - t1
    flops = flops_of(self.compiled.cost_analysis())
    # Under SPMD the compiled module is one device's program: its FLOPs are per device.
    self.flops = flops * mesh.devices.size if flops is not None else None
    self.times: list[list[float]] = []  # Per round, the step times in seconds.

  def warmup(self, n: int) -> None:
    self.state, _, self.first_step_s = warm_up(self.compiled, self.state, self.batch, n)

  def run(self, steps: int) -> None:
    self.state, self.metrics, times = timed_steps(self.compiled, self.state, self.batch, steps)
    self.times.append(times)


def summarize(case: Case, plain: Case) -> dict[str, Any]:
  b = case.batch_size
  times = np.asarray(case.times)  # [rounds, steps]
  img_s = b / times
  round_img_s = np.median(img_s, axis=1)
  round_ratio = round_img_s / np.median(b / np.asarray(plain.times), axis=1)
  median_s = float(np.median(times))
  flops_ratio = case.flops / plain.flops if case.flops and plain.flops else None
  return {
    'case': case.name,
    'sets': CASES[case.name],
    'batch_size': b,
    'n_critic': case.n_critic,
    'ema_decay': case.ema_decay,
    'image_shape': case.image_shape,
    'num_params': case.num_params,
    'lower_s': case.lower_s,
    'compile_s': case.compile_s,
    'first_step_s': case.first_step_s,
    'step_s_median': median_s,
    'steps_per_s': 1.0 / median_s,
    'images_per_s_median': float(np.median(img_s)),
    'images_per_s_p10': float(np.percentile(img_s, 10)),
    'images_per_s_p90': float(np.percentile(img_s, 90)),
    'images_per_s_overall': b * times.size / float(times.sum()),
    'data_images_per_s_median': case.n_critic * float(np.median(img_s)),
    'images_per_s_per_round': round_img_s.tolist(),
    'ratio_to_plain': float(np.median(round_ratio)),
    'ratio_to_plain_per_round': round_ratio.tolist(),
    'flops_per_step': case.flops,
    'flops_ratio_to_plain': flops_ratio,
    'step_times_s': times.tolist(),
    'final_metrics': {k: float(v) for k, v in jax.device_get(case.metrics).items()},
  }


def table(results: list[dict[str, Any]]) -> str:
  head = [
    'case',
    'sets',
    'batch',
    'median img/s',
    'p10-p90 img/s',
    'vs plain',
    'steps/s',
    'data img/s',
    'GFLOP/step',
    'FLOPs vs plain',
    'compile s',
  ]
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for r in results:
    gflop = r['flops_per_step'] / 1e9 if r['flops_per_step'] is not None else None
    sets = ', '.join(f'{k}={v}' for k, v in r['sets'].items()) or '-'
    row = [
      r['case'],
      sets,
      str(r['batch_size']),
      f"{r['images_per_s_median']:,.0f}",
      f"{r['images_per_s_p10']:,.0f}-{r['images_per_s_p90']:,.0f}",
      f"{r['ratio_to_plain']:.2f}",
      f"{r['steps_per_s']:,.2f}",
      f"{r['data_images_per_s_median']:,.0f}",
      _fmt(gflop, '.3f'),
      _fmt(r['flops_ratio_to_plain'], '.2f'),
      f"{r['lower_s'] + r['compile_s']:.1f}",
    ]
    lines.append('| ' + ' | '.join(row) + ' |')
  return '\n'.join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
  args = parse_args(argv)
  devices = jax.devices()
  mesh = make_mesh()
  plat = devices[0].platform
  lead = jax.process_index() == 0

  def log(msg: str) -> None:
    if lead:
      print(msg, file=sys.stderr, flush=True)

  results = []
  for batch_size in args.batch_sizes:
    cases = []
    for name in args.cases:
      case = Case(name, batch_size, args, mesh)
      case.warmup(args.warmup)
      log(
        f'{name} B={batch_size}: compiled in {case.lower_s + case.compile_s:.1f} s, '
        f'first step {case.first_step_s:.3f} s'
      )
      cases.append(case)
    for r in range(args.rounds):
      k = r % len(cases)
      for case in cases[k:] + cases[:k]:
        case.run(args.steps)
      log(f'B={batch_size}: round {r + 1}/{args.rounds} done')
    results += [summarize(case, cases[0]) for case in cases]
    del cases

  argv_list = sys.argv[1:] if argv is None else list(argv)
  report = {
    'date': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
    'command': shlex.join(['python', 'benchmarks/ingredients.py', *argv_list]),
    'jax_version': jax.__version__,
    'jaxlib_version': package_version('jaxlib'),
    'platform': plat,
    'device_kind': devices[0].device_kind,
    'device_count': len(devices),
    'process_count': jax.process_count(),
    'host_cpu_count': os.cpu_count(),
    'python': platform.python_version(),
    'config': args.config,
    'loss': args.loss,
    'rounds': args.rounds,
    'steps_per_round': args.steps,
    'warmup_steps': args.warmup,
    'results': results,
  }
  if lead:
    print(
      f'\nJAX {jax.__version__}, {len(devices)} x {devices[0].device_kind} ({plat}); '
      f'{args.config}, loss {args.loss}; {args.rounds} rounds x {args.steps} steps per case\n'
    )
    print(table(results))
    path = (
      Path(args.json) if args.json else REPO / 'benchmarks' / 'results' / f'ingredients_{plat}.json'
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + '\n')
    print(f'\nwrote {path}')
  return report


if __name__ == '__main__':
  main()
