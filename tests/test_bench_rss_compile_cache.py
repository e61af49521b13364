"""benchmarks/rss_compile_cache.py: a cold, a warm and a PyTorch memory process per case.

Smoke test at width 8 (`--tiny`), 2 steps, one round. PyTorch is the benchmark-only extra:
without it the test is skipped (the benchmark compares against PyTorch's worker).
"""

import json
import os

import pytest

from conftest import load_script

NO_TORCH = 'torch is the benchmark-only extra (pip install -e ".[bench]"); gan_jax never needs it'


def _load():
  return load_script('benchmarks/rss_compile_cache.py')


def test_cold_run_fills_a_private_cache_and_the_summary_is_its_ratios(tmp_path, monkeypatch):
  pytest.importorskip('torch', reason=NO_TORCH)
  monkeypatch.setenv('JAX_COMPILATION_CACHE_DIR', str(tmp_path / 'users_cache'))
  out = tmp_path / 'rss.json'
  argv = ['--models', 'dcgan28', '--batch-sizes', '8', '--rounds', '1', '--tiny']
  _load().main([*argv, '--memory-steps', '2', '--json', str(out)])
  results = json.loads(out.read_text())
  assert results['memory_steps'] == 2
  (case,) = results['cases']
  assert (case['case'], case['batch_size']) == ('dcgan28', 8)
  # The cold process compiled into the benchmark's own (temporary) folder, not the user's,
  # which the benchmark restores afterwards.
  assert case['cache_files'] > 0
  assert os.environ['JAX_COMPILATION_CACHE_DIR'] == str(tmp_path / 'users_cache')
  assert not (tmp_path / 'users_cache').exists()
  assert len(case['warm']) == 1 and len(case['torch']) == 1
  for run in (case['cold'], case['warm'][0]):
    # RSS checkpoints only grow: VmHWM is a high-water mark.
    marks = [
      run['peak_rss_after_import_mib'],
      run['peak_rss_after_state_mib'],
      run['peak_rss_after_compile_mib'],
      run['peak_rss_mib'],
    ]
    assert marks == sorted(marks) and marks[0] > 0, marks
  s = case['summary']
  torch = case['torch'][0]['peak_rss_mib']
  assert s['cold_peak_rss_mib'] == case['cold']['peak_rss_mib']
  assert s['warm_peak_rss_mib_median'] == case['warm'][0]['peak_rss_mib']
  assert s['cold_over_torch'] == pytest.approx(case['cold']['peak_rss_mib'] / torch)
  assert s['warm_over_torch'] == pytest.approx(case['warm'][0]['peak_rss_mib'] / torch)
