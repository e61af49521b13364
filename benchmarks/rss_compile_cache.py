"""Peak RSS of a training process with a cold and with a warm XLA compilation cache, against
PyTorch's (issue 21: peak RSS <= 1.2x PyTorch's).

The `gan-jax` commands keep XLA's compiled programs on disk (`gan_jax.cache_dir.
use_compilation_cache`). A run that finds its programs there loads them instead of compiling,
so it never holds LLVM's compile-time memory. For each (model, batch size) this runs
`benchmarks/throughput.py`'s memory process (build the state, compile the step, run
--memory-steps steps; VmHWM) in fresh processes: first with an empty cache folder ("cold",
which fills it), then --rounds times against the filled folder ("warm"), and PyTorch's worker
(`benchmarks/torch_reference.py`, 2 threads) once per round, for the same steps.

    python benchmarks/rss_compile_cache.py --models dcgan28 --batch-sizes 64 --rounds 2 \
        --json benchmarks/results/rss_compile_cache.json

The JSON has every process's RSS checkpoints (after imports, after the initial state, after
compiling or loading the step, and the peak), in MiB.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import throughput  # noqa: E402  pylint: disable=wrong-import-position


def measure(case: str, batch_size: int, rounds: int, args: argparse.Namespace) -> dict:
  """Cold, then `rounds` x (warm JAX, PyTorch) processes for one case."""
  out: dict = {'case': case, 'batch_size': batch_size, 'warm': [], 'torch': []}
  spec = throughput.torch_spec(throughput.make_config(case, batch_size, args.seed, args.tiny, {}))
  variant = next(v for v in throughput.torch_variants(args) if v['memory'])
  saved = {k: os.environ.get(k) for k in ('JAX_COMPILATION_CACHE_DIR',
                                          'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS')}  # fmt: skip
  with tempfile.TemporaryDirectory(prefix='gan_jax_rss_xla_') as folder:
    os.environ['JAX_COMPILATION_CACHE_DIR'] = folder
    os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
    try:
      out['cold'] = throughput.memory_jax(case, batch_size, args)
      out['cache_files'] = len(os.listdir(folder))
      for _ in range(rounds):
        out['warm'].append(throughput.memory_jax(case, batch_size, args))
        out['torch'].append(throughput.memory_torch(spec, batch_size, args, variant))
    finally:
      for k, v in saved.items():
        if v is None:
          os.environ.pop(k, None)
        else:
          os.environ[k] = v
  warm = float(np.median([r['peak_rss_mib'] for r in out['warm']]))
  torch = float(np.median([r['peak_rss_mib'] for r in out['torch']]))
  out['summary'] = {
    'cold_peak_rss_mib': out['cold']['peak_rss_mib'],
    'warm_peak_rss_mib_median': warm,
    'torch_peak_rss_mib_median': torch,
    'cold_over_torch': out['cold']['peak_rss_mib'] / torch,
    'warm_over_torch': warm / torch,
  }
  return out


def main(argv: list[str] | None = None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--models', default='dcgan28')
  p.add_argument('--batch-sizes', default='64')
  p.add_argument('--rounds', type=int, default=2)
  p.add_argument('--json', default=None)
  own, rest = p.parse_known_args(argv)
  args = throughput.parse_args(
    ['--models', own.models, '--batch-sizes', own.batch_sizes, '--torch-threads', '2', *rest]
  )
  results = {
    'started': time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime()),
    'memory_steps': args.memory_steps,
    'cases': [],
  }
  for case in args.models:
    for batch_size in args.batch_sizes:
      r = measure(case, batch_size, own.rounds, args)
      s = r['summary']
      print(
        f'{case} B={batch_size}: peak RSS MiB cold {s["cold_peak_rss_mib"]:.0f}, warm '
        f'{s["warm_peak_rss_mib_median"]:.0f}, PyTorch {s["torch_peak_rss_mib_median"]:.0f} '
        f'(cold {s["cold_over_torch"]:.2f}x, warm {s["warm_over_torch"]:.2f}x)',
        flush=True,
      )
      results['cases'].append(r)
  if own.json:
    Path(own.json).parent.mkdir(parents=True, exist_ok=True)
    Path(own.json).write_text(json.dumps(results, indent=2) + '\n')
    print(f'wrote {own.json}')
  return results


if __name__ == '__main__':
  main()
