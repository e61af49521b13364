"""benchmarks/ingredients.py: a one-step run of two cases on the tiny Fashion-MNIST DCGAN."""

import json

import pytest

from conftest import load_script


def _load():
  return load_script('benchmarks/ingredients.py')


def test_plain_and_r1_report_speed_and_flops(tmp_path):
  out = tmp_path / 'ingredients.json'
  report = _load().main(
    [
      '--config',
      'experiments/fashion_mnist_dcgan.py:tiny',
      '--cases',
      'r1',  # plain is added as the reference
      '--batch-sizes',
      '16',
      '--rounds',
      '1',
      '--steps',
      '1',
      '--warmup',
      '1',
      '--json',
      str(out),
    ]
  )
  assert json.loads(out.read_text()) == json.loads(json.dumps(report))
  results = {r['case']: r for r in report['results']}
  assert list(results) == ['plain', 'r1']
  for r in results.values():
    assert r['batch_size'] == 16 and r['images_per_s_median'] > 0
    assert len(r['step_times_s']) == 1 and len(r['step_times_s'][0]) == 1
  assert results['plain']['ratio_to_plain'] == 1.0
  assert results['r1']['sets'] == {'train.r1_weight': 10.0}
  assert results['r1']['final_metrics']['d_penalty'] >= 0
  # R1 adds a second backward pass through D: strictly more work per step.
  assert results['r1']['flops_per_step'] > results['plain']['flops_per_step'] > 0
  assert results['r1']['flops_ratio_to_plain'] > 1
  assert report['command'].startswith('python benchmarks/ingredients.py --config')


def test_unknown_case_is_a_usage_error():
  with pytest.raises(SystemExit):
    _load().parse_args(['--cases', 'plain,bogus'])
