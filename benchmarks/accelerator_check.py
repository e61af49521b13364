"""One command for a machine with an accelerator: GPU-relevant checks and gan_jax's speed there
against PyTorch eager and `torch.compile` on the same device, within a time budget.

    python benchmarks/accelerator_check.py                      # writes benchmarks/results/
    python benchmarks/accelerator_check.py --out DIR --budget-s 420

Sections, in this order (each is timed; a failed one is recorded with its error and the rest
still run; once the budget is spent the remaining cases are listed as skipped):

  1. checks: the parts of the test suite that matter on a GPU, run in this process:
     * `sharded_step`: DCGAN-28 (batch 64) data-parallel over every local device with
       `jit_train_step` on `make_mesh()`; 3 steps; metrics finite; the same 3 steps from the
       same state run again give the same bits (`bitwise_repeatable`, reported, not required:
       XLA's GPU convolutions may pick non-deterministic algorithms unless
       `XLA_FLAGS=--xla_gpu_deterministic_ops=true`);
     * `bf16`: the same with `config.dtype = 'bfloat16'`: metrics finite, parameters,
       optimizer state and EMA still float32;
     * `replicas_vmap`: K = 2 replicas (seeds 0, 1) in one vmapped program
       (`replicas.make_replicated_train_step(step, 'vmap')`) against each run alone, 3 steps:
       the step-1 losses agree to 1e-3 (relative) and the parameters' differences are small
       against the distance they moved (mean |diff| <= 1% of mean |update|);
  2. throughput at batch 64 and 256 of DCGAN-28, DCGAN-32 and SNGAN-32 (the newest
     architecture; `benchmarks/throughput.py`'s cases, n_critic 1): gan_jax's jitted step
     against `benchmarks/torch_reference.py` in eager mode and under `torch.compile` (G and D
     compiled, inductor, default mode), on the same device, timed alternately in rounds;
     plus a bf16 row (DCGAN-32 at 256, `dtype=bfloat16`, JAX only);
  3. K replicas in one program: DCGAN-28 at batch 64 per replica, K = 1, 4, 16, 64 (vmap), as
     images/s of all K replicas against K = 1 (the K states are copies of one: speed does
     not depend on the values);
  4. batch 1024 of the three models (JAX and PyTorch eager; `torch.compile` if time is left).

Per throughput case: images/s (median of `--steps` timed steps, p10-p90), gan_jax/PyTorch
ratios, JAX's lower + XLA compile seconds and first step, PyTorch's first step (for
`torch.compile` that is its compile time), XLA's memory analysis of the compiled step
(arguments + outputs + temporaries - donated, per device) and PyTorch's
`torch.cuda.max_memory_allocated` (its worker process, set-up included).

Where PyTorch is absent the JAX side still runs; where PyTorch has no CUDA it is skipped on a
GPU backend (a CPU PyTorch would not be a like-for-like comparison). Without an accelerator
(JAX sees only the CPU) the script says so and runs the same sections at `--tiny` sizes
(widths 8, batch 64, K = 1 and 4) as a smoke test: `benchmarks/throughput.py` is the CPU
benchmark. On a machine without TensorFlow (accelerator images often lack it) the TFDS
modules are replaced by placeholders before gan_jax is imported: no section reads data.

Output (rewritten after every case, so a run cut short keeps what it measured):
`<out>/accelerator_<platform>.json` (every number, versions, device, the command, errors and
skipped items) and `<out>/accelerator_<platform>.md` (the tables).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform as platform_lib
import shlex
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable
from unittest import mock

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # Sibling benchmark files, not a package.
  sys.path.insert(0, str(HERE))
if importlib.util.find_spec('gan_jax') is None:  # A checkout without `pip install -e .`.
  sys.path.insert(0, str(REPO))


def stub_missing_modules(names: tuple[str, ...] = ('tensorflow', 'tensorflow_datasets')) -> list:
  """Placeholders for absent modules that gan_jax imports but this script never uses.

  `gan_jax.training.replicas` imports the training loop, which imports the TFDS input pipeline; the
  checks and benchmarks here feed fixed batches already on the device. Returns the names
  replaced (recorded in the JSON).
  """
  stubbed = []
  for name in names:
    if importlib.util.find_spec(name) is None:
      sys.modules[name] = mock.MagicMock(name=name)
      stubbed.append(name)
  return stubbed


STUBBED = stub_missing_modules()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import throughput  # noqa: E402
from bench_util import default_threads, package_version  # noqa: E402

from gan_jax.training import replicas  # noqa: E402
from gan_jax.core.losses import get_loss  # noqa: E402
from gan_jax.core.sharding import batch_sharding, make_mesh, replicate, replicated  # noqa: E402
from gan_jax.core.state import create_state  # noqa: E402
from gan_jax.core.train_step import jit_train_step, make_train_step  # noqa: E402

MODELS = ('dcgan28', 'dcgan32', 'sngan32')
SECTIONS = ('checks', 'throughput', 'replicas', 'large')
# Dense fp32 (non-tensor-core) peak of one device, GFLOP/s, from the vendors' datasheets; a
# device not listed gets no % of peak. XLA and cuDNN may run fp32 convolutions as TF32 on
# tensor cores, so more than 100% is possible.
PEAK_GFLOPS = {'NVIDIA H200': 67_000.0, 'NVIDIA H100 80GB HBM3': 67_000.0, 'cpu': 166.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(
    description=__doc__.splitlines()[0],
    formatter_class=argparse.RawDescriptionHelpFormatter,
    epilog='\n'.join(__doc__.splitlines()[2:]),
  )
  p.add_argument('--out', default=str(HERE / 'results'), help='output folder')
  p.add_argument(
    '--budget-s',
    type=float,
    default=420.0,
    help='wall-clock budget in seconds (default 420); cases that would start after it are '
    'skipped and listed',
  )
  p.add_argument('--models', default=','.join(MODELS), help=f'from {",".join(MODELS)}')
  p.add_argument('--batch-sizes', default='64,256', help='section 2 batch sizes')
  p.add_argument('--large-batch', type=int, default=1024, help='section 4 batch size (0: off)')
  p.add_argument('--ks', default='1,4,16,64', help='section 3 replica counts')
  p.add_argument('--steps', type=int, default=20, help='timed steps per framework and case')
  p.add_argument('--round-steps', type=int, default=5, help='steps per framework per round')
  p.add_argument('--warmup', type=int, default=3, help='untimed steps first (>= 1)')
  p.add_argument('--torch', choices=('auto', 'off'), default='auto', help='PyTorch reference')
  p.add_argument('--torch-compile', action=argparse.BooleanOptionalAction, default=True)
  p.add_argument('--tiny', action='store_true', help='widths 8 (the CPU smoke test)')
  p.add_argument(
    '--sections',
    default='checks,throughput,replicas,large',
    help='which sections to run, in their fixed order (default all: checks,throughput,'
    'replicas,large); --models and --batch-sizes narrow the throughput ones',
  )
  p.add_argument(
    '--bf16',
    action=argparse.BooleanOptionalAction,
    default=True,
    help='the bf16 row of section 2 (default on)',
  )
  p.add_argument('--seed', type=int, default=0)
  args = p.parse_args(argv)
  args.sections = [x for x in args.sections.split(',') if x]
  unknown = [x for x in args.sections if x not in SECTIONS]
  if unknown or not args.sections:
    p.error(f'--sections: unknown {unknown}; choose from {",".join(SECTIONS)}')
  args.models = [m for m in args.models.split(',') if m]
  bad = [m for m in args.models if m not in MODELS]
  if bad or not args.models:
    p.error(f'--models: unknown {bad}; choose from {",".join(MODELS)}')
  try:
    args.batch_sizes = [int(x) for x in args.batch_sizes.split(',') if x]
    args.ks = [int(x) for x in args.ks.split(',') if x]
  except ValueError:
    p.error('--batch-sizes and --ks are comma-separated integers, e.g. 64,256')
  if not args.batch_sizes or min(args.batch_sizes) < 1 or not args.ks or min(args.ks) < 1:
    p.error('--batch-sizes and --ks need positive integers')
  if args.steps < 1 or args.round_steps < 1 or args.warmup < 1:
    p.error('--steps, --round-steps and --warmup must be >= 1')
  return args


class Budget:
  """Wall-clock budget: `left()` seconds remain; `fits(estimate)` before starting a case."""

  def __init__(self, seconds: float) -> None:
    self.start, self.seconds = time.perf_counter(), seconds

  def elapsed(self) -> float:
    return time.perf_counter() - self.start

  def left(self) -> float:
    return self.seconds - self.elapsed()

  def fits(self, estimate: float) -> bool:
    return self.left() >= estimate


class Report:
  """The JSON report, written (with its markdown) after every change."""

  def __init__(self, args: argparse.Namespace, argv: list[str], budget: Budget) -> None:
    devices = jax.devices()
    self.path = Path(args.out) / f'accelerator_{devices[0].platform}.json'
    self.budget = budget
    self.data: dict[str, Any] = {
      'date': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
      'command': shlex.join(['python', 'benchmarks/accelerator_check.py', *argv]),
      'jax_version': jax.__version__,
      'jaxlib_version': package_version('jaxlib'),
      'flax_version': package_version('flax'),
      'torch_version': package_version('torch'),
      'python': platform_lib.python_version(),
      'platform': devices[0].platform,
      'device_kind': devices[0].device_kind,
      'device_count': len(devices),
      'host_cpu_count': os.cpu_count(),
      'xla_flags': os.environ.get('XLA_FLAGS'),
      'stubbed_modules': STUBBED,
      'tiny': args.tiny,
      'budget_s': args.budget_s,
      'steps': args.steps,
      'round_steps': args.round_steps,
      'warmup_steps': args.warmup,
      'torch': None,
      'checks': {},
      'throughput': [],
      'replicas': [],
      'errors': [],
      'skipped': [],
      'section_s': {},
    }

  def error(self, where: str, err: BaseException) -> None:
    tb = traceback.format_exc(limit=20)
    self.data['errors'].append({'where': where, 'error': f'{type(err).__name__}: {err}', 'tb': tb})
    print(f'{where}: FAILED: {type(err).__name__}: {err}', file=sys.stderr, flush=True)
    self.save()

  def save(self) -> None:
    self.data['wall_s'] = self.budget.elapsed()
    self.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = self.path.with_suffix('.json.tmp')
    tmp.write_text(json.dumps(self.data, indent=2, default=_json_default) + '\n')
    os.replace(tmp, self.path)
    md = self.path.with_suffix('.md')
    md.write_text(markdown(self.data) + '\n')


def _json_default(x: Any) -> Any:
  if isinstance(x, (np.floating, np.integer)):
    return x.item()
  if isinstance(x, np.bool_):
    return bool(x)
  return str(x)


def log(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


# --- 1. checks ---------------------------------------------------------------------------------


def _state_and_step(model: str, batch_size: int, args, mesh, overrides=None, seed=None):
  config = throughput.make_config(
    model, batch_size, args.seed if seed is None else seed, args.tiny, overrides
  )
  gan, state = create_state(config)
  step = make_train_step(
    gan, get_loss(config.train.loss), ema_decay=config.train.ema_decay, mesh=mesh
  )
  return config, gan, state, step


def _leaves(tree) -> list[np.ndarray]:
  return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]


def _run_steps(jitted, state, batch, n: int):
  metrics = []
  for _ in range(n):
    state, m = jitted(state, batch)
    metrics.append({k: float(v) for k, v in jax.device_get(m).items()})
  return state, metrics


def check_sharded_step(args, mesh, overrides=None) -> dict[str, Any]:
  """3 steps over every local device, twice from the same state; see the module docstring."""
  config, gan, state, step = _state_and_step('dcgan28', 64, args, mesh, overrides)
  jitted = jit_train_step(step, mesh)
  batch = throughput.fixed_batch(mesh, 64, gan.image_shape, args.seed)
  host_state = jax.device_get(state)
  results = []
  for _ in range(2):
    s, metrics = _run_steps(jitted, replicate(host_state, mesh), batch, 3)
    results.append((_leaves(s), metrics))
  (a, ma), (b, _) = results
  finite = all(np.isfinite(v) for m in ma for v in m.values()) and all(
    np.isfinite(x).all() for x in a if np.issubdtype(x.dtype, np.floating)
  )
  bitwise = all(np.array_equal(x, y) for x, y in zip(a, b))
  max_diff = max(
    (float(np.max(np.abs(x.astype(np.float64) - y))) for x, y in zip(a, b) if x.size), default=0
  )
  float_dtypes = sorted({str(x.dtype) for x in a if np.issubdtype(x.dtype, np.floating)})
  out = {
    'status': 'pass' if finite else 'fail',
    'devices': int(mesh.devices.size),
    'dtype': config.get('dtype', 'float32'),
    'metrics_step3': ma[-1],
    'finite': bool(finite),
    'bitwise_repeatable': bool(bitwise),
    'repeat_max_abs_diff': max_diff,
    'state_float_dtypes': float_dtypes,
  }
  if overrides and overrides.get('dtype') == 'bfloat16':
    # Mixed precision keeps parameters, optimizer state, EMA and BatchNorm statistics float32.
    ok = float_dtypes == ['float32']
    out['state_stays_float32'] = ok
    out['status'] = 'pass' if finite and ok else 'fail'
  return out


def check_replicas_vmap(args, mesh) -> dict[str, Any]:
  """K = 2 replicas in one vmapped program against each run alone, 3 steps."""
  built = [_state_and_step('dcgan28', 64, args, None, seed=s) for s in (0, 1)]
  gan, step = built[0][1], built[0][3]
  # Host copies: the jitted steps donate their input state.
  states = [jax.device_get(b[2]) for b in built]
  image_shape = tuple(gan.image_shape)
  host = np.random.default_rng(args.seed).uniform(-1, 1, (2, 1, 64, *image_shape))
  host = host.astype(np.float32)
  single = jit_train_step(step, mesh)
  alone, alone_metrics, initial = [], [], []
  for i, state in enumerate(states):
    initial.append(_leaves(state))
    batch = {'image': jax.device_put(host[i], batch_sharding(mesh))}
    s, m = _run_steps(single, replicate(state, mesh), batch, 3)
    alone.append(_leaves(s))
    alone_metrics.append(m)
  program = replicas.jit_replicated_train_step(
    replicas.make_replicated_train_step(step, 'vmap'), mesh
  )
  stacked = replicate(replicas.stack(states), mesh)
  batch = {'image': jax.device_put(host, batch_sharding(mesh, batch_axis=2))}
  stacked_metrics = []
  for _ in range(3):
    stacked, m = program(stacked, batch)
    stacked_metrics.append(jax.device_get(m))
  rows = []
  for i in range(2):
    together = _leaves(replicas.unstack(stacked, i))
    floats = [
      (x.astype(np.float64), y, b)
      for x, y, b in zip(together, alone[i], initial[i])
      if np.issubdtype(x.dtype, np.floating) and x.size
    ]
    diff = float(np.mean(np.concatenate([np.abs(x - y).ravel() for x, y, _ in floats])))
    update = float(np.mean(np.concatenate([np.abs(y - b).ravel() for _, y, b in floats])))
    loss_rel = max(
      abs(float(stacked_metrics[0][k][i]) - alone_metrics[i][0][k])
      / max(abs(alone_metrics[i][0][k]), 1e-6)
      for k in ('d_loss', 'g_loss')
    )
    rows.append(
      {
        'replica': i,
        'step1_loss_rel_diff': loss_rel,
        'mean_abs_param_diff': diff,
        'mean_abs_update': update,
        'bitwise_equal': all(np.array_equal(x, y) for x, y in zip(together, alone[i])),
      }
    )
  ok = all(
    r['step1_loss_rel_diff'] <= 1e-3 and r['mean_abs_param_diff'] <= 0.01 * r['mean_abs_update']
    for r in rows
  )
  return {'status': 'pass' if ok else 'fail', 'impl': 'vmap', 'k': 2, 'replicas': rows}


# --- 2-4. throughput ---------------------------------------------------------------------------


def torch_variants(args, platform: str) -> tuple[list[dict[str, Any]], str | None]:
  """PyTorch variants to time on this backend, and why there are none where there are none."""
  if args.torch == 'off':
    return [], '--torch off'
  if importlib.util.find_spec('torch') is None:
    return [], 'torch is not installed'
  device = 'cpu'
  if platform == 'gpu':
    import torch  # noqa: PLC0415 - only to ask for CUDA; the timing runs in worker processes.

    if not torch.cuda.is_available():
      return [], 'torch has no CUDA device here: a CPU PyTorch is no like-for-like comparison'
    device = 'cuda'
  elif platform != 'cpu':
    return [], f'no PyTorch reference for the {platform} backend'
  threads = default_threads()
  variants = [
    {
      'key': 'torch',
      'label': 'PyTorch eager',
      'threads': threads,
      'compile': False,
      'memory': False,
      'device': device,
    },
  ]
  if args.torch_compile:
    variants.append(
      {
        'key': 'torch_compile',
        'label': 'torch.compile',
        'threads': threads,
        'compile': True,
        'memory': False,
        'device': device,
      }
    )
  return variants, None


def bench_args(args) -> argparse.Namespace:
  """The fields `throughput.bench_case` reads."""
  kind = jax.devices()[0].device_kind if jax.devices()[0].platform != 'cpu' else 'cpu'
  return argparse.Namespace(
    seed=args.seed,
    tiny=args.tiny,
    steps=args.steps,
    round_steps=args.round_steps,
    warmup=args.warmup,
    memory=False,
    torch_adam='fused',
    peak_gflops=PEAK_GFLOPS.get(kind, float('nan')),
  )


def _clean_case(r: dict[str, Any]) -> dict[str, Any]:
  """Drops NaN %-of-peak (unknown peak) so the JSON stays standard."""
  for d in [r, *(v for v in r.values() if isinstance(v, dict))]:
    for k in ('percent_of_peak', 'peak_gflops_total'):
      if isinstance(d.get(k), float) and d[k] != d[k]:
        d[k] = None
  return r


def throughput_cases(args, section: int) -> list[tuple[str, int, dict | None, bool]]:
  """(model, batch, overrides, with torch.compile) of a section, in order."""
  if section == 2:
    cases = [(m, b, None, True) for b in args.batch_sizes for m in args.models]
    if 'dcgan32' in args.models and args.bf16:
      cases.append(('dcgan32', max(args.batch_sizes), {'dtype': 'bfloat16'}, False))
    return cases
  if section == 4 and args.large_batch:
    return [(m, args.large_batch, None, True) for m in args.models]
  return []


def run_throughput(args, section: int, mesh, report: Report, budget: Budget, cost: dict) -> None:
  variants, why = torch_variants(args, jax.devices()[0].platform)
  report.data['torch'] = {'variants': variants, 'skipped_because': why}
  bargs = bench_args(args)
  for model, batch, overrides, with_compile in throughput_cases(args, section):
    name = f'{model} B={batch}' + (' bf16' if overrides else '')
    others = (
      []
      if overrides
      else [v for v in variants if not v['compile'] or (with_compile and section == 2)]
    )
    if section == 4 and with_compile and args.torch_compile:
      # torch.compile at the large batch only if the time of a compiled case is left over.
      if budget.fits(cost.get('compiled', 90.0) + cost.get('plain', 30.0)):
        others = [v for v in variants]
    estimate = cost.get('compiled' if any(v['compile'] for v in others) else 'plain', 30.0)
    if batch % mesh.devices.size:
      report.data['skipped'].append(f'{name}: batch not a multiple of {mesh.devices.size}')
      continue
    if not budget.fits(estimate):
      report.data['skipped'].append(
        f'{name}: budget ({budget.left():.0f} s left, ~{estimate:.0f} needed)'
      )
      report.save()
      continue
    t0 = time.perf_counter()
    try:
      r = throughput.bench_case(
        model, batch, bargs, mesh, others, log, overrides, tolerate_torch_errors=True
      )
    except Exception as err:  # noqa: BLE001 - recorded; the next case still runs.
      report.error(f'throughput {name}', err)
      continue
    dt = time.perf_counter() - t0
    key = 'compiled' if any(v['compile'] for v in others) else 'plain'
    cost[key] = max(cost.get(key, 0.0), dt)
    r['section'] = section
    r['overrides'] = overrides or {}
    r['case_wall_s'] = dt
    r['device_peak_bytes_in_use_so_far'] = (jax.devices()[0].memory_stats() or {}).get(
      'peak_bytes_in_use'
    )
    report.data['throughput'].append(_clean_case(r))
    report.save()
    ratios = ', '.join(
      f'{v["label"]} {r[v["key"]]["images_per_s_median"]:,.0f} img/s '
      f'({r["ratio_jax_to_" + v["key"]]:.2f}x)'
      for v in others
      if v['key'] in r
    )
    log(f'{name}: gan_jax {r["images_per_s_median"]:,.0f} img/s; {ratios} [{dt:.0f} s]')


def run_replicas(args, mesh, report: Report, budget: Budget) -> None:
  """Section 3: K replicas of DCGAN-28 in one vmapped program against K = 1."""
  config, gan, state, _ = _state_and_step('dcgan28', 64, args, None)
  step = make_train_step(gan, get_loss(config.train.loss), ema_decay=config.train.ema_decay)
  vstep = replicas.make_replicated_train_step(step, 'vmap')
  # What replicas.jit_replicated_train_step compiles (without hyperparameters), as a jax.jit
  # object, so that compilation is timed on its own (lower + compile) and analysed.
  rep = replicated(mesh)
  program = jax.jit(
    lambda states, batches: vstep(states, batches),
    in_shardings=(rep, batch_sharding(mesh, batch_axis=2)),
    out_shardings=(rep, rep),
    donate_argnums=(0,),
  )
  host_state = jax.device_get(state)
  base = None
  for k in args.ks:
    name = f'replicas K={k}'
    if not budget.fits(20.0 + 0.5 * k):
      report.data['skipped'].append(f'{name}: budget ({budget.left():.0f} s left)')
      report.save()
      continue
    try:
      t0 = time.perf_counter()
      stacked = replicate(replicas.stack([host_state] * k), mesh)
      shape = (k, 1, 64, *gan.image_shape)
      host = np.random.default_rng(args.seed).uniform(-1, 1, shape).astype(np.float32)
      batch = {'image': jax.device_put(host, batch_sharding(mesh, batch_axis=2))}
      t1 = time.perf_counter()
      lowered = program.lower(stacked, batch)
      compiled = lowered.compile()
      compile_s = time.perf_counter() - t1
      times = []
      for i in range(args.warmup + args.steps):
        s0 = time.perf_counter()
        stacked, metrics = compiled(stacked, batch)
        jax.block_until_ready(metrics)
        if i >= args.warmup:
          times.append(time.perf_counter() - s0)
      med = float(np.median(times))
      r = {
        'model': 'dcgan28',
        'k': k,
        'batch_per_replica': 64,
        'impl': 'vmap',
        'compile_s': compile_s,
        'step_s_median': med,
        'images_per_s': k * 64 / med,
        'step_times_s': times,
        'compiled_memory': throughput.memory_of(compiled),
        'finite': bool(np.isfinite(np.asarray(jax.device_get(metrics)['d_loss'])).all()),
        'case_wall_s': time.perf_counter() - t0,
      }
      if k == 1:
        base = r['images_per_s']
      r['speedup_vs_k1'] = r['images_per_s'] / base if base else None
      report.data['replicas'].append(r)
      report.save()
      log(
        f'{name}: {r["images_per_s"]:,.0f} img/s, {r["speedup_vs_k1"] or 0:.2f}x K=1, '
        f'compile {compile_s:.1f} s'
      )
      del stacked, batch
    except Exception as err:  # noqa: BLE001 - recorded; the next K still runs.
      report.error(name, err)


# --- markdown ----------------------------------------------------------------------------------


def _f(x: Any, spec: str = ',.0f') -> str:
  return 'n/a' if x is None else format(x, spec)


def _mib(b: Any) -> str:
  return 'n/a' if b is None else f'{b / 2**20:,.0f}'


def markdown(d: dict[str, Any]) -> str:
  """The report's tables."""
  lines = [
    f"# Accelerator check: {d['device_count']} x {d['device_kind']} ({d['platform']})",
    '',
    f"`{d['command']}`, {d['date']}, {d.get('wall_s', 0):.0f} s of a {d['budget_s']:.0f} s "
    f"budget. JAX {d['jax_version']} (jaxlib {d['jaxlib_version']}, flax {d['flax_version']}), "
    f"PyTorch {d['torch_version']}, Python {d['python']}, {d['host_cpu_count']} host CPUs."
    + (
      f" Placeholders for absent modules: {', '.join(d['stubbed_modules'])}."
      if d['stubbed_modules']
      else ''
    )
    + (' Tiny models (widths 8): a smoke test, not a benchmark.' if d['tiny'] else ''),
    '',
    '## Checks',
    '',
    '| check | status | details |',
    '|---|---|---|',
  ]
  for name, c in d['checks'].items():
    detail = {k: v for k, v in c.items() if k not in ('status', 'metrics_step3')}
    lines.append(f"| {name} | {c.get('status')} | `{json.dumps(detail, default=str)}` |")
  torch_info = d.get('torch') or {}
  if torch_info.get('skipped_because'):
    lines += ['', f"PyTorch not timed: {torch_info['skipped_because']}."]
  lines += [
    '',
    '## Train-step throughput',
    '',
    f"Images/s: median of {d['steps']} timed steps (p10-p90), frameworks alternating in rounds "
    f"of {d['round_steps']}; one step = one D and one G update (n_critic 1), Adam, EMA.",
    '',
    '| model | batch | gan_jax img/s | PyTorch eager img/s | gan_jax / eager | torch.compile '
    'img/s | gan_jax / compile | JAX compile s (lower+XLA) | 1st step s: JAX / eager / '
    'compile | memory MiB: XLA step / torch peak (eager, compile) |',
    '|' + '---|' * 10,
  ]
  for r in d['throughput']:
    e, c = r.get('torch') or {}, r.get('torch_compile') or {}
    name = r['model'] + (' bf16' if r.get('overrides', {}).get('dtype') == 'bfloat16' else '')
    lines.append(
      '| '
      + ' | '.join(
        [
          name,
          str(r['batch_size']),
          throughput._img_s(r),
          throughput._img_s(e) if e else 'n/a',
          _f(r.get('ratio_jax_to_torch'), '.2f'),
          throughput._img_s(c) if c else 'n/a',
          _f(r.get('ratio_jax_to_torch_compile'), '.2f'),
          f"{r['lower_s'] + r['compile_s']:.1f} ({r['lower_s']:.1f}+{r['compile_s']:.1f})",
          ' / '.join(
            [
              _f(r.get('first_step_s'), '.3f'),
              _f(e.get('first_step_s'), '.3f'),
              _f(c.get('first_step_s'), '.1f'),
            ]
          ),
          ' / '.join(
            [
              _mib((r.get('compiled_memory') or {}).get('total')),
              _mib(e.get('device_peak_bytes_allocated')),
              _mib(c.get('device_peak_bytes_allocated')),
            ]
          ),
        ]
      )
      + ' |'
    )
  if d['replicas']:
    lines += [
      '',
      '## K GANs in one program (DCGAN-28, batch 64 per replica, vmap)',
      '',
      '| K | images/s (all replicas) | step ms | x K=1 images/s | compile s | XLA memory MiB |',
      '|---|---|---|---|---|---|',
    ]
    for r in d['replicas']:
      lines.append(
        f"| {r['k']} | {r['images_per_s']:,.0f} | {1e3 * r['step_s_median']:.2f} | "
        f"{_f(r.get('speedup_vs_k1'), '.2f')} | {r['compile_s']:.1f} | "
        f"{_mib((r.get('compiled_memory') or {}).get('total'))} |"
      )
  if d['skipped']:
    lines += ['', '## Skipped', ''] + [f'- {s}' for s in d['skipped']]
  if d['errors']:
    lines += ['', '## Errors', ''] + [f"- {e['where']}: {e['error']}" for e in d['errors']]
  return '\n'.join(lines)


