"""K GANs in one program vs K runs one after another: the speed-up of `config.num_replicas`.

For each model and K, this builds K states with seeds 0..K-1 and times
  * one program, for each impl of `--impls`: one step of
    `jit_replicated_train_step(make_replicated_train_step(step, impl))` on a stacked state
    and a `[K, 1, B, H, W, C]` batch (what `num_replicas = K` runs); 'vmap' batches the K
    replicas with `jax.vmap`, 'unroll' traces the step K times into the program, and
  * sequential: K steps of the ordinary jitted step `jit_train_step(step)`, one per replica
    state (what K separate runs cost, without their separate start-ups),
on fixed random batches already on the devices (only the steps are measured). Timing is
interleaved: `--rounds` rounds, each timing `--steps` steps of every impl and then
`--steps` x K sequential steps. Speed-up = median sequential time for K steps / median
one-program step time (> 1: the one program is faster). Images/s counts all K replicas'
generator images. The first call (compilation) of each is reported too.

Run from the repository root (venv active):

    python benchmarks/replicas.py                          # dcgan28 and mlp, K = 1, 4, 8
    python benchmarks/replicas.py --models dcgan28 --ks 4 --rounds 2 --steps 5

Output: a markdown table on stdout and a JSON file (default
`benchmarks/results/replicas_<platform>.json`) with every number, the JAX version, the
device, the date and the command.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
try:
  import gan_jax  # noqa: F401
except ImportError:  # Run from a checkout without `pip install -e .`.
  sys.path.insert(0, str(REPO))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from gan_jax.training import replicas  # noqa: E402
from gan_jax.config import base_config, validate  # noqa: E402
from gan_jax.core.losses import get_loss  # noqa: E402
from gan_jax.core.sharding import batch_sharding, make_mesh, replicate  # noqa: E402
from gan_jax.core.state import create_state  # noqa: E402
from gan_jax.core.train_step import jit_train_step, make_train_step  # noqa: E402

MODELS = {'mlp': ('mlp', 28, 1), 'dcgan28': ('dcgan28', 28, 1), 'dcgan32': ('dcgan', 32, 3)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  p.add_argument('--models', default='dcgan28,mlp', help=f'from {",".join(MODELS)}')
  p.add_argument('--ks', default='1,4,8', help='replica counts K')
  p.add_argument('--batch-size', type=int, default=64, help='per replica')
  p.add_argument('--rounds', type=int, default=3)
  p.add_argument('--steps', type=int, default=10, help='vmapped steps timed per round')
  p.add_argument('--impls', default='vmap,unroll', help='make_replicated_train_step impls')
  p.add_argument('--json', help='output file (default benchmarks/results/replicas_<platform>.json)')
  return p.parse_args(argv)


def _config(model: str, batch_size: int, seed: int):
  name, size, channels = MODELS[model]
  config = base_config()
  config.seed = seed
  config.model.name = name
  config.data.image_size = size
  config.data.channels = channels
  config.train.batch_size = batch_size
  validate(config)
  return config


def _timed(fn, n: int) -> list[float]:
  out = []
  for _ in range(n):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    out.append(time.perf_counter() - t0)
  return out


def bench(model: str, k: int, args: argparse.Namespace, mesh) -> dict[str, Any]:
  b = args.batch_size
  impls = [i for i in args.impls.split(',') if i]
  built = [create_state(_config(model, b, seed)) for seed in range(k)]
  gan = built[0][0]
  step = make_train_step(gan, get_loss('non_saturating'), ema_decay=0.999)
  single = jit_train_step(step, mesh)
  programs = {
    i: replicas.jit_replicated_train_step(replicas.make_replicated_train_step(step, i), mesh)
    for i in impls
  }
  shape = (k, 1, b, *gan.image_shape)
  host = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
  stacked_batch = {'image': jax.device_put(host, batch_sharding(mesh, batch_axis=2))}
  batches = [{'image': jax.device_put(host[i], batch_sharding(mesh))} for i in range(k)]
  stacked = {i: replicate(replicas.stack([s for _, s in built]), mesh) for i in impls}
  s_states = [replicate(jax.tree.map(jnp.copy, s), mesh) for _, s in built]

  def one_program(impl):
    def run():
      stacked[impl], metrics = programs[impl](stacked[impl], stacked_batch)
      return metrics

    return run

  def s_steps():
    out = None
    for i in range(k):
      s_states[i], out = single(s_states[i], batches[i])
    return out

  first_call = {i: _timed(one_program(i), 1)[0] for i in impls}
  first_call['sequential'] = _timed(s_steps, 1)[0]
  times = {i: [] for i in [*impls, 'sequential']}
  ratios = {i: [] for i in impls}
  for _ in range(args.rounds):
    rnd = {i: _timed(one_program(i), args.steps) for i in impls}
    rnd['sequential'] = _timed(s_steps, args.steps)
    for i, t in rnd.items():
      times[i] += t
    for i in impls:
      ratios[i].append(float(np.median(rnd['sequential']) / np.median(rnd[i])))
  med = {i: float(np.median(t)) for i, t in times.items()}
  return {
    'model': model,
    'k': k,
    'batch_size': b,
    'step_s': med,
    'images_per_sec': {i: k * b / t for i, t in med.items()},
    'speedup': {i: med['sequential'] / med[i] for i in impls},
    'speedup_per_round': ratios,
    'first_call_s': first_call,
    'step_times_s': times,
  }


def table(results: list[dict[str, Any]]) -> str:
  impls = list(results[0]['speedup'])
  head = ['model', 'K', 'B', *(f'{i} img/s' for i in impls), 'K runs img/s']
  head += [f'{i} speed-up (per round)' for i in impls]
  head += [f'{i} first call s' for i in [*impls, 'sequential']]
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for r in results:
    cells = [r['model'], str(r['k']), str(r['batch_size'])]
    cells += [f'{r["images_per_sec"][i]:.0f}' for i in [*impls, 'sequential']]
    for i in impls:
      rounds = ', '.join(f'{x:.2f}' for x in r['speedup_per_round'][i])
      cells.append(f'{r["speedup"][i]:.2f}x ({rounds})')
    cells += [f'{r["first_call_s"][i]:.1f}' for i in [*impls, 'sequential']]
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
  args = parse_args(argv)
  models = [m for m in args.models.split(',') if m]
  unknown = [m for m in models if m not in MODELS]
  if unknown:
    raise SystemExit(f'unknown model(s) {unknown}; choose from {", ".join(MODELS)}')
  bad = [i for i in args.impls.split(',') if i not in ('vmap', 'unroll')]
  if bad or not args.impls:
    raise SystemExit(f'--impls {args.impls!r}: give vmap, unroll or both, comma-separated')
  mesh = make_mesh()
  results = []
  for model in models:
    for k in (int(x) for x in args.ks.split(',')):
      results.append(bench(model, k, args, mesh))
      r = results[-1]
      ups = ', '.join(f'{i} {x:.2f}x' for i, x in r['speedup'].items())
      print(f'{model} K={k}: speed-up {ups}', file=sys.stderr, flush=True)
  device = jax.devices()[0]
  report = {
    'date': datetime.datetime.now().isoformat(timespec='seconds'),
    'command': 'python ' + shlex.join(sys.argv),
    'jax': jax.__version__,
    'platform': device.platform,
    'device_kind': device.device_kind,
    'device_count': jax.device_count(),
    'results': results,
  }
  print(table(results))
  path = args.json or str(REPO / 'benchmarks' / 'results' / f'replicas_{device.platform}.json')
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    json.dump(report, f, indent=2)
  print(f'wrote {path}')
  return report


if __name__ == '__main__':
  main()
