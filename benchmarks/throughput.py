"""Throughput of the jitted GAN train step alone (no input pipeline), on any JAX backend.

For each (model, batch size) case this builds the state from `gan_jax.config.base_config()`,
compiles `jit_train_step(make_train_step(...), make_mesh())` data-parallel over every device
JAX sees, and feeds one fixed random batch that is already on the devices, so only the step
is measured. It runs unchanged on CPU, GPU and TPU (and on several devices: the global batch
is split over them, the state is replicated).

Run from the repository root (venv active):

    python benchmarks/throughput.py --models mlp,dcgan28,dcgan32 --batch-sizes 64,256 \
        --steps 30 --warmup 3 --pipeline

Reported per case:
  * compile: `lower` (trace + StableHLO) and `compile` (XLA) wall times, and the first
    execution of the compiled step, all separately;
  * images/s = B / step time for each of `--steps` timed steps (each one ends with
    `jax.block_until_ready` on the metrics), as median and p10-p90; steps/s = 1 / median;
  * FLOPs per step from XLA's cost analysis of the compiled step, achieved GFLOP/s =
    FLOPs / median step time, and that as % of `--peak-gflops` x device count. The compiled
    module is one device's SPMD program, so its FLOPs are multiplied by the device count;
    if that exceeds the unpartitioned program's FLOPs (JSON `replicated_work_ratio` > 1.2)
    a warning says part of the step is replicated on every device rather than split;
  * with `--pipeline`: images/s of the real tf.data pipeline (`gan_jax.data`) for the same
    batch and image shape, and whether it is faster than the step (the step never waits on
    data). On a CPU backend the pipeline and the step share the same cores during training,
    so "faster" there is necessary, not sufficient.

Output: a markdown table on stdout and a JSON file (default
`benchmarks/results/throughput_<platform>.json`) with every number, the JAX version, device
kind and count, and the date.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
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

from gan_jax.config import base_config, validate  # noqa: E402
from gan_jax.losses import get_loss  # noqa: E402
from gan_jax.sharding import batch_sharding, check_batch_size, make_mesh, replicate  # noqa: E402
from gan_jax.state import create_state  # noqa: E402
from gan_jax.train_step import jit_train_step, make_train_step  # noqa: E402

# Benchmark case name -> (config model.name, data.image_size, data.channels).
CASES: dict[str, tuple[str, int, int]] = {
  'mlp': ('mlp', 28, 1),
  'dcgan28': ('dcgan28', 28, 1),
  'dcgan32': ('dcgan', 32, 3),
}
MIN_STEPS = 20


def _csv(kind):
  def parse(text: str) -> list:
    return [kind(x) for x in text.split(',') if x.strip()]

  return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
    description=__doc__.splitlines()[0],
    formatter_class=argparse.RawDescriptionHelpFormatter,
    epilog='\n'.join(__doc__.splitlines()[2:]),
  )
  parser.add_argument(
    '--models',
    type=_csv(str),
    default=['mlp', 'dcgan28'],
    help=f'Comma-separated cases from {sorted(CASES)} (default mlp,dcgan28). '
    'dcgan32 is model "dcgan" at 32x32x3.',
  )
  parser.add_argument(
    '--batch-sizes',
    type=_csv(int),
    default=[64, 256],
    help='Comma-separated global batch sizes (default 64,256); each must be '
    'a multiple of the device count.',
  )
  parser.add_argument(
    '--steps', type=int, default=30, help=f'Timed steps per case (>= {MIN_STEPS}; default 30).'
  )
  parser.add_argument(
    '--warmup',
    type=int,
    default=3,
    help='Untimed steps before timing, >= 1; the first is the first '
    'execution reported with the compile times (default 3).',
  )
  parser.add_argument(
    '--peak-gflops',
    type=float,
    default=166.0,
    help='Peak fp32 GFLOP/s of ONE device (default 166: this 2-core AVX2 '
    'machine, 2 cores x 2.6 GHz x 32 FLOP/cycle, which JAX sees as one '
    'CPU device). %% of peak uses peak x device count.',
  )
  parser.add_argument(
    '--pipeline',
    action='store_true',
    help='Also measure the tf.data input pipeline for the same batch size and image shape.',
  )
  parser.add_argument(
    '--pipeline-dataset',
    default='mnist',
    help='TFDS dataset for --pipeline (default mnist; resized/converted to '
    "each case's image shape as training would).",
  )
  parser.add_argument(
    '--pipeline-batches',
    type=int,
    default=200,
    help='Timed pipeline batches for --pipeline (default 200), after one '
    'untimed epoch that fills the in-memory cache.',
  )
  parser.add_argument(
    '--data-dir',
    default=None,
    help='TFDS data_dir for --pipeline (default: $TFDS_DATA_DIR, else '
    '../shared/tfds next to the repository).',
  )
  parser.add_argument('--seed', type=int, default=0, help='config.seed and the batch seed.')
  parser.add_argument(
    '--json',
    default=None,
    help='Output JSON path (default '
    'benchmarks/results/throughput_<platform>.json in the repository).',
  )
  args = parser.parse_args(argv)
  unknown = [m for m in args.models if m not in CASES]
  if unknown or not args.models:
    parser.error(f'--models: unknown {unknown}; choose from {sorted(CASES)}.')
  if not args.batch_sizes or min(args.batch_sizes) <= 0:
    parser.error('--batch-sizes must be positive integers, e.g. 64,256.')
  if args.steps < MIN_STEPS:
    parser.error(f'--steps={args.steps} must be >= {MIN_STEPS} for stable percentiles.')
  if args.warmup < 1:
    parser.error('--warmup must be >= 1 (the first execution is never timed as a step).')
  if args.pipeline_batches < 1:
    parser.error('--pipeline-batches must be >= 1.')
  return args


def make_config(case: str, batch_size: int, seed: int):
  """base_config() with the case's model and image shape (existing fields only)."""
  name, size, channels = CASES[case]
  config = base_config()
  config.seed = seed
  config.model.name = name
  config.data.image_size = size
  config.data.channels = channels
  config.train.batch_size = batch_size
  config.train.n_critic = 1
  config.train.loss = 'non_saturating'
  validate(config)
  return config


