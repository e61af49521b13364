"""The cost of the R3GAN preset beside DCGAN-28: FLOPs per train step and images/s.

Cases (each an experiment file, optionally with fields changed; all at one batch size):

  case          config                                    what it is
  r3gan         experiments/mnist_r3gan.py                R3GAN preset: RpGAN + R1 + R2, Adam (0, 0.99)
  dcgan28       experiments/mnist_dcgan.py                the main job: DCGAN-28, non-saturating
  dcgan28_r3obj experiments/mnist_dcgan.py with the       DCGAN-28 with R3GAN's objective, so that
                r3gan case's loss, r1/r2 weights, betas   r3gan / dcgan28_r3obj is the architecture alone

Method (that of `benchmarks/ingredients.py`, whose helpers it imports; the timing loop is
`benchmarks/step_timing.py`'s): one fixed random batch on the devices, the jitted train step
`jit_train_step(make_train_step(...))` compiled first, `--warmup` untimed steps, then `--rounds` interleaved rounds (the order
rotated by one case per round) of `--steps` timed steps per case, each ending in
`jax.block_until_ready`. Interleaving keeps a shared machine fair to every case. Reported
per case: the median images/s over all timed steps, p10-p90, the median over rounds of the
ratio to dcgan28's images/s in the same round, and FLOPs per step from XLA's cost analysis of
the compiled step (x device count).

Run from the repository root (on a shared machine, nice it):

    nice -n 10 python benchmarks/r3gan_cost.py --rounds 3 --steps 10
    python benchmarks/r3gan_cost.py --variant tiny --rounds 1 --steps 2   # seconds

Output: a markdown table on stdout, and a JSON file (default
`benchmarks/results/r3gan_cost_<platform>.json`) with every number, the date, the load
average before and after, and the command.
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
if str(HERE) not in sys.path:  # sibling scripts, not a package
  sys.path.insert(0, str(HERE))
try:
  import gan_jax  # noqa: F401
except ImportError:  # Run from a checkout without `pip install -e .`.
  sys.path.insert(0, str(REPO))

import jax  # noqa: E402
from bench_util import loadavg, package_version  # noqa: E402
from ingredients import fixed_batch  # noqa: E402
from step_timing import timed_steps, warm_up  # noqa: E402
from throughput import flops_of  # noqa: E402

from gan_jax.cli.main import load_config_file  # noqa: E402
from gan_jax.config import validate  # noqa: E402
from gan_jax.core.losses import get_loss  # noqa: E402
from gan_jax.core.sharding import check_batch_size, make_mesh, replicate  # noqa: E402
from gan_jax.core.state import create_state  # noqa: E402
from gan_jax.core.train_step import Stabilizers, jit_train_step, make_train_step  # noqa: E402

R3GAN, DCGAN = 'experiments/mnist_r3gan.py', 'experiments/mnist_dcgan.py'
OBJECTIVE = ('loss', 'r1_weight', 'r2_weight', 'b1', 'b2')  # train fields of dcgan28_r3obj
CASES = ('r3gan', 'dcgan28', 'dcgan28_r3obj')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  doc = __doc__.split('\n\n', 1)
  parser = argparse.ArgumentParser(
    description=doc[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc[1]
  )
  parser.add_argument('--batch-size', type=int, default=64, help='Global batch (default 64).')
  parser.add_argument('--rounds', type=int, default=3, help='Interleaved rounds (default 3).')
  parser.add_argument('--steps', type=int, default=10, help='Timed steps per case and round.')
  parser.add_argument('--warmup', type=int, default=2, help='Untimed steps per case (>= 1).')
  parser.add_argument(
    '--variant', default='', help="Config variant of both files, e.g. 'tiny' (for tests)."
  )
  parser.add_argument('--seed', type=int, default=0, help='config.seed and the batch seed.')
  parser.add_argument('--json', default=None, help='Output JSON path.')
  args = parser.parse_args(argv)
  for flag in ('batch_size', 'rounds', 'steps', 'warmup'):
    if getattr(args, flag) < 1:
      parser.error(f'--{flag.replace("_", "-")} must be >= 1.')
  return args


def make_config(case: str, args: argparse.Namespace):
  """The case's config (see the module docstring) at --batch-size and --seed, validated."""
  spec = lambda path: str(REPO / path) + (f':{args.variant}' if args.variant else '')
  config = load_config_file(spec(R3GAN if case == 'r3gan' else DCGAN))
  if case == 'dcgan28_r3obj':
    r3 = load_config_file(spec(R3GAN))
    for field in OBJECTIVE:
      config.train[field] = r3.train[field]
  config.seed = args.seed
  config.train.batch_size = args.batch_size
  validate(config)
  return config


