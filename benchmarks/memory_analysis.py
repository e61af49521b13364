"""XLA's compile-time memory analysis of the train step, for a list of options.

Issue 21 asks why gan_jax's SNGAN-32 step needs twice PyTorch's peak memory at batch 256
(6,360 against 3,128 MiB RSS, benchmarks/throughput.py). One such step takes ~45 s on a
2-core CPU, so this script does not run it: it compiles it. Each option runs in a fresh
process (XLA reads `XLA_FLAGS` once, at start-up) that builds the train step of one case
exactly as benchmarks/xla_options.py does (the case's config from benchmarks/throughput.py,
`create_state`, `make_train_step` with n_critic 1 and the EMA on, `jit_train_step` with the
state donated, a fixed random batch on the device), calls `.lower(state, batch).compile()`
without running it, and reports `compiled.memory_analysis()` per device: argument, output,
alias (donated argument bytes reused by outputs) and temp (XLA's buffer assignment for
everything else the step holds while it runs) bytes, `total` = argument + output + temp -
alias, and the generated code; all in MiB. Temp is what the options below change.

Options (name: what the child process computes or sets):

  baseline   the whole train step as gan_jax compiles it by default (one D update, one G
             update, the EMA; on CPU `train.cpu_scheduler='concurrency'`, XLA's default).
  mem_sched  train.cpu_scheduler='memory': XLA's memory-optimised CPU schedule; bitwise the
             same results. (benchmarks/results/memory_analysis_sngan32.json was written
             while 'memory' was the default: its `baseline` rows are this option's, and
             its `xla_sched` rows are today's baseline.)
  no_ema     train.ema_decay = 0 (no EMA: ema_params is g_params).
  d_grad     only D's loss and its gradient (D judges a real and a generated batch, the
             case's loss, gradient wrt D's parameters; G runs forward only, no update).
  g_grad     only G's loss and its gradient (G forward, D judges it, gradient wrt G).
  g_forward  only G's forward pass in training mode (the generated batch).
  mem_sched_d_grad / mem_sched_g_grad   d_grad / g_grad with the memory-optimised schedule.
  remat      model.remat = True: G's and D's residual blocks are rematerialised
             (`flax.nnx.remat`: their activations are recomputed in the backward pass
             instead of stored; the same step to float rounding).
  remat_d    remat on D's blocks only (the child builds the models with model.remat false,
             then sets D's `remat` attribute).
  remat_g    remat on G's blocks only.
  mem_sched_remat   remat with the memory-optimised schedule.
  one_thread XLA_FLAGS=--xla_cpu_multi_thread_eigen=false (control: buffer assignment does
             not depend on threads).
  n_critic5  the whole step with 5 D updates per G update (the SNGAN paper's n_dis, unrolled
             in one program; its batch is [5, B, H, W, C]).

Each row also times the stages of the compilation: trace_s (Python tracing to a jaxpr),
lower_s (to StableHLO), xla_compile_s (XLA), and compile_s, their sum.

Run from the repository root (venv active):

    python benchmarks/memory_analysis.py --case sngan32 --batch-sizes 64,256
    python benchmarks/memory_analysis.py --case sngan32 --batch-sizes 256 \
        --options baseline,mem_sched,g_grad,mem_sched_g_grad,d_grad,mem_sched_d_grad,remat
    python benchmarks/memory_analysis.py --case dcgan32 --tiny --options baseline,no_ema  # seconds

Output: a markdown table on stdout (one row per batch size and option; "vs baseline" is the
option's temp bytes over the first option's at the same batch size) and JSON (default
benchmarks/results/memory_analysis_<case>.json) with every measurement. An unknown case or
option, or an option the case's model cannot take (remat on a model without the field), is
one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_util  # noqa: E402

MIB = 2**20

# Option -> what its child sets: 'part' (the function compiled: 'step' (default), 'd_grad',
# 'g_grad', 'g_forward'), 'set' (config fields, 'block.name' -> value), 'remat_only' ('g' or
# 'd': rematerialise that player's blocks only), 'cpu_options' (a scheduler of
# gan_jax.core.train_step.CPU_SCHEDULERS, which replaces CPU_COMPILER_OPTIONS), 'flags' (XLA_FLAGS),
# 'n_critic' (D updates per G update in the whole step, unrolled; 1 unless given).
OPTIONS: dict[str, dict[str, Any]] = {
  'baseline': {},
  'mem_sched': {'cpu_options': 'memory'},
  'no_ema': {'set': {'train.ema_decay': 0.0}},
  'd_grad': {'part': 'd_grad'},
  'g_grad': {'part': 'g_grad'},
  'g_forward': {'part': 'g_forward'},
  'mem_sched_d_grad': {'part': 'd_grad', 'cpu_options': 'memory'},
  'mem_sched_g_grad': {'part': 'g_grad', 'cpu_options': 'memory'},
  'remat': {'set': {'model.remat': True}},
  'remat_d': {'remat_only': 'd'},
  'remat_g': {'remat_only': 'g'},
  'mem_sched_remat': {'set': {'model.remat': True}, 'cpu_options': 'memory'},
  'one_thread': {'flags': '--xla_cpu_multi_thread_eigen=false'},
  'n_critic5': {'n_critic': 5},
}
DEFAULT_OPTIONS = ['baseline', 'mem_sched', 'no_ema', 'd_grad', 'g_grad', 'g_forward', 'remat']
KEYS = {
  'argument': 'argument_size_in_bytes',
  'output': 'output_size_in_bytes',
  'alias': 'alias_size_in_bytes',
  'temp': 'temp_size_in_bytes',
  'code': 'generated_code_size_in_bytes',
}


def load_throughput():
  """benchmarks/throughput.py as a module (its CASES, make_config, fixed_batch)."""
  import importlib.util  # noqa: PLC0415

  spec = importlib.util.spec_from_file_location('_throughput', REPO / 'benchmarks/throughput.py')
  throughput = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(throughput)
  return throughput


def fail(message: str) -> None:
  """One line on stderr, exit status 2 (bad case, option or batch size)."""
  print(f'memory_analysis.py: {message}', file=sys.stderr)
  sys.exit(2)


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--case', default='sngan32', help='A case of benchmarks/throughput.py.')
  p.add_argument('--batch-sizes', default='64,256', help='Comma-separated (default 64,256).')
  p.add_argument(
    '--options',
    default=','.join(DEFAULT_OPTIONS),
    help=f'Comma-separated, the first is the baseline (default {",".join(DEFAULT_OPTIONS)}; '
    f'all: {",".join(OPTIONS)}).',
  )
  p.add_argument('--tiny', action='store_true', help='Width-8 models (smoke tests).')
  p.add_argument('--json', default=None, help='Output JSON path.')
  p.add_argument('--child', default=None, help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  args.options = [o for o in args.options.split(',') if o]
  unknown = [o for o in args.options if o not in OPTIONS]
  if unknown or not args.options:
    fail(f'--options: unknown {unknown or "(none given)"}; choose from {", ".join(OPTIONS)}.')
  try:
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(',') if b.strip()]
  except ValueError:
    fail(f'--batch-sizes={args.batch_sizes!r}: give positive integers, e.g. 64,256.')
  if not args.batch_sizes or min(args.batch_sizes) < 1:
    fail(f'--batch-sizes={args.batch_sizes}: give positive integers, e.g. 64,256.')
  if not args.child:
    # The case is checked here (cheap, no JAX) so a typo fails before any child starts.
    import ast  # noqa: PLC0415

    tree = ast.parse((REPO / 'benchmarks/throughput.py').read_text())
    cases = next(
      ast.literal_eval(node.value)
      for node in tree.body
      if isinstance(node, ast.AnnAssign) and getattr(node.target, 'id', '') == 'CASES'
    )
    if args.case not in cases:
      fail(
        f'--case={args.case!r} is not a case of benchmarks/throughput.py; choose from '
        f'{", ".join(cases)}.'
      )
  return args


def part_function(part: str, gan, config, mesh, n_critic: int = 1):
  """The function of `(state, batch)` an option compiles: the jitted train step, or one
  player's loss and gradient (jitted with the step's CPU compiler options, state not
  donated)."""
  import jax  # noqa: PLC0415

  from gan_jax.core import train_step  # noqa: PLC0415
  from gan_jax.core.losses import get_loss  # noqa: PLC0415
  from gan_jax.core.sharding import batch_sharding, replicated  # noqa: PLC0415
  from gan_jax.core.train_step import Stabilizers, jit_train_step, make_train_step  # noqa: PLC0415

  if part == 'step':
    step = make_train_step(
      gan,
      get_loss(config.train.loss),
      n_critic=n_critic,
      ema_decay=config.train.ema_decay,
      mesh=mesh,
      stabilizers=Stabilizers.from_config(config.train),
    )
    return jit_train_step(step, mesh)
  loss = get_loss(config.train.loss)

  def fakes(state, batch_size):
    z = gan.sample_latents(state.rng, batch_size)
    return gan.generate(state.g_params, state.g_batch_stats, z, train=True)

  def d_grad(state, batch):
    real = batch['image'][0]
    fake = jax.lax.stop_gradient(fakes(state, real.shape[0])[0])

    def objective(d_params):
      real_logits, stats = gan.discriminate(d_params, state.d_batch_stats, real, train=True)
      fake_logits, stats = gan.discriminate(d_params, stats, fake, train=True)
      return loss.d(real_logits, fake_logits), stats

    return jax.value_and_grad(objective, has_aux=True)(state.d_params)

  def g_grad(state, batch):
    batch_size = batch['image'].shape[1]
    z = gan.sample_latents(state.rng, batch_size)

    def objective(g_params):
      fake, stats = gan.generate(g_params, state.g_batch_stats, z, train=True)
      fake_logits, _ = gan.discriminate(state.d_params, state.d_batch_stats, fake, train=True)
      return loss.g(fake_logits, None), stats

    return jax.value_and_grad(objective, has_aux=True)(state.g_params)

  def g_forward(state, batch):
    return fakes(state, batch['image'].shape[1])

  fn = {'d_grad': d_grad, 'g_grad': g_grad, 'g_forward': g_forward}[part]
  on_cpu = mesh.devices.flat[0].platform == 'cpu'
  options = dict(train_step.CPU_COMPILER_OPTIONS) if on_cpu else {}
  return jax.jit(
    fn,
    in_shardings=(replicated(mesh), batch_sharding(mesh)),
    compiler_options=options or None,
  )


def remat_only(config, player: str) -> None:
  """Re-registers the config's model so that only `player`'s ('g' or 'd') residual blocks
  are rematerialised (the models' `remat` attribute, read when they are called)."""
  import dataclasses  # noqa: PLC0415

  from gan_jax.models import registry  # noqa: PLC0415

  entry = registry.get(config.model.name)
  if not entry.remat:
    fail(f'model {entry.name!r} has no model.remat option; remat options need sngan32.')

  def build(cfg, shape, rngs, dtype):
    g, d = entry.build(cfg, shape, rngs, dtype)
    (g if player == 'g' else d).remat = True
    return g, d

  registry.register(dataclasses.replace(entry, build=build), replace=True)


def child(args: argparse.Namespace, batch_size: int) -> dict:
  """Runs in the option's process: build, lower and compile (never run) one function."""
  import jax.numpy as jnp  # noqa: PLC0415

  from gan_jax.core.sharding import make_mesh, replicate  # noqa: PLC0415
  from gan_jax.core.state import create_state  # noqa: PLC0415
  from gan_jax.errors import ConfigError  # noqa: PLC0415

  from gan_jax.core import train_step  # noqa: PLC0415

  option = OPTIONS[args.child]
  if 'cpu_options' in option:
    train_step.CPU_COMPILER_OPTIONS = dict(train_step.CPU_SCHEDULERS[option['cpu_options']])
  throughput = load_throughput()
  mesh = make_mesh()
  try:
    config = throughput.make_config(args.case, batch_size, 0, tiny=args.tiny)
    for key, value in option.get('set', {}).items():
      block, name = key.split('.')
      config[block][name] = value
    throughput.validate(config)
  except (ConfigError, ValueError, KeyError) as e:
    fail(f'option {args.child} on case {args.case}: {e}')
  if 'remat_only' in option:
    remat_only(config, option['remat_only'])
  gan, state = create_state(config)
  n_critic = option.get('n_critic', 1)
  fn = part_function(option.get('part', 'step'), gan, config, mesh, n_critic)
  state = replicate(state, mesh)
  batches = [throughput.fixed_batch(mesh, batch_size, gan.image_shape, i) for i in range(n_critic)]
  batch = {'image': jnp.concatenate([b['image'] for b in batches])}  # [n_critic, B, H, W, C]
  # Python tracing (to a jaxpr), lowering (to StableHLO) and XLA's compilation, timed apart;
  # compile_s is their sum, what `fn.lower(state, batch).compile()` took before the split.
  t0 = time.perf_counter()
  traced = fn.trace(state, batch)
  t1 = time.perf_counter()
  lowered = traced.lower()
  t2 = time.perf_counter()
  compiled = lowered.compile()
  t3 = time.perf_counter()
  stages = {'trace_s': t1 - t0, 'lower_s': t2 - t1, 'xla_compile_s': t3 - t2}
  compile_s = t3 - t0
  analysis = compiled.memory_analysis()
  if analysis is None:
    fail('this backend reports no memory analysis (compiled.memory_analysis() is None).')
  out = {k: int(getattr(analysis, attr)) / MIB for k, attr in KEYS.items()}
  out['total'] = out['argument'] + out['output'] + out['temp'] - out['alias']
  return {
    'option': args.child,
    'batch_size': batch_size,
    'settings': option,
    'compile_s': compile_s,
    **stages,
    'mib': out,
  }


def run_option(args: argparse.Namespace, name: str, batch_size: int) -> dict:
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
    '--batch-sizes',
    str(batch_size),
  ] + (['--tiny'] if args.tiny else [])
  proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
  lines = [line for line in proc.stdout.splitlines() if line.startswith('{')]
  if proc.returncode == 2 and proc.stderr.strip():
    fail(proc.stderr.strip().splitlines()[-1].removeprefix('memory_analysis.py: '))
  if proc.returncode or not lines:
    raise RuntimeError(f'option {name} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}')
  return json.loads(lines[-1])