def flops_of(cost: Any) -> float | None:
  """The 'flops' entry of an XLA cost analysis: a dict in current JAX, a list of dicts
  (one per computation/partition) in older versions, None where unsupported."""
  if cost is None:
    return None
  if isinstance(cost, dict):
    cost = [cost]
  values = [c.get('flops') for c in cost if isinstance(c, dict) and c.get('flops') is not None]
  return float(sum(values)) if values else None


def fixed_batch(mesh, batch_size: int, image_shape: tuple[int, int, int], seed: int):
  """{'image': float32 [1, B, H, W, C] uniform in [-1, 1]} sharded with batch_sharding(mesh).

  Built with make_array_from_callback from one host array that every process computes the
  same way, so it also works when the mesh spans several processes.
  """
  host = (
    np.random.default_rng(seed).uniform(-1.0, 1.0, (1, batch_size, *image_shape)).astype(np.float32)
  )
  image = jax.make_array_from_callback(host.shape, batch_sharding(mesh), lambda idx: host[idx])
  return {'image': jax.block_until_ready(image)}


def bench_step(case: str, batch_size: int, args: argparse.Namespace, mesh) -> dict[str, Any]:
  config = make_config(case, batch_size, args.seed)
  check_batch_size(batch_size, mesh)
  gan, state = create_state(config)
  step = make_train_step(
    gan, get_loss('non_saturating'), n_critic=1, ema_decay=config.train.ema_decay, mesh=mesh
  )
  jitted = jit_train_step(step, mesh)
  state = replicate(state, mesh)
  batch = fixed_batch(mesh, batch_size, gan.image_shape, args.seed)
  num_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves((state.g_params, state.d_params)))

  t0 = time.perf_counter()
  lowered = jitted.lower(state, batch)
  t1 = time.perf_counter()
  compiled = lowered.compile()
  t2 = time.perf_counter()
  # The compiled executable is called directly: calling `jitted` would compile a second time
  # (AOT compilation does not fill jit's dispatch cache).
  state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  t3 = time.perf_counter()
  for _ in range(args.warmup - 1):
    state, metrics = compiled(state, batch)
  jax.block_until_ready((state, metrics))

  times = np.empty(args.steps)
  for i in range(args.steps):
    start = time.perf_counter()
    state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    times[i] = time.perf_counter() - start
  jax.block_until_ready(state)
  final_metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}

  flops = flops_of(compiled.cost_analysis())
  try:
    flops_unoptimized = flops_of(lowered.cost_analysis())
  except Exception:  # noqa: BLE001 - optional cross-check only.
    flops_unoptimized = None
  n_dev = mesh.devices.size
  # Under SPMD the compiled module is one device's program: its FLOPs are per device.
  step_flops = flops * n_dev if flops is not None else None
  # Compiled FLOPs summed over devices vs the unpartitioned program: ~1 when the work is
  # split over the devices, up to n_dev when every device computes the whole batch.
  replication = (
    step_flops / flops_unoptimized if step_flops is not None and flops_unoptimized else None
  )
  if replication is not None and n_dev > 1 and replication > 1.2 and jax.process_index() == 0:
    print(
      f'warning: {case} B={batch_size}: the compiled step does {replication:.2f}x the FLOPs '
      f'of the unpartitioned program over {n_dev} devices: part of the work is replicated '
      'on every device instead of split over the batch.',
      file=sys.stderr,
    )
  img_s = batch_size / times
  median_s = float(np.median(times))
  gflops_s = step_flops / median_s / 1e9 if step_flops is not None else None
  peak = args.peak_gflops * n_dev
  del state, batch, compiled, lowered
  return {
    'model': case,
    'model_name': config.model.name,
    'image_shape': list(gan.image_shape),
    'batch_size': batch_size,
    'per_device_batch': batch_size // n_dev,
    'num_params': num_params,
    'steps_timed': args.steps,
    'warmup_steps': args.warmup,
    'lower_s': t1 - t0,
    'compile_s': t2 - t1,
    'first_step_s': t3 - t2,
    'step_s_median': median_s,
    'step_s_mean': float(np.mean(times)),
    'step_s_min': float(np.min(times)),
    'step_s_max': float(np.max(times)),
    'images_per_s_median': float(np.median(img_s)),
    'images_per_s_p10': float(np.percentile(img_s, 10)),
    'images_per_s_p90': float(np.percentile(img_s, 90)),
    'images_per_s_overall': batch_size * args.steps / float(np.sum(times)),
    'steps_per_s': 1.0 / median_s,
    'step_times_s': times.tolist(),
    'flops_per_step': step_flops,
    'flops_per_step_per_device': flops,
    # The lowered module is the global, unpartitioned program: no x device count.
    'flops_per_step_unoptimized_hlo': flops_unoptimized,
    'replicated_work_ratio': replication,
    'gflops_per_s': gflops_s,
    'peak_gflops_total': peak,
    'percent_of_peak': 100.0 * gflops_s / peak if gflops_s is not None else None,
    'final_metrics': final_metrics,
  }


