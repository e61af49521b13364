"""Throughput of the jitted GAN train step alone (no input pipeline), on any JAX backend,
against the same step in PyTorch.

For each (model, batch size) case this builds the state from `gan_jax.config.base_config()`
and the case's fields (below), compiles `jit_train_step(make_train_step(...), make_mesh())`
data-parallel over every device JAX sees, and feeds one fixed random batch that is already
on the devices, so only the step is measured. It runs unchanged on CPU, GPU and TPU (and on
several devices: the global batch is split over them, the state is replicated).

Cases (one step = one D update and one G update, n_critic 1; generator EMA 0.999; Adam):

  case     config fields                                      loss            Adam lr, betas
  mlp      model.name=mlp, 28x28x1, hidden (256, 256), z 100   non_saturating  2e-4, (0.5, 0.999)
  dcgan28  model.name=dcgan28, 28x28x1, widths 64, z 100       non_saturating  2e-4, (0.5, 0.999)
  dcgan32  model.name=dcgan, 32x32x3, widths 64, z 100         non_saturating  2e-4, (0.5, 0.999)
  sngan32  model.name=sngan32, 32x32x3, g_width 256,           hinge           2e-4, (0.0, 0.9)
           d_width 128, z 128 (experiments/cifar10_sngan.py,
           but n_critic 1 instead of 5)

`--tiny` shrinks every case to widths 8 (MLP hidden 32) for smoke tests.

PyTorch reference (`--torch`, default `auto`: on when torch is installed, the `bench` extra:
`pip install -e '.[bench]' --extra-index-url https://download.pytorch.org/whl/cpu`):
`benchmarks/torch_reference.py` is the same models (parameter counts checked equal), losses,
Adam, EMA and step order in PyTorch eager, run in a worker process (PyTorch never shares a
process with JAX) with `torch.set_num_threads(--torch-threads)`, default the cores this
process may use; a list (e.g. `--torch-threads 2,1`) times one PyTorch worker per thread
count. Timing alternates in the same run: `--steps` timed steps per framework in rounds of
`--round-steps`, the frameworks' order rotated every round, so machine noise hits all of
them. `--torch-compile` adds `torch.compile`d G and D (inductor) as one more framework. The
ratio gan_jax/PyTorch is the ratio of the median images/s (the JSON also has the median of
the per-round ratios, and the 1-minute load average at the start and end of each case).
PyTorch is the CPU build: on a GPU or TPU backend the ratio compares gan_jax there with
PyTorch on the host CPU.

On a machine shared with other work, PyTorch's OpenMP threads can be much slower than one
thread: each parallel region waits for every thread, and a thread whose core is running
another process waits for its time slice (nice does not help across sessions when the kernel
groups processes by session, sched_autogroup). Time `--torch-threads N,1` there, or set
OMP_WAIT_POLICY=PASSIVE (recorded in the JSON).

Run from the repository root (venv active):

    python benchmarks/throughput.py                 # mlp, dcgan28, dcgan32 at 64 and 256
    python benchmarks/throughput.py --models sngan32 --batch-sizes 64
    python benchmarks/throughput.py --models mlp,dcgan28 --steps 30 --pipeline --torch off

Reported per case:
  * compile: `lower` (trace + StableHLO) and `compile` (XLA) wall times, and the first
    execution of the compiled step, all separately (PyTorch: its first step);
  * images/s = B / step time for each of `--steps` timed steps, after `--warmup` untimed ones
    (each JAX step ends with `jax.block_until_ready` on the metrics; PyTorch CPU eager has
    finished when the step returns), as median and p10-p90; steps/s = 1 / median;
  * FLOPs per step from XLA's cost analysis of the compiled step, achieved GFLOP/s =
    FLOPs / median step time, and that as % of `--peak-gflops` x device count. The compiled
    module is one device's SPMD program, so its FLOPs are multiplied by the device count;
    if that exceeds the unpartitioned program's FLOPs (JSON `replicated_work_ratio` > 1.2)
    a warning says part of the step is replicated on every device rather than split.
    PyTorch's GFLOP/s uses the same XLA count (the same math) over its own step time;
  * peak resident memory of training (`--memory`, on by default): for each case and
    framework a fresh process imports only that framework, builds the case, compiles (JAX),
    and runs `--memory-steps` steps (the first included), then reads its own peak RSS, the
    kernel's high-water mark VmHWM in /proc/self/status (ru_maxrss elsewhere). Not
    ru_maxrss / RUSAGE_CHILDREN on Linux: the kernel carries the parent's peak RSS into a
    child across fork + exec, so every child of this benchmark would report at least the
    benchmark's own peak. The JSON also has the peak after the imports and after compiling,
    and the timed PyTorch worker's peak (all of the case's steps) as a cross-check; on
    accelerators, the device's peak bytes in use where JAX reports them (host RSS is then
    not the model's memory). The process includes the framework itself (see the peak after
    the imports), so small models differ mostly by that;
  * with `--pipeline`: images/s of the real tf.data pipeline (`gan_jax.data.pipeline`) for the same
    batch and image shape, and whether it is faster than the step (the step never waits on
    data). On a CPU backend the pipeline and the step share the same cores during training,
    so "faster" there is necessary, not sufficient.

Output: a markdown table on stdout and a JSON file (default
`benchmarks/results/throughput_<platform>.json`) with every number and step time, the JAX and
PyTorch versions, device kind and count, threads, the date and the command.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
TORCH_REFERENCE = HERE / 'torch_reference.py'
if str(HERE) not in sys.path:  # bench_util is a sibling file, not a package module.
  sys.path.insert(0, str(HERE))
try:
  import gan_jax  # noqa: F401
except ImportError:  # Run from a checkout without `pip install -e .`.
  sys.path.insert(0, str(REPO))

import jax  # noqa: E402
from bench_util import (  # noqa: E402
  JsonLinesWorker,
  default_threads,
  loadavg,
  package_version,
  parse_set,
)
from step_timing import timed_steps, warm_up  # noqa: E402

from gan_jax.config import base_config, validate  # noqa: E402
from gan_jax.errors import ConfigError  # noqa: E402
from gan_jax.core.losses import get_loss  # noqa: E402
from gan_jax.core.sharding import batch_sharding, check_batch_size, make_mesh, replicate  # noqa: E402
from gan_jax.core.state import create_state  # noqa: E402
from gan_jax.core.train_step import jit_train_step, make_train_step  # noqa: E402

# Benchmark case -> config fields set on base_config() (after train.loss='non_saturating').
CASES: dict[str, dict[str, Any]] = {
  'mlp': {'model.name': 'mlp', 'data.image_size': 28, 'data.channels': 1},
  'dcgan28': {'model.name': 'dcgan28', 'data.image_size': 28, 'data.channels': 1},
  'dcgan32': {'model.name': 'dcgan', 'data.image_size': 32, 'data.channels': 3},
  # Miyato et al. 2018's CIFAR-10 ResNet setting (experiments/cifar10_sngan.py), n_critic 1.
  'sngan32': {
    'model.name': 'sngan32',
    'data.image_size': 32,
    'data.channels': 3,
    'model.latent_dim': 128,
    'model.g_width': 256,
    'model.d_width': 128,
    'train.loss': 'hinge',
    'train.b1': 0.0,
    'train.b2': 0.9,
  },
}
# --tiny: every case at width 8 (seconds on a CPU; for tests).
TINY = {'model.g_width': 8, 'model.d_width': 8, 'model.hidden': (32, 32)}
DEFAULT_MODELS = ['mlp', 'dcgan28', 'dcgan32']
MIN_STEPS = 20
# Below MIN_STEPS only for slow cases (sngan32: 10-45 s per step here), where one step is
# long against the timer's noise; the percentiles of so few steps are coarse.
MIN_STEPS_SLOW = 5


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
    default=list(DEFAULT_MODELS),
    help=f'Comma-separated cases from {sorted(CASES)} (default {",".join(DEFAULT_MODELS)}; '
    'sngan32 takes ~20 s per step per framework at batch 64 on 2 CPU cores).',
  )
  parser.add_argument(
    '--batch-sizes',
    type=_csv(int),
    default=[64, 256],
    help='Comma-separated global batch sizes (default 64,256); each must be '
    'a multiple of the device count.',
  )
  parser.add_argument(
    '--steps',
    type=int,
    default=MIN_STEPS,
    help=f'Timed steps per case and framework (default {MIN_STEPS}; >= {MIN_STEPS_SLOW} '
    f'allowed for slow cases such as sngan32, whose percentiles are then coarse).',
  )
  parser.add_argument(
    '--round-steps',
    type=int,
    default=5,
    help='Timed steps of one framework before the next one takes its turn (default 5).',
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
    '--torch',
    choices=('auto', 'on', 'off'),
    default='auto',
    help='Also time the PyTorch reference (benchmarks/torch_reference.py): auto (default) '
    'when torch is installed, on (fail without it) or off.',
  )
  parser.add_argument(
    '--torch-threads',
    type=_csv(int),
    default=[default_threads()],
    help=f'torch.set_num_threads for PyTorch (default {default_threads()}: the cores here). '
    'Several, e.g. 2,1, time PyTorch once per thread count, all in the same rounds; the '
    'first is "torch" in the JSON, the others "torch_<n>thr".',
  )
  parser.add_argument(
    '--torch-adam',
    choices=('fused', 'foreach', 'for-loop'),
    default='fused',
    help="PyTorch's Adam implementation (default fused, its CPU kernel).",
  )
  parser.add_argument(
    '--torch-compile',
    action='store_true',
    help='Also time PyTorch with torch.compile(G) and torch.compile(D) (inductor; needs a C++ '
    'compiler; compile time is reported as its first step).',
  )
  parser.add_argument(
    '--memory',
    action=argparse.BooleanOptionalAction,
    default=True,
    help='Measure the peak RSS of training each case in a fresh process per framework '
    '(default on).',
  )
  parser.add_argument(
    '--memory-steps',
    type=int,
    default=2,
    help='Steps (the first included) the memory processes run (default 2).',
  )
  parser.add_argument(
    '--tiny', action='store_true', help='Width-8 models (MLP hidden 32): for smoke tests.'
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
    '--set',
    action='append',
    default=[],
    metavar='FIELD=VALUE',
    help='A config field for every gan_jax case, repeatable, e.g. --set '
    'model.tconv_backward=adjoint --set model.d_conv_chunk=64 or --set '
    'train.cpu_scheduler=memory: speed-only options (the PyTorch side is unchanged). VALUE '
    'is a Python literal, else a string.',
  )
  parser.add_argument(
    '--json',
    default=None,
    help='Output JSON path (default '
    'benchmarks/results/throughput_<platform>.json in the repository).',
  )
  # Internal: the process that measures the peak memory of one JAX case.
  parser.add_argument('--memory-child', action='store_true', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  unknown = [m for m in args.models if m not in CASES]
  if unknown or not args.models:
    parser.error(f'--models: unknown {unknown}; choose from {sorted(CASES)}.')
  if not args.batch_sizes or min(args.batch_sizes) <= 0:
    parser.error('--batch-sizes must be positive integers, e.g. 64,256.')
  if args.steps < MIN_STEPS_SLOW and not args.memory_child:
    parser.error(
      f'--steps={args.steps} must be >= {MIN_STEPS} for stable percentiles (>= '
      f'{MIN_STEPS_SLOW} for slow cases such as sngan32).'
    )
  if args.round_steps < 1:
    parser.error('--round-steps must be >= 1.')
  if args.warmup < 1:
    parser.error('--warmup must be >= 1 (the first execution is never timed as a step).')
  if args.memory_steps < 1:
    parser.error('--memory-steps must be >= 1.')
  if not args.torch_threads or min(args.torch_threads) < 1:
    parser.error('--torch-threads must be positive integers, e.g. 2 or 2,1.')
  if args.pipeline_batches < 1:
    parser.error('--pipeline-batches must be >= 1.')
  args.overrides = parse_set(args.set, parser.error)
  for case in args.models:
    for batch_size in args.batch_sizes:
      try:
        make_config(case, batch_size, args.seed, args.tiny, args.overrides)
      except (ConfigError, KeyError) as e:
        parser.error(f'--set on case {case}: {e}')
  return args


def make_config(
  case: str,
  batch_size: int,
  seed: int,
  tiny: bool = False,
  overrides: dict[str, Any] | None = None,
):
  """base_config() with the case's fields (existing fields only), n_critic 1.

  `overrides` sets more fields after the case's, as 'block.name' or a top-level 'name'
  (e.g. {'dtype': 'bfloat16'}).
  """
  config = base_config()
  config.seed = seed
  config.train.batch_size = batch_size
  config.train.n_critic = 1
  config.train.loss = 'non_saturating'
  fields = {**CASES[case], **(TINY if tiny else {}), **(overrides or {})}
  for key, value in fields.items():
    if '.' in key:
      block, name = key.split('.')
      config[block][name] = value
    else:
      config[key] = value
  validate(config)
  return config


def torch_spec(config) -> dict[str, Any]:
  """What benchmarks/torch_reference.py needs of a config (plain JSON values)."""
  m, t, d = config.model, config.train, config.data
  return {
    'name': m.name,
    'latent_dim': m.latent_dim,
    'g_width': m.g_width,
    'd_width': m.d_width,
    'hidden': list(m.hidden),
    'spectral_norm': m.spectral_norm,
    'pack': m.pack,
    'minibatch_std': m.minibatch_std,
    'image_shape': [d.image_size, d.image_size, d.channels],
    'loss': t.loss,
    'g_lr': t.g_lr,
    'd_lr': t.d_lr,
    'b1': t.b1,
    'b2': t.b2,
    'ema_decay': t.ema_decay,
  }


def flops_of(cost: Any) -> float | None:
  """The 'flops' entry of an XLA cost analysis: a dict in current JAX, a list of dicts
  (one per computation/partition) in older versions, None where unsupported."""
  if cost is None:
    return None
  if isinstance(cost, dict):
    cost = [cost]
  values = [c.get('flops') for c in cost if isinstance(c, dict) and c.get('flops') is not None]
  return float(sum(values)) if values else None


def memory_of(compiled: Any) -> dict[str, int] | None:
  """XLA's memory analysis of a compiled step, bytes per device: its arguments, outputs,
  temporaries, the argument bytes aliased to outputs (donated state), and `total` =
  arguments + outputs + temporaries - aliased, the memory the step needs while it runs.
  None where the backend does not report it."""
  try:
    m = compiled.memory_analysis()
  except Exception:  # noqa: BLE001 - optional: not every backend implements it.
    return None
  if m is None:
    return None
  keys = (
    'argument_size_in_bytes',
    'output_size_in_bytes',
    'temp_size_in_bytes',
    'alias_size_in_bytes',
    'generated_code_size_in_bytes',
  )
  out = {k: int(getattr(m, k)) for k in keys if getattr(m, k, None) is not None}
  if all(k in out for k in keys[:4]):
    out['total'] = out[keys[0]] + out[keys[1]] + out[keys[2]] - out[keys[3]]
  return out


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


def peak_rss_mib() -> float:
  """Peak resident set size of this process's address space so far, MiB.

  Linux: VmHWM of /proc/self/status. Not `ru_maxrss` (nor RUSAGE_CHILDREN or os.wait4 in the
  parent): Linux carries the parent's peak RSS into a child across fork + exec, so a child
  of this benchmark would report at least the benchmark's own peak. Elsewhere: ru_maxrss
  (bytes on macOS, KiB on other systems). The same function is in torch_reference.py.
  """
  try:
    with open('/proc/self/status') as f:
      for line in f:
        if line.startswith('VmHWM:'):
          return int(line.split()[1]) / 1024
  except OSError:
    pass
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return rss / 2**20 if sys.platform == 'darwin' else rss / 1024


def _times_summary(times: list[float], batch_size: int) -> dict[str, Any]:
  t = np.asarray(times)
  img_s = batch_size / t
  median_s = float(np.median(t))
  return {
    'step_s_median': median_s,
    'step_s_mean': float(np.mean(t)),
    'step_s_min': float(np.min(t)),
    'step_s_max': float(np.max(t)),
    'images_per_s_median': float(np.median(img_s)),
    'images_per_s_p10': float(np.percentile(img_s, 10)),
    'images_per_s_p90': float(np.percentile(img_s, 90)),
    'images_per_s_overall': batch_size * len(t) / float(np.sum(t)),
    'steps_per_s': 1.0 / median_s,
  }


class JaxCase:
  """One (case, batch size) in this process: its compiled step, state and timings."""

  name = 'jax'

  def __init__(
    self,
    case: str,
    batch_size: int,
    args: argparse.Namespace,
    mesh,
    overrides: dict[str, Any] | None = None,
  ):
    self.case, self.batch_size, self.mesh = case, batch_size, mesh
    overrides = {**getattr(args, 'overrides', {}), **(overrides or {})}
    self.config = config = make_config(case, batch_size, args.seed, args.tiny, overrides)
    check_batch_size(batch_size, mesh)
    gan, state = create_state(config)
    # Peak RSS once the initial state exists (its ~70 eager ops each compile a small XLA
    # program), before the step is lowered and compiled: --memory-child reports it.
    self.rss_after_state_mib = peak_rss_mib()
    step = make_train_step(
      gan,
      get_loss(config.train.loss),
      n_critic=1,
      ema_decay=config.train.ema_decay,
      mesh=mesh,
    )
    jitted = jit_train_step(step, mesh, cpu_scheduler=config.train.cpu_scheduler)
    self.image_shape = list(gan.image_shape)
    self.num_params = {
      'g': sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.g_params)),
      'd': sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.d_params)),
    }
    self.state = replicate(state, mesh)
    del state
    self.batch = fixed_batch(mesh, batch_size, gan.image_shape, args.seed)
    t0 = time.perf_counter()
    lowered = jitted.lower(self.state, self.batch)
    t1 = time.perf_counter()
    # The compiled executable is called directly: calling `jitted` would compile a second
    # time (AOT compilation does not fill jit's dispatch cache).
    self.compiled = lowered.compile()
    t2 = time.perf_counter()
    self.lower_s, self.compile_s = t1 - t0, t2 - t1
    self.flops = flops_of(self.compiled.cost_analysis())
    self.memory_analysis = memory_of(self.compiled)
    try:
      self.flops_unoptimized = flops_of(lowered.cost_analysis())
    except Exception:  # noqa: BLE001 - optional cross-check only.
      self.flops_unoptimized = None
    self.rounds: list[list[float]] = []
    self.metrics = None

  def warmup(self, n: int) -> None:
    self.state, self.metrics, self.first_step_s = warm_up(self.compiled, self.state, self.batch, n)

  def run(self, n: int) -> None:
    self.state, self.metrics, times = timed_steps(self.compiled, self.state, self.batch, n)
    self.rounds.append(times)

  def summary(self, args: argparse.Namespace) -> dict[str, Any]:
    n_dev = self.mesh.devices.size
    # Under SPMD the compiled module is one device's program: its FLOPs are per device.
    step_flops = self.flops * n_dev if self.flops is not None else None
    # Compiled FLOPs summed over devices vs the unpartitioned program: ~1 when the work is
    # split over the devices, up to n_dev when every device computes the whole batch.
    replication = (
      step_flops / self.flops_unoptimized
      if step_flops is not None and self.flops_unoptimized
      else None
    )
    if replication is not None and n_dev > 1 and replication > 1.2 and jax.process_index() == 0:
      print(
        f'warning: {self.case} B={self.batch_size}: the compiled step does '
        f'{replication:.2f}x the FLOPs of the unpartitioned program over {n_dev} devices: '
        'part of the work is replicated on every device instead of split over the batch.',
        file=sys.stderr,
      )
    times = [t for r in self.rounds for t in r]
    out = _times_summary(times, self.batch_size)
    peak = args.peak_gflops * n_dev
    gflops_s = step_flops / out['step_s_median'] / 1e9 if step_flops is not None else None
    c = self.config
    return {
      'model': self.case,
      'model_name': c.model.name,
      'image_shape': self.image_shape,
      'batch_size': self.batch_size,
      'per_device_batch': self.batch_size // n_dev,
      'loss': c.train.loss,
      'adam': {'lr': c.train.g_lr, 'b1': c.train.b1, 'b2': c.train.b2},
      'model_config': {k: c.model[k] for k in ('latent_dim', 'g_width', 'd_width')}
      | {'hidden': list(c.model.hidden)},
      'num_params': self.num_params['g'] + self.num_params['d'],
      'num_params_g_d': self.num_params,
      'steps_timed': len(times),
      'warmup_steps': args.warmup,
      'lower_s': self.lower_s,
      'compile_s': self.compile_s,
      'first_step_s': self.first_step_s,
      **out,
      'step_times_s': times,
      'step_times_s_per_round': self.rounds,
      'flops_per_step': step_flops,
      'flops_per_step_per_device': self.flops,
      # The lowered module is the global, unpartitioned program: no x device count.
      'flops_per_step_unoptimized_hlo': self.flops_unoptimized,
      'replicated_work_ratio': replication,
      'gflops_per_s': gflops_s,
      'peak_gflops_total': peak,
      'percent_of_peak': 100.0 * gflops_s / peak if gflops_s is not None else None,
      'final_metrics': {k: float(v) for k, v in jax.device_get(self.metrics).items()},
      'compiled_memory': self.memory_analysis,
    }


class TorchWorker(JsonLinesWorker):
  """benchmarks/torch_reference.py --worker as a subprocess: one case in one PyTorch variant
  (`torch_variants`: key, label, threads, compile)."""

  def __init__(
    self, variant: dict[str, Any], spec: dict[str, Any], batch_size: int, args: argparse.Namespace
  ) -> None:
    self.variant, self.name, self.batch_size = variant, variant['key'], batch_size
    super().__init__(TORCH_REFERENCE, '--worker')
    self.rounds: list[list[float]] = []
    self.final: dict[str, Any] = {}
    self.info = self.call(
      cmd='setup',
      spec=spec,
      batch_size=batch_size,
      seed=args.seed,
      threads=variant['threads'],
      adam=args.torch_adam,
      compile=variant['compile'],
      device=variant.get('device', 'cpu'),
    )

  def warmup(self, n: int) -> None:
    self.first_step_s = self.call(cmd='warmup', n=n)['first_step_s']

  def run(self, n: int) -> None:
    self.rounds.append(self.call(cmd='run', n=n)['times'])

  def summary(self, args: argparse.Namespace, step_flops: float | None, peak: float | None):
    times = [t for r in self.rounds for t in r]
    out = _times_summary(times, self.batch_size)
    gflops_s = step_flops / out['step_s_median'] / 1e9 if step_flops is not None else None
    return {
      **out,
      'first_step_s': self.first_step_s,
      'setup_s': self.info['setup_s'],
      'num_params_g_d': self.info['num_params'],
      'threads': self.info['threads'],
      'interop_threads': self.info['interop_threads'],
      'adam': args.torch_adam,
      'compiled': self.variant['compile'],
      'label': self.variant['label'],
      'steps_timed': len(times),
      'step_times_s': times,
      'step_times_s_per_round': self.rounds,
      'gflops_per_s_xla_count': gflops_s,
      'percent_of_peak': 100.0 * gflops_s / peak if gflops_s is not None and peak else None,
      'worker_peak_rss_mib': self.final.get('peak_rss_mib'),
      'device_peak_bytes_allocated': self.final.get('device_peak_bytes_allocated'),
      'final_metrics': self.final.get('final_metrics', {}),
    }


def memory_jax(case: str, batch_size: int, args: argparse.Namespace) -> dict[str, Any]:
  """Peak RSS of a fresh process that trains this case in JAX (`--memory-child`)."""
  cmd = (
    [
      sys.executable,
      str(Path(__file__).resolve()),
      '--memory-child',
      '--models',
      case,
      '--batch-sizes',
      str(batch_size),
      '--memory-steps',
      str(args.memory_steps),
      '--seed',
      str(args.seed),
    ]
    + (['--tiny'] if args.tiny else [])
    + [f'--set={item}' for item in args.set]
  )
  proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
  lines = [x for x in proc.stdout.splitlines() if x.startswith('MEMORY ')]
  if proc.returncode or not lines:
    raise RuntimeError(f'the JAX memory process failed (status {proc.returncode}): {cmd}')
  return {'steps': args.memory_steps, **json.loads(lines[-1][len('MEMORY ') :])}


def memory_torch(spec: dict[str, Any], batch_size: int, args: argparse.Namespace, variant):
  """Peak RSS of a fresh PyTorch worker that sets up this case and runs --memory-steps steps."""
  worker = TorchWorker(variant, spec, batch_size, args)
  worker.warmup(args.memory_steps)
  final = worker.close()
  return {
    'steps': args.memory_steps,
    'peak_rss_mib': final['peak_rss_mib'],
    'peak_rss_after_setup_mib': worker.info['peak_rss_mib'],
  }


def memory_child(args: argparse.Namespace) -> None:
  """--memory-child: build, compile and run one case; print RSS checkpoints as JSON."""
  after_import = peak_rss_mib()
  case = JaxCase(args.models[0], args.batch_sizes[0], args, make_mesh())
  after_compile = peak_rss_mib()
  case.warmup(args.memory_steps)
  stats = jax.devices()[0].memory_stats() or {}
  report = {
    'peak_rss_mib': peak_rss_mib(),
    'peak_rss_after_import_mib': after_import,
    'peak_rss_after_state_mib': case.rss_after_state_mib,
    'peak_rss_after_compile_mib': after_compile,
    'device_peak_bytes_in_use': stats.get('peak_bytes_in_use'),
  }
  print('MEMORY ' + json.dumps(report), flush=True)


def default_data_dir(arg: str | None) -> str:
  return arg or os.environ.get('TFDS_DATA_DIR') or str(REPO.parent / 'shared' / 'tfds')


def bench_pipeline(
  dataset: str, batch_size: int, image_shape: tuple[int, int, int], args: argparse.Namespace
) -> dict[str, Any]:
  """Host images/s of gan_jax.data.pipeline.build_train_dataset for this batch and image shape."""
  from gan_jax.data import pipeline as data  # noqa: PLC0415 - TensorFlow is imported only with --pipeline.

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


def _rate(x: float) -> str:
  """Images/s with 3 significant digits where it is small (SNGAN: a few per second)."""
  return f'{x:,.0f}' if x >= 100 else f'{x:.3g}'


def _img_s(r: dict[str, Any] | None) -> str:
  if not r:
    return 'n/a'
  return (
    f"{_rate(r['images_per_s_median'])} "
    f"({_rate(r['images_per_s_p10'])}-{_rate(r['images_per_s_p90'])})"
  )


def _gflops(value: float | None, percent: float | None) -> str:
  return 'n/a' if value is None else f'{value:,.1f} ({_fmt(percent, ".0f")}%)'


def table(results: list[dict[str, Any]], pipeline: bool, others: list[dict[str, Any]]) -> str:
  """Markdown: one row per case; `others` are the PyTorch variants that were timed."""
  head = ['model', 'batch', 'params G+D', 'gan_jax img/s (p10-p90)']
  for v in others:
    head += [f'{v["label"]} img/s (p10-p90)', f'gan_jax / {v["label"]}']
  head += ['gan_jax compile s (lower+XLA) / 1st step s']
  head += [f'{v["label"]} 1st step s' for v in others]
  head += ['GFLOP/step (XLA)', 'gan_jax GFLOP/s (% peak)']
  head += [f'{v["label"]} GFLOP/s (% peak)' for v in others]
  memory = any(r.get('memory') for r in results)
  mem_keys = ['jax'] + [v['key'] for v in others if v['memory']]
  if memory:
    labels = ['gan_jax'] + [v['label'] for v in others if v['memory']]
    head += ['peak RSS MiB: ' + ' / '.join(labels)]
  if pipeline:
    head += ['pipeline img/s', 'pipeline > step']
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for r in results:
    gflop = r['flops_per_step'] / 1e9 if r['flops_per_step'] is not None else None
    row = [r['model'], str(r['batch_size']), f"{r['num_params']:,}", _img_s(r)]
    for v in others:
      row += [_img_s(r.get(v['key'])), _fmt(r.get(f'ratio_jax_to_{v["key"]}'), '.2f')]
    row.append(
      f"{r['lower_s'] + r['compile_s']:.2f} ({r['lower_s']:.2f}+{r['compile_s']:.2f})"
      f" / {r['first_step_s']:.3f}"
    )
    row += [_fmt((r.get(v['key']) or {}).get('first_step_s'), '.3f') for v in others]
    row += [_fmt(gflop, '.3f'), _gflops(r['gflops_per_s'], r['percent_of_peak'])]
    for v in others:
      o = r.get(v['key']) or {}
      row.append(_gflops(o.get('gflops_per_s_xla_count'), o.get('percent_of_peak')))
    if memory:
      mem = r.get('memory') or {}
      row.append(' / '.join(_fmt((mem.get(k) or {}).get('peak_rss_mib'), ',.0f') for k in mem_keys))
    if pipeline:
      p = r.get('pipeline')
      if p is None:
        row += ['n/a', 'n/a']
      else:
        faster = p['images_per_s'] > r['images_per_s_median']
        row += [f"{p['images_per_s']:,.0f}", 'yes' if faster else 'NO']
    lines.append('| ' + ' | '.join(row) + ' |')
  return '\n'.join(lines)


def torch_variants(args: argparse.Namespace) -> list[dict[str, Any]]:
  """The PyTorch variants to time: one per --torch-threads entry, then --torch-compile's.

  Each is {key (the JSON key), label (the table's), threads, compile, memory (whether its
  peak RSS is measured: the first eager variant and the compiled one)}.
  """
  first = args.torch_threads[0]
  variants = [
    {
      'key': 'torch' if i == 0 else f'torch_{t}thr',
      'label': f'PyTorch {t} thr',
      'threads': t,
      'compile': False,
      'memory': i == 0,
    }
    for i, t in enumerate(dict.fromkeys(args.torch_threads))
  ]
  if args.torch_compile:
    variants.append(
      {
        'key': 'torch_compile',
        'label': f'PyTorch compiled {first} thr',
        'threads': first,
        'compile': True,
        'memory': True,
      }
    )
  return variants


def torch_status(args: argparse.Namespace) -> tuple[list[dict[str, Any]], str | None]:
  """(PyTorch variants to time, why none are) from --torch and the environment."""
  if args.torch == 'off':
    return [], '--torch off'
  if jax.process_count() > 1:
    return [], 'JAX runs in several processes (multi-host): PyTorch comparison skipped'
  if importlib.util.find_spec('torch') is None:
    if args.torch == 'on':
      raise SystemExit(
        "--torch on: torch is not installed; pip install -e '.[bench]' "
        '--extra-index-url https://download.pytorch.org/whl/cpu'
      )
    return [], 'torch is not installed (the bench extra)'
  return torch_variants(args), None


def bench_case(
  case: str,
  batch_size: int,
  args: argparse.Namespace,
  mesh,
  others: list[dict[str, Any]],
  log,
  overrides: dict[str, Any] | None = None,
  tolerate_torch_errors: bool = False,
) -> dict[str, Any]:
  """Times one case: JAX here and each PyTorch variant in its worker, alternating.

  `tolerate_torch_errors`: a PyTorch variant that fails to set up or warm up is left out
  (its error kept in the result as `<key>_error`) instead of failing the case.

  `overrides`: more config fields for the JAX side (`make_config`); give no PyTorch variant
  with fields the reference does not model (e.g. dtype).
  """
  jx = JaxCase(case, batch_size, args, mesh, overrides)
  jx.warmup(args.warmup)
  log(
    f'{case} B={batch_size}: gan_jax compiled in {jx.lower_s + jx.compile_s:.1f} s, '
    f'first step {jx.first_step_s:.3f} s'
  )
  spec = torch_spec(jx.config)
  workers = []
  failed: dict[str, str] = {}
  for variant in others:
    try:
      w = TorchWorker(variant, spec, batch_size, args)
      w.warmup(args.warmup)
    except RuntimeError as err:
      if not tolerate_torch_errors:
        raise
      failed[variant['key']] = str(err)  # Recorded; the other frameworks are still timed.
      log(f'{case} B={batch_size}: {variant["label"]} failed: {str(err).splitlines()[0]}')
      continue
    log(f'{case} B={batch_size}: {variant["label"]} first step {w.first_step_s:.3f} s')
    if w.info['num_params'] != jx.num_params:
      raise RuntimeError(
        f'{case}: PyTorch has {w.info["num_params"]} parameters, gan_jax {jx.num_params}.'
      )
    workers.append(w)
  frameworks = [jx, *workers]
  n_rounds = math.ceil(args.steps / args.round_steps)
  for r in range(n_rounds):
    n = min(args.round_steps, args.steps - r * args.round_steps)
    k = r % len(frameworks)  # Rotate who goes first, so no framework always follows another.
    for fw in frameworks[k:] + frameworks[:k]:
      fw.run(n)
  for w in workers:
    w.final = w.close()
  result = jx.summary(args)
  for key, err in failed.items():
    result[f'{key}_error'] = err
  cpu = jax.devices()[0].platform == 'cpu'
  for w in workers:
    peak = result['peak_gflops_total'] if cpu else None
    result[w.name] = w.summary(args, result['flops_per_step'], peak)
    result[f'ratio_jax_to_{w.name}'] = (
      result['images_per_s_median'] / result[w.name]['images_per_s_median']
    )
    per_round = [np.median(a) / np.median(b) for a, b in zip(w.rounds, jx.rounds)]  # time ratio
    result[f'ratio_jax_to_{w.name}_median_of_rounds'] = float(np.median(per_round))
  del jx, frameworks
  if args.memory:
    result['memory'] = {'jax': memory_jax(case, batch_size, args)}
    for variant in others:
      if variant['memory']:
        result['memory'][variant['key']] = memory_torch(spec, batch_size, args, variant)
  return result


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
  args = parse_args(argv)
  if args.memory_child:
    memory_child(args)
    return None
  devices = jax.devices()
  mesh = make_mesh()
  plat = devices[0].platform
  lead = jax.process_index() == 0
  others, no_torch = torch_status(args)
  if args.memory and jax.process_count() > 1:
    args.memory = False  # The memory processes would be single-process JAX.

  def log(msg: str) -> None:
    if lead:
      print(msg, file=sys.stderr, flush=True)

  if no_torch:
    log(f'PyTorch not timed: {no_torch}.')
  results = []
  pipeline_cache: dict[tuple, dict[str, Any]] = {}
  for case in args.models:
    for batch_size in args.batch_sizes:
      t0, load0 = time.perf_counter(), loadavg()
      r = bench_case(case, batch_size, args, mesh, others, log)
      # Other processes on the machine during the case (1-minute load average, start / end).
      r['loadavg_1min_start_end'] = [load0, loadavg()]
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
      r['case_wall_s'] = time.perf_counter() - t0
      results.append(r)
      ratios = ', '.join(
        f'{v["label"]} {r[v["key"]]["images_per_s_median"]:,.0f} img/s, ratio '
        f'{r["ratio_jax_to_" + v["key"]]:.2f}'
        for v in others
      )
      log(
        f"{case} B={batch_size}: gan_jax {r['images_per_s_median']:,.0f} img/s (median of "
        f'{args.steps}){"; " + ratios if ratios else ""} [{r["case_wall_s"]:.0f} s]'
      )

  torch_info = None
  if others and results:
    first = results[0][others[0]['key']]
    torch_info = {
      'version': package_version('torch'),
      'threads': first['threads'],
      'interop_threads': first['interop_threads'],
      'adam': args.torch_adam,
      'variants': others,
      'omp_wait_policy': os.environ.get('OMP_WAIT_POLICY'),
    }
  argv_list = sys.argv[1:] if argv is None else list(argv)
  report = {
    'date': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
    'command': shlex.join(['python', 'benchmarks/throughput.py', *argv_list]),
    'jax_version': jax.__version__,
    'jaxlib_version': package_version('jaxlib'),
    'platform': plat,
    'device_kind': devices[0].device_kind,
    'device_count': len(devices),
    'process_count': jax.process_count(),
    'host_cpu_count': os.cpu_count(),
    'python': platform.python_version(),
    'peak_gflops_per_device': args.peak_gflops,
    'n_critic': 1,
    'ema_decay': base_config().train.ema_decay,
    'tiny': args.tiny,
    'overrides': args.overrides,
    'steps': args.steps,
    'round_steps': args.round_steps,
    'warmup_steps': args.warmup,
    'torch': torch_info,
    'torch_skipped': no_torch,
    'memory_method': (
      'VmHWM (/proc/self/status; peak RSS since exec) of a fresh process per case and '
      'framework that imports only that framework, builds the case, compiles (JAX) and runs '
      f'{args.memory_steps} steps; ru_maxrss is not used: Linux carries the parent\'s peak '
      'RSS into a child across fork + exec'
      if args.memory
      else None
    ),
    'argv': argv_list,
    'results': results,
  }
  if lead:
    head = (
      f'\nJAX {jax.__version__}, {len(devices)} x {devices[0].device_kind} ({plat}), '
      f'peak {args.peak_gflops:g} GFLOP/s per device'
    )
    if torch_info:
      threads = ', '.join(str(v['threads']) for v in others if not v['compile'])
      head += (
        f'; PyTorch {torch_info["version"]}, {threads} threads '
        f'(OMP_WAIT_POLICY={torch_info["omp_wait_policy"]}), {args.torch_adam} Adam'
      )
    print(head + f'; median of {args.steps} steps, rounds of {args.round_steps}\n')
    print(table(results, args.pipeline, others))
    path = (
      Path(args.json) if args.json else REPO / 'benchmarks' / 'results' / f'throughput_{plat}.json'
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + '\n')
    print(f'\nwrote {path}')
  return report


if __name__ == '__main__':
  main()
