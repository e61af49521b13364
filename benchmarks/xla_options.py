"""What each XLA CPU option and gan_jax's transposed-convolution choice do to the train step.

Each option runs in a fresh process (XLA reads `XLA_FLAGS` once, at start-up) that compiles
the train step of one case (the cases of benchmarks/throughput.py: the same configs, a fixed
random batch already on the device, n_critic 1, EMA on), runs `--warmup` untimed steps and then
`--steps` timed ones, and reports the median images/s and the metrics after its last step.
The options take turns for `--rounds` rounds (each round runs every option once, in a rotated
order), so that load from other work hits them alike; the table shows the median over rounds
and the speed relative to the baseline (the first option). "same result" says whether the
step's metrics after the same number of steps are bitwise equal to the baseline's (an
option that changes the arithmetic, such as fast math, shows "no" with the largest relative
difference).

Options (name: what the child process sets):

  baseline        nothing: gan_jax's defaults (sub-pixel transposed convolutions on CPU).
  lax_conv_t      gan_jax.models.layers.ConvTranspose.impl = 'lax' (XLA's own transposed
                  convolution, the zero-dilated form; the default before the sub-pixel layer).
  subpixel_all    ConvTranspose.impl = 'subpixel' (also the 1-channel output layer).
  fast_math       XLA_FLAGS=--xla_cpu_enable_fast_math=true
  xnnpack         XLA_FLAGS=--xla_cpu_use_xnnpack=true
  xnn_greedy      XLA_FLAGS=--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY
  onednn          XLA_FLAGS=--xla_cpu_use_onednn=true
  no_fusion_emit  XLA_FLAGS=--xla_cpu_use_fusion_emitters=false
  one_thread      XLA_FLAGS=--xla_cpu_multi_thread_eigen=false (one intra-op thread)
  lax_conv        gan_jax.models.layers.Conv.impl = 'lax' (D's strided convolutions without
                  the custom VJP; the same step unless a penalty differentiates D's input
                  gradient: try it with --set train.gp_weight=10).
  bf16            config.dtype = 'bfloat16': mixed precision (layers compute in bfloat16;
                  parameters, optimizer state, EMA and BatchNorm statistics stay float32).
  chunk64         Conv.batch_chunk = ConvTranspose.batch_chunk = 64: every (transposed)
                  convolution of D and G runs on chunks of 64 images, unrolled
                  (`layers.in_batch_chunks`); the same step to float rounding. Try it at
                  --batch-size 256.
  chunk128        the same with chunks of 128 images.
  chunk64_d       Conv.batch_chunk = 64 only: D's convolutions in chunks of 64 images, G's
                  transposed convolutions whole.
  tconv_adjoint   ConvTranspose.backward = 'adjoint': G's sub-pixel transposed convolutions
                  backpropagate through the adjoint strided convolution
                  (`layers.conv_transpose_adjoint_vjp`); the same step to float rounding.
  tconv_adjoint_chunk64_d   both.
  kgrad_im2col    Conv.kernel_grad = 'im2col': the kernel gradient of stride-1 convolutions
                  (SNGAN-32's) as matrix products of the shifted input
                  (`layers.conv_im2col_vjp`); the same step to float rounding.
  kgrad_im2col_chunk64  that and chunk64.
  concurrency_sched  train.cpu_scheduler='concurrency' (XLA's default CPU scheduler; gan_jax's
                  default; the runs of December 5, 2026 before 06:31 UTC had 'memory' as
                  their baseline).
  memory_sched    train.cpu_scheduler='memory' (XLA's memory-optimised scheduler: about half
                  the temporary memory; bitwise the same step).

Run from the repository root (venv active):

    python benchmarks/xla_options.py --case dcgan28 --batch-size 64 --rounds 3
    python benchmarks/xla_options.py --options baseline,lax_conv_t --batch-size 256
    python benchmarks/xla_options.py --options baseline,lax_conv --set train.gp_weight=10

Output: a markdown table on stdout and JSON (default
benchmarks/results/xla_options_<case>_<batch>.json) with every measurement.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_util  # noqa: E402

OPTIONS: dict[str, dict[str, str]] = {
  'baseline': {},
  'lax_conv_t': {'impl': 'lax'},
  'subpixel_all': {'impl': 'subpixel'},
  'fast_math': {'flags': '--xla_cpu_enable_fast_math=true'},
  'xnnpack': {'flags': '--xla_cpu_use_xnnpack=true'},
  'xnn_greedy': {
    'flags': '--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY'
  },
  'onednn': {'flags': '--xla_cpu_use_onednn=true'},
  'no_fusion_emit': {'flags': '--xla_cpu_use_fusion_emitters=false'},
  'one_thread': {'flags': '--xla_cpu_multi_thread_eigen=false'},
  'bf16': {'dtype': 'bfloat16'},
  'lax_conv': {'conv_impl': 'lax'},
  'chunk64': {'batch_chunk': '64'},
  'chunk128': {'batch_chunk': '128'},
  'concurrency_sched': {'cpu_scheduler': 'concurrency'},
  'memory_sched': {'cpu_scheduler': 'memory'},
  'chunk64_d': {'conv_batch_chunk': '64'},
  'tconv_adjoint': {'tconv_backward': 'adjoint'},
  'tconv_adjoint_chunk64_d': {'tconv_backward': 'adjoint', 'conv_batch_chunk': '64'},
  'kgrad_im2col': {'kernel_grad': 'im2col'},
  'kgrad_im2col_chunk64': {'kernel_grad': 'im2col', 'batch_chunk': '64'},
}


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--case', default='dcgan28', help='A case of benchmarks/throughput.py.')
  p.add_argument('--batch-size', type=int, default=64)
  p.add_argument(
    '--options',
    default=','.join(OPTIONS),
    help=f'Comma-separated, the first is the baseline (default all: {",".join(OPTIONS)}).',
  )
  p.add_argument('--rounds', type=int, default=3, help='Rounds over all options (default 3).')
  p.add_argument('--steps', type=int, default=20, help='Timed steps per process (default 20).')
  p.add_argument('--warmup', type=int, default=2, help='Untimed steps first (default 2).')
  p.add_argument('--tiny', action='store_true', help='Width-8 models (smoke tests).')
  p.add_argument(
    '--set',
    action='append',
    default=[],
    metavar='KEY=VALUE',
    help='A config override for every option, e.g. train.gp_weight=10 (repeatable).',
  )
  p.add_argument('--json', default=None, help='Output JSON path.')
  p.add_argument('--child', default=None, help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  args.options = [o for o in args.options.split(',') if o]
  unknown = [o for o in args.options if o not in OPTIONS]
  if unknown or not args.options:
    p.error(f'--options: unknown {unknown}; choose from {sorted(OPTIONS)}.')
  if args.rounds < 1 or args.steps < 1 or args.warmup < 1:
    p.error('--rounds, --steps and --warmup must be >= 1.')
  return args


def child(args: argparse.Namespace) -> dict:
  """Runs in the option's process: compile, warm up, time; returns the measurement."""
  import importlib.util  # noqa: PLC0415

  import jax  # noqa: PLC0415

  from gan_jax.core.losses import get_loss  # noqa: PLC0415
  from gan_jax.models import layers  # noqa: PLC0415
  from gan_jax.core.sharding import make_mesh, replicate  # noqa: PLC0415
  from gan_jax.core.state import create_state  # noqa: PLC0415
  from gan_jax.core import train_step as train_step_module  # noqa: PLC0415
  from gan_jax.core.train_step import Stabilizers, jit_train_step, make_train_step  # noqa: PLC0415

  option = OPTIONS[args.child]
  if 'impl' in option:
    layers.ConvTranspose.impl = option['impl']
  if 'conv_impl' in option:
    layers.Conv.impl = option['conv_impl']
  if 'cpu_scheduler' in option:
    train_step_module.CPU_COMPILER_OPTIONS = train_step_module.CPU_SCHEDULERS[
      option['cpu_scheduler']
    ]
  if 'tconv_backward' in option:
    layers.ConvTranspose.backward = option['tconv_backward']
  if 'kernel_grad' in option:
    layers.Conv.kernel_grad = option['kernel_grad']
  if 'conv_batch_chunk' in option:
    layers.Conv.batch_chunk = int(option['conv_batch_chunk'])
  if 'batch_chunk' in option:
    layers.Conv.batch_chunk = layers.ConvTranspose.batch_chunk = int(option['batch_chunk'])
  spec = importlib.util.spec_from_file_location('_throughput', REPO / 'benchmarks/throughput.py')
  throughput = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(throughput)
  mesh = make_mesh()
  config = throughput.make_config(args.case, args.batch_size, 0, tiny=args.tiny)
  if 'dtype' in option:
    config.dtype = option['dtype']
  for item in args.set:
    key, _, value = item.partition('=')
    *path, name = key.split('.')
    node = config
    for part in path:
      node = node[part]
    node[name] = type(node[name])(value)
  gan, state = create_state(config)
  step = make_train_step(
    gan,
    get_loss(config.train.loss),
    n_critic=1,
    ema_decay=config.train.ema_decay,
    mesh=mesh,
    stabilizers=Stabilizers.from_config(config.train),  # e.g. --set train.gp_weight=10
  )
  jitted = jit_train_step(step, mesh)
  state = replicate(state, mesh)
  batch = throughput.fixed_batch(mesh, args.batch_size, gan.image_shape, 0)
  t0 = time.perf_counter()
  compiled = jitted.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0
  for _ in range(args.warmup):
    state, metrics = compiled(state, batch)
  jax.block_until_ready((state, metrics))
  times = []
  for _ in range(args.steps):
    t = time.perf_counter()
    state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t)
  return {
    'option': args.child,
    'xla_flags': os.environ.get('XLA_FLAGS', ''),
    'compile_s': compile_s,
    'step_times_s': times,
    'images_per_s': args.batch_size / float(np.median(times)),
    'metrics': {k: float(v) for k, v in jax.device_get(metrics).items()},
  }


