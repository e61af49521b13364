"""Sums a pytest `--durations=0` report per test module, longest first.

    python -m pytest -q -n 2 tests --durations=0 > durations.log
    python scripts/module_seconds.py durations.log --out tests/module_seconds.txt

Each output line is `<seconds> <module path>` (setup + call + teardown of every test in the
module, in seconds of one worker). `tests/conftest.py` reads the file to run the modules
longest first, each module whole on one pytest-xdist worker (`--dist loadfile`), so the run
does not end with one long module on one core while the other core idles.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys

# "12.34s call     tests/test_x.py::test_y[case]" (pytest's --durations lines).
_LINE = re.compile(r'^\s*(\d+(?:\.\d+)?)s\s+(setup|call|teardown)\s+(\S+?\.py)::')

HEADER = """\
# Seconds per test module (setup + call + teardown of its tests, one pytest-xdist worker),
# longest first. tests/conftest.py runs the modules in this order, each whole on one worker.
# Made by (2-core CPU; re-run it when modules are added or grow):
#   python -m pytest -q -n 2 tests --durations=0 > durations.log
#   python scripts/module_seconds.py durations.log --out tests/module_seconds.txt
"""


def module_seconds(lines) -> list[tuple[float, str]]:
  """[(seconds, module path)], longest first (ties by path), from --durations lines.

  Lines that are not duration lines are ignored; a report with none gives [].
  """
  total: dict[str, float] = collections.defaultdict(float)
  for line in lines:
    match = _LINE.match(line)
    if match:
      total[match.group(3)] += float(match.group(1))
  return sorted(((s, m) for m, s in total.items()), key=lambda x: (-x[0], x[1]))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('log', help='output of pytest --durations=0')
  parser.add_argument('--out', help='file to write (default: print)')
  args = parser.parse_args(argv)
  try:
    with open(args.log) as f:
      rows = module_seconds(f)
  except OSError as e:
    print(f'module_seconds: cannot read {args.log!r}: {e.strerror}', file=sys.stderr)
    return 2
  if not rows:
    print(
      f'module_seconds: no duration lines in {args.log!r}; run pytest with --durations=0',
      file=sys.stderr,
    )
    return 2
  text = HEADER + ''.join(f'{s:.1f} {m}\n' for s, m in rows)
  if args.out:
    with open(args.out, 'w') as f:
      f.write(text)
  else:
    sys.stdout.write(text)
  return 0


if __name__ == '__main__':
  sys.exit(main())