# --- main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
  argv = sys.argv[1:] if argv is None else list(argv)
  args = parse_args(argv)
  budget = Budget(args.budget_s)
  platform = jax.devices()[0].platform
  if platform == 'cpu' and not args.tiny:
    log(
      'no accelerator: JAX sees only the CPU, so this runs as a smoke test at --tiny sizes '
      '(batch 64, K = 1 and 4, no batch 1024); benchmarks/throughput.py is the CPU benchmark.'
    )
    args.tiny, args.batch_sizes, args.large_batch = True, [64], 0
    args.ks = [k for k in args.ks if k <= 4] or [1]
  report = Report(args, argv, budget)
  mesh = make_mesh()
  log(
    f'{len(jax.devices())} x {jax.devices()[0].device_kind} ({platform}), JAX {jax.__version__}; '
    f'budget {args.budget_s:.0f} s; writing {report.path}'
  )
  cost: dict[str, float] = {}
  sections: list[tuple[str, Callable[[], None]]] = []

  def check(name: str, fn: Callable[[], dict[str, Any]]) -> Callable[[], None]:
    def run() -> None:
      try:
        report.data['checks'][name] = fn()
      except Exception as err:  # noqa: BLE001
        report.data['checks'][name] = {'status': 'error', 'error': f'{type(err).__name__}: {err}'}
        report.error(f'check {name}', err)
      log(f"check {name}: {report.data['checks'][name]['status']}")
      report.save()

    return run

  sections += [
    ('checks sharded_step', check('sharded_step', lambda: check_sharded_step(args, mesh))),
    ('checks bf16', check('bf16', lambda: check_sharded_step(args, mesh, {'dtype': 'bfloat16'}))),
    ('checks replicas_vmap', check('replicas_vmap', lambda: check_replicas_vmap(args, mesh))),
    ('throughput', lambda: run_throughput(args, 2, mesh, report, budget, cost)),
    ('replicas', lambda: run_replicas(args, mesh, report, budget)),
    ('large', lambda: run_throughput(args, 4, mesh, report, budget, cost)),
  ]
  for name, run in sections:
    if name.split()[0] not in args.sections and name not in args.sections:
      continue
    t0 = time.perf_counter()
    try:
      run()
    except Exception as err:  # noqa: BLE001 - a section's own failure; the next still runs.
      report.error(name, err)
    report.data['section_s'][name] = time.perf_counter() - t0
    report.save()
  print(markdown(report.data))
  print(f'\nwrote {report.path} and {report.path.with_suffix(".md")}')
  return report.data


if __name__ == '__main__':
  main()