def run_option(args: argparse.Namespace, name: str) -> dict:
  env = dict(os.environ)
  flags = OPTIONS[name].get('flags')
  if flags:
    env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') + ' ' + flags).strip()
  cmd = [
    sys.executable,
    __file__,
    '--child',
    name,
    '--case',
    args.case,
    '--batch-size',
    str(args.batch_size),
    '--steps',
    str(args.steps),
    '--warmup',
    str(args.warmup),
  ] + (['--tiny'] if args.tiny else [])
  for item in args.set:
    cmd += ['--set', item]
  return bench_util.run_json_child(cmd, f'option {name}', env)


def relative_difference(a: dict, b: dict) -> float:
  return max(abs(a[k] - b[k]) / max(abs(b[k]), 1e-12) for k in b)


def main(argv=None) -> dict:
  args = parse_args(argv)
  if args.child:
    print(json.dumps(child(args)))
    return {}
  runs: dict[str, list[dict]] = {o: [] for o in args.options}
  for r in range(args.rounds):
    order = args.options[r % len(args.options) :] + args.options[: r % len(args.options)]
    for name in order:
      runs[name].append(run_option(args, name))
      print(f'round {r + 1}: {name}: {runs[name][-1]["images_per_s"]:.1f} img/s', flush=True)
  base = args.options[0]
  base_ips = float(np.median([m['images_per_s'] for m in runs[base]]))
  rows = []
  for name in args.options:
    ips = float(np.median([m['images_per_s'] for m in runs[name]]))
    diff = relative_difference(runs[name][0]['metrics'], runs[base][0]['metrics'])
    rows.append(
      {
        'option': name,
        'settings': OPTIONS[name],
        'images_per_s_median': ips,
        'images_per_s_rounds': [m['images_per_s'] for m in runs[name]],
        'speed_vs_baseline': ips / base_ips,
        'same_result': diff == 0.0,
        'max_relative_metric_difference': diff,
        'compile_s_median': float(np.median([m['compile_s'] for m in runs[name]])),
      }
    )
  print(f'\n{args.case}, batch {args.batch_size}, {args.rounds} rounds of {args.steps} steps\n')
  print('| option | settings | img/s | vs baseline | same result | compile s |')
  print('|---|---|---|---|---|---|')
  for row in rows:
    same = 'yes' if row['same_result'] else f'no ({row["max_relative_metric_difference"]:.1e})'
    settings = ' '.join(f'{k}={v}' for k, v in row['settings'].items()) or '(defaults)'
    print(
      f'| {row["option"]} | `{settings}` | {row["images_per_s_median"]:.1f} | '
      f'{row["speed_vs_baseline"]:.2f}x | {same} | {row["compile_s_median"]:.1f} |'
    )
  report = {
    'date': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
    'command': ' '.join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
    'case': args.case,
    'batch_size': args.batch_size,
    'rounds': args.rounds,
    'steps': args.steps,
    'tiny': args.tiny,
    'results': rows,
    'runs': runs,
  }
  out = Path(
    args.json or REPO / 'benchmarks' / 'results' / f'xla_options_{args.case}_{args.batch_size}.json'
  )
  bench_util.write_report(out, report)
  return report


if __name__ == '__main__':
  main()
