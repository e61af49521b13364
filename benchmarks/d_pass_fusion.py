"""Does judging the real and the generated batch in one D call make D's update faster on CPU?

Issue 21's third candidate for the CPU gap: fusing D's passes. gan_jax's D update runs D on
the real batch and on the generated batch separately (`gan_jax.core.objectives.d_objective`),
as PyTorch's DCGAN does. Where D has no batch statistics and no spectral normalization (both
couple a call's images or count calls), one call on the concatenated 2B images computes the
same logits, and the same gradient to float rounding. Whether that pays depends on how XLA's
CPU convolutions scale with the batch, so this script measures exactly that computation:
the gradient of D's non-saturating loss (softplus(-D(x)) + softplus(D(G(z)))) with respect
to D's parameters, for gan_jax's DCGAN-28 D (width 64), in two forms:

  separate    D(real) and D(fake): two calls of B images (gan_jax's step)
  fused       D(concat(real, fake)): one call of 2B images, logits split

Each form runs in its own process, `--rounds` times in turns; each process compiles, warms up
twice and times `--reps` calls (median). Reports ms per D gradient, and whether the two forms'
loss and gradient agree to float32 rounding.

    python benchmarks/d_pass_fusion.py --batch-sizes 64,256 --rounds 3
    python benchmarks/d_pass_fusion.py --tiny --rounds 1 --reps 2      # seconds, for tests

Output: a markdown table on stdout and JSON (default benchmarks/results/d_pass_fusion.json).
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

FORMS = ('separate', 'fused')


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--batch-sizes', default='64,256', help='Comma-separated B (default 64,256).')
  p.add_argument('--rounds', type=int, default=3)
  p.add_argument('--reps', type=int, default=20, help='Timed calls per process (default 20).')
  p.add_argument('--tiny', action='store_true', help='Width 8 (smoke tests).')
  p.add_argument('--json', default=None)
  p.add_argument('--child', default=None, help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  args.batch_sizes = bench_util.batch_sizes(args.batch_sizes, p.error)
  if args.rounds < 1 or args.reps < 1:
    p.error('--rounds and --reps must be >= 1.')
  return args


def d_gradient(form: str, batch: int, tiny: bool):
  """(jitted fn() -> (loss, grads), for one form and batch size) of DCGAN-28's D."""
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415
  from flax import nnx  # noqa: PLC0415

  from gan_jax.models import DCGAN28Discriminator  # noqa: PLC0415

  d = DCGAN28Discriminator((28, 28, 1), width=8 if tiny else 64, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(d)
  k1, k2 = jax.random.split(jax.random.key(1))
  real = jax.random.uniform(k1, (batch, 28, 28, 1), minval=-1.0, maxval=1.0)
  fake = jax.random.uniform(k2, (batch, 28, 28, 1), minval=-1.0, maxval=1.0)

  def logits(p, x):
    return nnx.merge(graphdef, p)(x)

  def loss(p):
    if form == 'fused':
      both = logits(p, jnp.concatenate([real, fake], axis=0))
      real_logits, fake_logits = both[:batch], both[batch:]
    else:
      real_logits, fake_logits = logits(p, real), logits(p, fake)
    return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))

  fn = jax.jit(jax.value_and_grad(loss))
  return lambda: fn(params)


def child(args: argparse.Namespace) -> dict:
  import jax  # noqa: PLC0415

  out = {}
  for batch in args.batch_sizes:
    fn = d_gradient(args.child, batch, args.tiny)
    loss, grads = jax.block_until_ready(fn())
    jax.block_until_ready(fn())
    times = []
    for _ in range(args.reps):
      t = time.perf_counter()
      jax.block_until_ready(fn())
      times.append(time.perf_counter() - t)
    leaves = [np.asarray(g).ravel() for g in jax.tree_util.tree_leaves(grads)]
    out[str(batch)] = {
      'ms': 1e3 * float(np.median(times)),
      'loss': float(loss),
      'grad': np.concatenate(leaves).tolist()[:4096],
    }
  return out


def run_child(args: argparse.Namespace, form: str) -> dict:
  cmd = [sys.executable, __file__, '--child', form, '--reps', str(args.reps)]
  cmd += ['--batch-sizes', ','.join(map(str, args.batch_sizes))] + (['--tiny'] if args.tiny else [])
  return bench_util.run_json_child(cmd, form)


def main(argv=None) -> dict:
  args = parse_args(argv)
  if args.child:
    print(json.dumps(child(args)))
    return {}
  runs: dict[str, list[dict]] = {f: [] for f in FORMS}
  for r in range(args.rounds):
    for form in FORMS[r % 2 :] + FORMS[: r % 2]:
      runs[form].append(run_child(args, form))
      print(f'round {r + 1}: {form} done', flush=True)
  rows = []
  print(
    '\n| batch B | separate ms (2 calls of B) | fused ms (1 call of 2B) | fused / separate | same to fp32 rounding |'
  )
  print('|---|---|---|---|---|')
  for batch in map(str, args.batch_sizes):
    sep = float(np.median([run[batch]['ms'] for run in runs['separate']]))
    fus = float(np.median([run[batch]['ms'] for run in runs['fused']]))
    a, b = runs['separate'][0][batch], runs['fused'][0][batch]
    diff = float(np.max(np.abs(np.subtract(a['grad'], b['grad']))))
    scale = float(np.max(np.abs(a['grad'])))
    same = abs(a['loss'] - b['loss']) <= 1e-5 * abs(a['loss']) and diff <= 1e-4 * scale
    rows.append(
      dict(
        batch=int(batch),
        separate_ms=sep,
        fused_ms=fus,
        ratio=fus / sep,
        same=same,
        max_grad_difference=diff,
        grad_scale=scale,
      )
    )
    print(f'| {batch} | {sep:.1f} | {fus:.1f} | {fus / sep:.2f} | {"yes" if same else "no"} |')
  report = {
    'date': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
    'command': ' '.join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
    'tiny': args.tiny,
    'rounds': args.rounds,
    'reps': args.reps,
    'loadavg_end': os.getloadavg()[0],
    'rows': rows,
    'ms_per_round': {f: [{b: run[b]['ms'] for b in run} for run in runs[f]] for f in FORMS},
  }
  out = Path(args.json or REPO / 'benchmarks' / 'results' / 'd_pass_fusion.json')
  bench_util.write_report(out, report)
  return report


if __name__ == '__main__':
  main()