def default_data_dir(arg: str | None) -> str:
  return arg or os.environ.get('TFDS_DATA_DIR') or str(REPO.parent / 'shared' / 'tfds')


def bench_pipeline(
  dataset: str, batch_size: int, image_shape: tuple[int, int, int], args: argparse.Namespace
) -> dict[str, Any]:
  """Host images/s of gan_jax.data.build_train_dataset for this batch and image shape."""
  from gan_jax import data  # noqa: PLC0415 - TensorFlow is imported only with --pipeline.

  data_dir = default_data_dir(args.data_dir)
  h, _, c = image_shape
  ds = data.build_train_dataset(
    dataset,
    'train',
    data_dir=data_dir,
    image_size=h,
    channels=c,
    batch_size=batch_size,
    seed=args.seed,
    n_critic=1,
  )
  import tensorflow_datasets as tfds  # noqa: PLC0415

  num_examples = tfds.builder(dataset, data_dir=data_dir).info.splits['train'].num_examples
  warmup = -(-num_examples // batch_size) + 5  # One epoch (fills the cache) + 5.
  rate = data.measure_throughput(ds, args.pipeline_batches, warmup=warmup)
  return {
    'dataset': dataset,
    'data_dir': data_dir,
    'batches_timed': args.pipeline_batches,
    'warmup_batches': warmup,
    'images_per_s': rate,
  }


def _fmt(x: float | None, spec: str) -> str:
  return 'n/a' if x is None else format(x, spec)


def table(results: list[dict[str, Any]], pipeline: bool) -> str:
  head = [
    'model',
    'batch',
    'median img/s',
    'p10-p90 img/s',
    'steps/s',
    'compile s (lower+compile / 1st step)',
    'GFLOP/step',
    'GFLOP/s',
    '% peak',
  ]
  if pipeline:
    head += ['pipeline img/s', 'pipeline > step']
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for r in results:
    gflop = r['flops_per_step'] / 1e9 if r['flops_per_step'] is not None else None
    row = [
      r['model'],
      str(r['batch_size']),
      f"{r['images_per_s_median']:,.0f}",
      f"{r['images_per_s_p10']:,.0f}-{r['images_per_s_p90']:,.0f}",
      f"{r['steps_per_s']:,.1f}",
      f"{r['lower_s'] + r['compile_s']:.2f} ({r['lower_s']:.2f}+{r['compile_s']:.2f})"
      f" / {r['first_step_s']:.3f}",
      _fmt(gflop, '.3f'),
      _fmt(r['gflops_per_s'], ',.1f'),
      _fmt(r['percent_of_peak'], '.1f'),
    ]
    if pipeline:
      p = r.get('pipeline')
      if p is None:
        row += ['n/a', 'n/a']
      else:
        faster = p['images_per_s'] > r['images_per_s_median']
        row += [f"{p['images_per_s']:,.0f}", 'yes' if faster else 'NO']
    lines.append('| ' + ' | '.join(row) + ' |')
  return '\n'.join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
  args = parse_args(argv)
  devices = jax.devices()
  mesh = make_mesh()
  plat = devices[0].platform
  lead = jax.process_index() == 0
  results = []
  pipeline_cache: dict[tuple, dict[str, Any]] = {}
  for case in args.models:
    for batch_size in args.batch_sizes:
      r = bench_step(case, batch_size, args, mesh)
      if args.pipeline:
        key = (batch_size, *r['image_shape'])
        if key not in pipeline_cache:
          try:
            pipeline_cache[key] = bench_pipeline(
              args.pipeline_dataset, batch_size, tuple(r['image_shape']), args
            )
          except Exception as err:  # noqa: BLE001 - e.g. data missing: keep the step numbers.
            print(
              f'pipeline measurement failed for B={batch_size}: {type(err).__name__}: {err}',
              file=sys.stderr,
            )
            pipeline_cache[key] = None
        p = pipeline_cache[key]
        r['pipeline'] = p
        if p is not None:
          r['pipeline_faster_than_step'] = p['images_per_s'] > r['images_per_s_median']
      results.append(r)
      if lead:
        print(
          f"{case} B={batch_size}: {r['images_per_s_median']:,.0f} img/s (median of {args.steps})",
          file=sys.stderr,
          flush=True,
        )

  report = {
    'date': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
    'jax_version': jax.__version__,
    'jaxlib_version': _jaxlib_version(),
    'platform': plat,
    'device_kind': devices[0].device_kind,
    'device_count': len(devices),
    'process_count': jax.process_count(),
    'host_cpu_count': os.cpu_count(),
    'python': platform.python_version(),
    'peak_gflops_per_device': args.peak_gflops,
    'loss': 'non_saturating',
    'n_critic': 1,
    'ema_decay': base_config().train.ema_decay,
    'argv': sys.argv[1:] if argv is None else list(argv),
    'results': results,
  }
  if lead:
    print(
      f'\nJAX {jax.__version__}, {len(devices)} x {devices[0].device_kind} ({plat}), '
      f'peak {args.peak_gflops:g} GFLOP/s per device\n'
    )
    print(table(results, args.pipeline))
    path = (
      Path(args.json)
      if args.json
      else REPO / 'benchmarks' / 'results' / (f'throughput_{plat}.json')
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + '\n')
    print(f'\nwrote {path}')
  return report


def _jaxlib_version() -> str | None:
  try:
    import jaxlib  # noqa: PLC0415

    return jaxlib.__version__
  except Exception:  # noqa: BLE001
    return None


if __name__ == '__main__':
  main()
