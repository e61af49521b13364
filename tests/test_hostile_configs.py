"""Hostile configs: hypothesis tries at least 200 through the real command line.

The fuzzing runs in a subprocess with 2 CPU devices (`tests/fuzz_hostile_configs.py`), so a
batch that does not divide over the devices is among the cases.
"""

import json

from conftest import REPO, run_python


def test_two_hundred_hostile_configs_each_fail_in_one_line_and_change_nothing(tfds_dir):
  proc = run_python(
    'import runpy, sys; '
    f'sys.argv = ["fuzz", "--data-dir", {tfds_dir!r}, "--examples", "200"]; '
    f'runpy.run_path({str(REPO / "tests" / "fuzz_hostile_configs.py")!r}, run_name="__main__")',
    env_extra={'XLA_FLAGS': '--xla_force_host_platform_device_count=2'},
  )
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
  summary = json.loads(proc.stdout.strip().splitlines()[-1])
  assert summary['examples'] >= 200
  # Every kind of hostile change was tried, most of them many times.
  assert len(summary['kinds']) == 28, summary
  assert sum(summary['kinds'].values()) >= 400, summary
