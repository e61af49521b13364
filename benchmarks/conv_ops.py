"""Per-operation times of the DCGAN and SNGAN convolutions in JAX (XLA CPU) and PyTorch, same shapes.

Issue 21 asks where the CPU gap at large batches comes from. This script times each
convolution layer of a case's D and G on its own: the forward pass, and the backward pass
(input gradient and kernel gradient together, as training computes them), at each batch
size, in several computations:

  jax         the layer as gan_jax computes it on CPU (`gan_jax.models.layers.Conv`:
              XLA's strided convolution; `ConvTranspose`: the sub-pixel form, or XLA's own
              transposed convolution for one output channel), NHWC.
  jax_nchw    the same convolution (XLA's own ops) with NCHW activations (dimension numbers
              only: the arrays are made in that layout, no transposes are timed).
  jax_chunk64 the layer applied to chunks of 64 images, unrolled, outputs concatenated
              (kernel gradients summed by autodiff): the same result to float rounding.
  jax_adjoint the layer with `ConvTranspose.backward = 'adjoint'` (the sub-pixel form's
              backward pass through the adjoint strided convolution,
              `layers.conv_transpose_adjoint_vjp`); D's layers as `jax`.
  jax_im2col  the layer with `Conv.kernel_grad = 'im2col'` (stride-1 layers only: the kernel
              gradient as matrix products of the shifted input, `layers.conv_im2col_vjp`);
              other layers as `jax`.
  torch       `torch.nn.functional.conv2d` / `conv_transpose2d` (padding 1, as
              benchmarks/torch_reference.py), NCHW, eager, autograd for the backward pass.

Each computation runs in its own process, `--rounds` times in turns (load from elsewhere hits
them alike); each process times `--reps` calls per operation after two warm-up calls, and the
table shows the median over rounds of each process's median, in ms, with PyTorch's time over
gan_jax's ("torch / jax" < 1: PyTorch faster) and the GFLOP/s gan_jax reaches (FLOPs as
2 x multiply-adds of the dense convolution; the sub-pixel form does the same multiply-adds).

    python benchmarks/conv_ops.py --case dcgan28 --batch-sizes 64,256 --rounds 3
    python benchmarks/conv_ops.py --case sngan32 --batch-sizes 64,256 --impls jax,jax_chunk64,torch \
        --rounds 2 --reps 3
    python benchmarks/conv_ops.py --case sngan32 --batch-sizes 64 --impls jax,jax_im2col,torch \
        --rounds 2 --reps 3 --json benchmarks/results/conv_ops_sngan32_im2col.json
    python benchmarks/conv_ops.py --tiny --rounds 1 --reps 2      # seconds, for tests

Output: a markdown table on stdout and JSON (default
benchmarks/results/conv_ops_<case>.json) with every measurement.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_util  # noqa: E402

# Each layer: (name, kind, input H (= W), C_in, C_out). Kinds: 'down', a 4x4 stride-2
# convolution and 'up', a 4x4 stride-2 transposed convolution (gan_jax's DCGAN models at
# width 64); 'same', a 3x3 stride-1 convolution (SNGAN-32's residual blocks, G width 256 and
# D width 128; `COUNTS` says how often each shape occurs in one forward pass of the model).
CASES: dict[str, list[tuple[str, str, int, int, int]]] = {
  'dcgan28': [
    ('D.conv1', 'down', 28, 1, 64),
    ('D.conv2', 'down', 14, 64, 128),
    ('G.up1', 'up', 7, 128, 64),
    ('G.up2', 'up', 14, 64, 1),
  ],
  'dcgan32': [
    ('D.first', 'down', 32, 3, 64),
    ('D.conv2', 'down', 16, 64, 128),
    ('D.conv3', 'down', 8, 128, 256),
    ('G.up1', 'up', 4, 256, 128),
    ('G.up2', 'up', 8, 128, 64),
    ('G.out', 'up', 16, 64, 3),
  ],
  'sngan32': [
    ('G.conv8', 'same', 8, 256, 256),
    ('G.conv16', 'same', 16, 256, 256),
    ('G.conv32', 'same', 32, 256, 256),
    ('G.out', 'same', 32, 256, 3),
    ('D.first', 'same', 32, 3, 128),
    ('D.conv32', 'same', 32, 128, 128),
    ('D.conv16', 'same', 16, 128, 128),
    ('D.conv8', 'same', 8, 128, 128),
  ],
}
# Occurrences per forward pass of G or D (layers not listed occur once): SNGAN-32's three
# GBlocks (4 -> 8 -> 16 -> 32) hold two 3x3 convolutions each at their output size; its
# DBlocks hold one 128 -> 128 convolution at 32 px (after D.first), two at 16 px and four at
# 8 px. The 1x1 shortcuts are left out (under 1/9 of a 3x3's FLOPs).
COUNTS: dict[str, dict[str, int]] = {
  'sngan32': {'G.conv8': 2, 'G.conv16': 2, 'G.conv32': 2, 'D.conv16': 2, 'D.conv8': 4},
}
IMPLS = ('jax', 'jax_nchw', 'jax_chunk64', 'jax_adjoint', 'jax_im2col', 'torch')
CHUNK = 64


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--case', default='dcgan28', choices=sorted(CASES))
  p.add_argument('--batch-sizes', default='64,256', help='Comma-separated (default 64,256).')
  p.add_argument(
    '--impls', default=','.join(IMPLS), help=f'Comma-separated from {",".join(IMPLS)}.'
  )
  p.add_argument('--rounds', type=int, default=3, help='Rounds over the computations.')
  p.add_argument('--reps', type=int, default=10, help='Timed calls per operation and process.')
  p.add_argument('--torch-threads', type=int, default=bench_util.default_threads())
  p.add_argument('--tiny', action='store_true', help='Channels / 8 (smoke tests).')
  p.add_argument('--json', default=None, help='Output JSON path.')
  p.add_argument('--child', default=None, help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  args.batch_sizes = bench_util.batch_sizes(args.batch_sizes, p.error)
  args.impls = [i for i in args.impls.split(',') if i]
  unknown = [i for i in args.impls if i not in IMPLS]
  if unknown or not args.impls:
    p.error(f'--impls: unknown {unknown}; choose from {",".join(IMPLS)}.')
  if args.rounds < 1 or args.reps < 1:
    p.error('--rounds and --reps must be >= 1.')
  return args


def layers(case: str, tiny: bool) -> list[tuple[str, str, int, int, int]]:
  """The case's layers; with `tiny` every channel count above 1 is divided by 8."""
  shrink = (lambda c: c if c <= 3 else max(c // 8, 1)) if tiny else (lambda c: c)
  return [(n, k, h, shrink(ci), shrink(co)) for n, k, h, ci, co in CASES[case]]


def geometry(kind: str) -> tuple[int, int]:
  """(kernel size, stride) of a layer kind."""
  return (3, 1) if kind == 'same' else (4, 2)


def out_size(kind: str, h: int) -> int:
  return {'down': h // 2, 'up': 2 * h, 'same': h}[kind]


def flops(kind: str, batch: int, h: int, cin: int, cout: int) -> float:
  """2 x the multiply-adds of one pass of the dense convolution (4x4 stride 2 or 3x3 stride 1)."""
  positions = (h // 2) ** 2 if kind == 'down' else h * h
  k, _ = geometry(kind)
  return 2.0 * batch * positions * k * k * cin * cout


def _median_ms(fn, reps: int) -> float:
  fn()
  fn()
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return 1e3 * float(np.median(times))


def jax_layer(impl: str, kind: str, batch: int, h: int, cin: int, cout: int):
  """One layer in JAX: (apply(w, x) -> y, w, x, g), with random x and output gradient g.

  `jax` and `jax_chunk64` take NHWC arrays and gan_jax's layer (its parameters as `w`);
  `jax_nchw` takes the same kernel (HWIO) and NCHW activations, with the same padding, so
  its output is the `jax` output transposed to NCHW (to float rounding; tested).
  """
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415
  from flax import nnx  # noqa: PLC0415
  from jax import lax  # noqa: PLC0415

  from gan_jax.models import layers as L  # noqa: PLC0415

  kx, kg = jax.random.split(jax.random.key(0))
  out_h = out_size(kind, h)
  k, s = geometry(kind)
  x = jax.random.normal(kx, (batch, h, h, cin))
  g = jax.random.normal(kg, (batch, out_h, out_h, cout))
  cls = L.ConvTranspose if kind == 'up' else L.Conv
  layer = cls(cin, cout, (k, k), (s, s), padding='SAME', use_bias=False, rngs=nnx.Rngs(0))
  if impl == 'jax_adjoint' and kind == 'up':
    layer.backward = 'adjoint'  # this layer only (a static attribute of its graphdef)
  if impl == 'jax_im2col' and kind == 'same':
    layer.kernel_grad = 'im2col'
  graphdef, params = nnx.split(layer)

  def apply_one(w, x):
    return nnx.merge(graphdef, w)(x)

  if impl == 'jax_nchw':
    dn = ('NCHW', 'HWIO', 'NCHW')
    conv = lax.conv_transpose if kind == 'up' else lax.conv_general_dilated

    def apply(w, x):
      return conv(x, w, (s, s), 'SAME', dimension_numbers=dn)

    return apply, params['kernel'][...], x.transpose(0, 3, 1, 2), g.transpose(0, 3, 1, 2)
  if impl == 'jax_chunk64' and batch > CHUNK and batch % CHUNK == 0:

    def apply(w, x):
      parts = [apply_one(w, x[i : i + CHUNK]) for i in range(0, batch, CHUNK)]
      return jnp.concatenate(parts, axis=0)

    return apply, params, x, g
  return apply_one, params, x, g


def jax_ops(impl: str, kind: str, batch: int, h: int, cin: int, cout: int, reps: int):
  """(forward ms, backward ms) of one layer in JAX; see the module docstring for `impl`."""
  import jax  # noqa: PLC0415

  apply, w, x, g = jax_layer(impl, kind, batch, h, cin, cout)
  fwd = jax.jit(apply)

  @jax.jit
  def bwd(w, x, g):
    _, vjp = jax.vjp(apply, w, x)
    return vjp(g)

  f_ms = _median_ms(lambda: jax.block_until_ready(fwd(w, x)), reps)
  b_ms = _median_ms(lambda: jax.block_until_ready(bwd(w, x, g)), reps)
  return f_ms, b_ms


def torch_ops(kind: str, batch: int, h: int, cin: int, cout: int, reps: int, threads: int):
  """(forward ms, backward ms) of one layer in PyTorch eager (NCHW, padding 1)."""
  import torch  # noqa: PLC0415
  import torch.nn.functional as F  # noqa: PLC0415

  torch.set_num_threads(threads)
  gen = torch.Generator().manual_seed(0)
  out_h = out_size(kind, h)
  k, s = geometry(kind)
  x = torch.randn(batch, cin, h, h, generator=gen, requires_grad=True)
  g = torch.randn(batch, cout, out_h, out_h, generator=gen)
  if kind != 'up':
    w = (0.02 * torch.randn(cout, cin, k, k, generator=gen)).requires_grad_()

    def apply():
      return F.conv2d(x, w, stride=s, padding=1)
  else:
    w = (0.02 * torch.randn(cin, cout, 4, 4, generator=gen)).requires_grad_()

    def apply():
      return F.conv_transpose2d(x, w, stride=2, padding=1)

  def forward():
    with torch.no_grad():
      apply()

  y = apply()

  def backward():
    torch.autograd.grad(y, (x, w), g, retain_graph=True)

  return _median_ms(forward, reps), _median_ms(backward, reps)


def child(args: argparse.Namespace) -> dict[str, Any]:
  """Times every layer and batch size with one computation (`args.child`)."""
  out = {}
  for batch in args.batch_sizes:
    for name, kind, h, cin, cout in layers(args.case, args.tiny):
      if args.child == 'torch':
        f, b = torch_ops(kind, batch, h, cin, cout, args.reps, args.torch_threads)
      else:
        f, b = jax_ops(args.child, kind, batch, h, cin, cout, args.reps)
      out[f'{name}@{batch}'] = {'forward_ms': f, 'backward_ms': b}
  return out


def run_child(args: argparse.Namespace, impl: str) -> dict[str, Any]:
  cmd = [sys.executable, __file__, '--child', impl, '--case', args.case, '--reps', str(args.reps)]
  cmd += ['--batch-sizes', ','.join(map(str, args.batch_sizes))]
  cmd += ['--torch-threads', str(args.torch_threads)] + (['--tiny'] if args.tiny else [])
  return bench_util.run_json_child(cmd, impl)


def summarise(args: argparse.Namespace, runs: dict[str, list[dict]]) -> list[dict[str, Any]]:
  """One row per layer, batch and pass: the median ms of each computation over rounds."""
  rows = []
  for batch in args.batch_sizes:
    for name, kind, h, cin, cout in layers(args.case, args.tiny):
      for which in ('forward', 'backward'):
        key = f'{name}@{batch}'
        ms = {impl: float(np.median([r[key][f'{which}_ms'] for r in runs[impl]])) for impl in runs}
        gflop = flops(kind, batch, h, cin, cout) * (1 if which == 'forward' else 2) / 1e9
        count = COUNTS.get(args.case, {}).get(name, 1)
        rows.append(
          dict(
            layer=name,
            batch=batch,
            pass_=which,
            gflop=gflop,
            ms=ms,
            shape=[h, cin, cout],
            count=count,
          )
        )
  return rows


def totals(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
  """Per batch size: each computation's ms for one forward and one backward pass of every
  convolution of the model, each layer weighted by its `count` (`{batch: {impl: ms}}`)."""
  out: dict[str, dict[str, float]] = {}
  for r in rows:
    per = out.setdefault(str(r['batch']), {})
    for impl, ms in r['ms'].items():
      per[impl] = per.get(impl, 0.0) + r['count'] * ms
  return out


def print_table(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
  impls = [i for i in IMPLS if i in args.impls]
  head = ' | '.join(f'{i} ms' for i in impls)
  print(f'| layer | batch | pass | GFLOP | {head} | torch / jax | jax GFLOP/s |')
  print('|---|---|---|---|' + '---|' * len(impls) + '---|---|')
  for r in rows:
    cells = ' | '.join(f'{r["ms"][i]:.2f}' for i in impls)
    ratio = f'{r["ms"]["torch"] / r["ms"]["jax"]:.2f}' if {'torch', 'jax'} <= set(impls) else '-'
    rate = f'{r["gflop"] / r["ms"]["jax"] * 1e3:.0f}' if 'jax' in impls else '-'
    print(
      f'| {r["layer"]} | {r["batch"]} | {r["pass_"]} | {r["gflop"]:.2f} | {cells} | {ratio} | '
      f'{rate} |'
    )
  if args.case in COUNTS:
    print('\nAll convolutions of one forward and one backward pass, each layer x its count:')
    for batch, ms in totals(rows).items():
      print(f'  batch {batch}: ' + ', '.join(f'{i} {v:.1f} ms' for i, v in ms.items()))


def main(argv=None) -> dict[str, Any]:
  args = parse_args(argv)
  if args.child:
    print(json.dumps(child(args)))
    return {}
  if 'torch' in args.impls and bench_util.package_version('torch') is None:
    print('torch is not installed: timing JAX only (pip install -e ".[bench]" adds it).')
    args.impls = [i for i in args.impls if i != 'torch']
    if not args.impls:
      sys.exit('conv_ops: nothing to time without torch; add a JAX computation to --impls.')
  runs: dict[str, list[dict]] = {i: [] for i in args.impls}
  for r in range(args.rounds):
    order = args.impls[r % len(args.impls) :] + args.impls[: r % len(args.impls)]
    for impl in order:
      runs[impl].append(run_child(args, impl))
      print(f'round {r + 1}: {impl} done', flush=True)
  rows = summarise(args, runs)
  print(f'\n{args.case}, {args.rounds} rounds of {args.reps} calls, load {bench_util.loadavg()}\n')
  print_table(args, rows)
  report = {
    'date': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
    'command': ' '.join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
    'case': args.case,
    'tiny': args.tiny,
    'rounds': args.rounds,
    'reps': args.reps,
    'torch_threads': args.torch_threads,
    'torch_version': bench_util.package_version('torch'),
    'jax_version': bench_util.package_version('jax'),
    'loadavg_end': bench_util.loadavg(),
    'rows': rows,
    'totals_ms': totals(rows),
    'runs': runs,
  }
  out = Path(args.json or REPO / 'benchmarks' / 'results' / f'conv_ops_{args.case}.json')
  bench_util.write_report(out, report)
  return report


if __name__ == '__main__':
  main()
