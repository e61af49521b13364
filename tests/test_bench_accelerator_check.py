"""benchmarks/accelerator_check.py on this CPU: its smoke path (tiny models), its checks and
its budget. The GPU figures it produces are committed under benchmarks/results/."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / 'benchmarks'
sys.path.insert(0, str(BENCH))

import accelerator_check  # noqa: E402


@pytest.fixture(scope='module')
def smoke(tmp_path_factory):
  out = tmp_path_factory.mktemp('acc')
  argv = [
    '--out',
    str(out),
    '--tiny',
    '--models',
    'dcgan28',
    '--batch-sizes',
    '64',
    '--ks',
    '1,2',
    '--sections',
    'checks,throughput,replicas',
    '--torch',
    'off',
    '--no-bf16',
    '--steps',
    '3',
    '--round-steps',
    '3',
    '--warmup',
    '1',
    '--budget-s',
    '600',
  ]
  report = accelerator_check.main(argv)
  return out, report


@pytest.mark.slow
def test_smoke_run_writes_checks_tables_and_json(smoke):
  out, report = smoke
  path = out / 'accelerator_cpu.json'
  on_disk = json.loads(path.read_text())
  assert on_disk['errors'] == [] and on_disk['skipped'] == []
  # On the CPU every check must pass, and a repeated run of the same steps is bit-exact.
  assert {k: c['status'] for k, c in on_disk['checks'].items()} == {
    'sharded_step': 'pass',
    'bf16': 'pass',
    'replicas_vmap': 'pass',
  }
  assert on_disk['checks']['sharded_step']['bitwise_repeatable'] is True
  assert on_disk['checks']['bf16']['state_float_dtypes'] == ['float32']
  for row in on_disk['checks']['replicas_vmap']['replicas']:
    # The replica's parameters moved (Adam steps of ~lr) and the vmapped program agrees with
    # the separate run far below that distance.
    assert row['mean_abs_update'] > 1e-5
    assert row['mean_abs_param_diff'] <= 1e-3 * row['mean_abs_update']
  (case,) = on_disk['throughput']
  assert case['model'] == 'dcgan28' and case['batch_size'] == 64 and case['steps_timed'] == 3
  # images/s is batch / median step time, recomputed here from the stored step times.
  assert case['images_per_s_median'] == pytest.approx(64 / np.median(case['step_times_s']))
  assert case['compiled_memory']['total'] > 0
  k1, k2 = on_disk['replicas']
  assert (k1['k'], k2['k']) == (1, 2) and k1['speedup_vs_k1'] == 1.0
  assert k2['images_per_s'] == pytest.approx(2 * 64 / np.median(k2['step_times_s']))
  assert k2['speedup_vs_k1'] == pytest.approx(k2['images_per_s'] / k1['images_per_s'])
  md = (out / 'accelerator_cpu.md').read_text()
  assert '| sharded_step | pass |' in md and '| dcgan28 | 64 |' in md and '\n| 2 |' in md
  assert report['throughput'][0]['images_per_s_median'] == case['images_per_s_median']


@pytest.mark.slow
def test_spent_budget_skips_and_lists_every_case(tmp_path):
  report = accelerator_check.main(
    [
      '--out',
      str(tmp_path),
      '--tiny',
      '--models',
      'dcgan28,sngan32',
      '--batch-sizes',
      '64',
      '--ks',
      '1,4',
      '--sections',
      'throughput,replicas',
      '--torch',
      'off',
      '--budget-s',
      '0',
    ]
  )
  assert report['throughput'] == [] and report['replicas'] == [] and report['errors'] == []
  names = [s.split(':')[0] for s in report['skipped']]
  assert names == ['dcgan28 B=64', 'sngan32 B=64', 'replicas K=1', 'replicas K=4']


def test_bad_arguments_exit_2(capsys):
  for argv in (['--sections', 'bogus'], ['--models', 'stylegan'], ['--ks', '1,x']):
    with pytest.raises(SystemExit) as exc:
      accelerator_check.parse_args(argv)
    assert exc.value.code == 2
  assert 'bogus' in capsys.readouterr().err


def test_absent_modules_get_placeholders():
  name = 'gan_jax_no_such_module_for_test'
  try:
    assert accelerator_check.stub_missing_modules((name, 'json')) == [name]
    assert name in sys.modules and sys.modules['json'] is json
  finally:
    sys.modules.pop(name, None)
