"""Combines CycleGAN results files of single seeds (same arguments) into one, with the summary.

    python scripts/combine_cyclegan_seeds.py --out experiments/results/cyclegan_sneakers_boots_3seeds.json \
        experiments/results/cyclegan_sneakers_boots.json \
        experiments/results/cyclegan_sneakers_boots_seed1.json \
        experiments/results/cyclegan_sneakers_boots_seed2.json

Each input is a `scripts/cyclegan_task.py --results` file of one invocation. The output keeps
the first file's task, method, arguments and directions, every run, and the summary that
`cyclegan_task.summarize` computes over all runs (mean and std, ddof=1). Exit 2 with one line
when the files were trained with different arguments or repeat a seed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_COMMANDS_OF_SEED0 = (
  'TFDS_DATA_DIR=../shared/tfds nice -n 15 python scripts/cyclegan_task.py --steps 500 --seeds 0 '
  '--out /tmp/cyclegan_sb --results experiments/results/cyclegan_sneakers_boots.json '
  '--grid docs/cyclegan_sneakers_boots.png'
)


def _cyclegan_task():
  spec = importlib.util.spec_from_file_location(
    'cyclegan_task', os.path.join(_HERE, 'cyclegan_task.py')
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def combine(files: list[str], commands: dict[str, str]) -> dict:
  """The combined results of `files` (paths as given), `commands` the command of each seed.

  Raises:
    ValueError: different training arguments (apart from the seeds) or a repeated seed.
  """
  parts = [json.load(open(f)) for f in files]
  first = parts[0]

  def training(args: dict) -> dict:  # the arguments that shape training ('tiny' None = False)
    return {k: v for k, v in args.items() if k != 'seeds' and not (k == 'tiny' and not v)}

  runs = []
  for f, part in zip(files, parts):
    if training(part['args']) != training(first['args']):
      raise ValueError(f'{f} was trained with other arguments than {files[0]}')
    runs += [
      {k: v for k, v in r.items() if k != 'history'} for r in part['runs']
    ]  # logs stay in the inputs
  seeds = [r['seed'] for r in runs]
  if len(set(seeds)) != len(seeds):
    raise ValueError(f'a seed appears twice: {seeds}')
  walls = {str(r['seed']): p['wall_s']['total'] for p in parts for r in p['runs']}
  return {
    'note': (
      'seeds of the same arguments, each trained by its own invocation; seed 0 is '
      'cyclegan_sneakers_boots.json (its command in docs/translation.md), the others '
      'cyclegan_sneakers_boots_seed<s>.json; summary over all, mean and std (ddof=1)'
    ),
    'files': files,
    'commands': commands,
    'task': first['task'],
    'method': first['method'],
    'args': {**first['args'], 'seeds': None},  # the seeds are `seeds` below
    'directions': first['directions'],
    'seeds': seeds,
    'summary': _cyclegan_task().summarize(runs),
    'wall_s_total_per_seed': walls,
    'runs': runs,
  }


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('files', nargs='+', help='results JSON of single seeds')
  p.add_argument('--out', required=True, help='combined results JSON to write')
  args = p.parse_args(argv)
  old = {}
  if os.path.exists(args.out):
    old = json.load(open(args.out)).get('commands', {})
  commands = {'0': _COMMANDS_OF_SEED0, **old}
  try:
    result = combine(args.files, commands)
  except (ValueError, OSError, KeyError) as e:
    print(f'combine_cyclegan_seeds.py: error: {e}', file=sys.stderr)
    return 2
  with open(args.out, 'w') as f:
    json.dump(result, f, indent=2)
    f.write('\n')
  return 0


if __name__ == '__main__':
  sys.exit(main())
