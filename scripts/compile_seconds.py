"""Sums the test suite's opt-in compile log per test module, longest XLA compile first:

    GAN_JAX_TEST_COMPILE_LOG=/tmp/compile_log python -m pytest -q -n 2 tests
    python scripts/compile_seconds.py /tmp/compile_log [--json out.json]

Per module: the tests' wall seconds (setup, call and teardown), and the seconds JAX spent in
the pytest process tracing (`trace_s`), lowering to MLIR (`lower_s`), and in XLA's compiler
(`compile_s`, which includes loading executables from the persistent cache: `cache_load_s`
over `cache_hits` loads), so `compile_s - cache_load_s` is what a module compiled itself.
Subprocesses that tests start are not counted. Exit 2 for a folder without logs.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

KEYS = ('wall_s', 'trace_s', 'lower_s', 'compile_s', 'cache_load_s', 'cache_hits')


def per_module(folder: str) -> dict[str, dict[str, float]]:
  """{module path: {key: sum over its tests}} from the folder's *.jsonl files.

  Raises:
    ValueError: a folder without *.jsonl lines.
  """
  totals: dict[str, dict[str, float]] = {}
  for path in glob.glob(os.path.join(folder, '*.jsonl')):
    with open(path) as f:
      for text in f:
        line = json.loads(text)
        module = totals.setdefault(line['test'].split('::')[0], dict.fromkeys(KEYS, 0.0))
        for key in KEYS:
          module[key] += line.get(key, 0.0)
  if not totals:
    raise ValueError(
      f'{folder!r} holds no compile log (*.jsonl): run pytest with '
      'GAN_JAX_TEST_COMPILE_LOG set to it first.'
    )
  return totals


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('folder')
  parser.add_argument('--json', help='also write the totals here')
  args = parser.parse_args(argv)
  try:
    totals = per_module(args.folder)
  except ValueError as error:
    print(f'compile_seconds: {error}', file=sys.stderr)
    return 2
  order = sorted(
    totals, key=lambda m: totals[m]['compile_s'] - totals[m]['cache_load_s'], reverse=True
  )
  print('| module | wall s | trace s | lower s | XLA compile s | cache loads (s) |')
  print('|---|---|---|---|---|---|')
  for m in order:
    t = totals[m]
    print(
      f'| {m} | {t["wall_s"]:.1f} | {t["trace_s"]:.1f} | {t["lower_s"]:.1f} | '
      f'{t["compile_s"] - t["cache_load_s"]:.1f} | {int(t["cache_hits"])} '
      f'({t["cache_load_s"]:.1f}) |'
    )
  whole = {k: sum(t[k] for t in totals.values()) for k in KEYS}
  print(
    f'all {len(totals)} modules: wall {whole["wall_s"]:.0f} s, trace {whole["trace_s"]:.0f} s, '
    f'lower {whole["lower_s"]:.0f} s, XLA compile '
    f'{whole["compile_s"] - whole["cache_load_s"]:.0f} s, {int(whole["cache_hits"])} cache '
    f'loads ({whole["cache_load_s"]:.0f} s)'
  )
  if args.json:
    with open(args.json, 'w') as f:
      json.dump({'modules': totals, 'all': whole}, f, indent=1)
  return 0


if __name__ == '__main__':
  sys.exit(main())