class Case:
  """One case: its compiled step, state, FLOPs and step times."""

  def __init__(self, name: str, args: argparse.Namespace, mesh):
    self.name = name
    config = make_config(name, args)
    check_batch_size(args.batch_size, mesh)
    t = config.train
    self.model = config.model.name
    self.objective = {f: t[f] for f in OBJECTIVE}
    gan, state = create_state(config)
    step = make_train_step(
      gan,
      get_loss(t.loss),
      n_critic=t.n_critic,
      ema_decay=t.ema_decay,
      mesh=mesh,
      stabilizers=Stabilizers.from_config(t),
    )
    self.state = replicate(state, mesh)
    self.batch = fixed_batch(mesh, t.n_critic, args.batch_size, gan.image_shape, args.seed)
    self.num_params = {
      'g': sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.g_params)),
      'd': sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.d_params)),
    }
    t0 = time.perf_counter()
    self.compiled = jit_train_step(step, mesh).lower(self.state, self.batch).compile()
    self.compile_s = time.perf_counter() - t0
    flops = flops_of(self.compiled.cost_analysis())
    self.flops = flops * mesh.devices.size if flops is not None else None
    self.times: list[list[float]] = []

  def warmup(self, n: int) -> None:
    self.state, self.metrics, self.first_step_s = warm_up(self.compiled, self.state, self.batch, n)

  def run(self, steps: int) -> None:
    self.state, self.metrics, times = timed_steps(self.compiled, self.state, self.batch, steps)
    self.times.append(times)


def summarize(case: Case, ref: Case, batch: int) -> dict[str, Any]:
  img_s = batch / np.asarray(case.times)  # [rounds, steps]
  per_round = np.median(img_s, axis=1)
  ratio = per_round / np.median(batch / np.asarray(ref.times), axis=1)
  return {
    'case': case.name,
    'model': case.model,
    'objective': case.objective,
    'num_params': case.num_params,
    'compile_s': case.compile_s,
    'first_step_s': case.first_step_s,
    'flops_per_step': case.flops,
    'flops_ratio_to_dcgan28': case.flops / ref.flops if case.flops and ref.flops else None,
    'images_per_s_median': float(np.median(img_s)),
    'images_per_s_p10': float(np.percentile(img_s, 10)),
    'images_per_s_p90': float(np.percentile(img_s, 90)),
    'images_per_s_per_round': per_round.tolist(),
    'ratio_to_dcgan28': float(np.median(ratio)),
    'step_times_s': np.asarray(case.times).tolist(),
    'final_metrics': {k: float(v) for k, v in jax.device_get(case.metrics).items()},
  }


def table(results: list[dict[str, Any]]) -> str:
  head = [
    'case',
    'params G / D',
    'GFLOP/step',
    'FLOPs vs dcgan28',
    'median img/s',
    'p10-p90',
    'img/s vs dcgan28',
  ]
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for r in results:
    gflop = f"{r['flops_per_step'] / 1e9:.2f}" if r['flops_per_step'] else '-'
    fr = f"{r['flops_ratio_to_dcgan28']:.2f}" if r['flops_ratio_to_dcgan28'] else '-'
    lines.append(
      '| '
      + ' | '.join(
        [
          r['case'],
          f"{r['num_params']['g']:,} / {r['num_params']['d']:,}",
          gflop,
          fr,
          f"{r['images_per_s_median']:,.0f}",
          f"{r['images_per_s_p10']:,.0f}-{r['images_per_s_p90']:,.0f}",
          f"{r['ratio_to_dcgan28']:.2f}",
        ]
      )
      + ' |'
    )
  return '\n'.join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
  args = parse_args(argv)
  devices, mesh = jax.devices(), make_mesh()
  load_before = loadavg()
  cases = []
  for name in CASES:
    case = Case(name, args, mesh)
    case.warmup(args.warmup)
    print(f'{name}: compiled in {case.compile_s:.1f} s', file=sys.stderr, flush=True)
    cases.append(case)
  for r in range(args.rounds):
    k = r % len(cases)
    for case in cases[k:] + cases[:k]:
      case.run(args.steps)
    print(f'round {r + 1}/{args.rounds} done', file=sys.stderr, flush=True)
  ref = cases[CASES.index('dcgan28')]
  results = [summarize(case, ref, args.batch_size) for case in cases]
  argv_list = sys.argv[1:] if argv is None else list(argv)
  plat = devices[0].platform
  report = {
    'date': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
    'command': shlex.join(['python', 'benchmarks/r3gan_cost.py', *argv_list]),
    'jax_version': jax.__version__,
    'jaxlib_version': package_version('jaxlib'),
    'platform': plat,
    'device_kind': devices[0].device_kind,
    'device_count': len(devices),
    'host_cpu_count': os.cpu_count(),
    'python': platform.python_version(),
    'loadavg_1min_before_after': [load_before, loadavg()],
    'batch_size': args.batch_size,
    'variant': args.variant,
    'rounds': args.rounds,
    'steps_per_round': args.steps,
    'warmup_steps': args.warmup,
    'results': results,
  }
  print(table(results))
  path = (
    Path(args.json) if args.json else REPO / 'benchmarks' / 'results' / f'r3gan_cost_{plat}.json'
  )
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(report, indent=2) + '\n')
  print(f'\nwrote {path}')
  return report


if __name__ == '__main__':
  main()