def table(rows: list[dict]) -> str:
  lines = [
    '| batch | option | argument | output | alias | temp | total | vs baseline temp | code |',
    '|---|---|---|---|---|---|---|---|---|',
  ]
  base = {}
  for row in rows:
    m = row['mib']
    base.setdefault(row['batch_size'], m['temp'])
    ratio = m['temp'] / base[row['batch_size']] if base[row['batch_size']] else float('nan')
    lines.append(
      f'| {row["batch_size"]} | {row["option"]} | {m["argument"]:,.1f} | {m["output"]:,.1f} | '
      f'{m["alias"]:,.1f} | {m["temp"]:,.1f} | {m["total"]:,.1f} | {ratio:.2f}x | '
      f'{m["code"]:,.2f} |'
    )
  return '\n'.join(lines)


def main(argv=None) -> dict:
  args = parse_args(argv)
  if args.child:
    print(json.dumps(child(args, args.batch_sizes[0])))
    return {}
  rows = []
  for batch_size in args.batch_sizes:
    for name in args.options:
      rows.append(run_option(args, name, batch_size))
      print(
        f'batch {batch_size}: {name}: temp {rows[-1]["mib"]["temp"]:,.1f} MiB '
        f'(compiled in {rows[-1]["compile_s"]:.1f} s: traced {rows[-1]["trace_s"]:.1f}, '
        f'lowered {rows[-1]["lower_s"]:.1f}, XLA {rows[-1]["xla_compile_s"]:.1f})',
        flush=True,
      )
  text = table(rows)
  print(f'\n{args.case}{" (tiny)" if args.tiny else ""}: XLA memory analysis, MiB per device\n')
  print(text)
  report = {
    'date': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
    'command': ' '.join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
    'case': args.case,
    'tiny': args.tiny,
    'batch_sizes': args.batch_sizes,
    'options': args.options,
    'results': rows,
    'table': text,
  }
  out = Path(args.json or REPO / 'benchmarks' / 'results' / f'memory_analysis_{args.case}.json')
  bench_util.write_report(out, report)
  return report


if __name__ == '__main__':
  main()
