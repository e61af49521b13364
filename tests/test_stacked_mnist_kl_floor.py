"""scripts/stacked_mnist_kl_floor.py: the KL floor of the Stacked-MNIST metric."""

import json

import pytest

from conftest import load_script


def _load():
  return load_script('scripts/stacked_mnist_kl_floor.py')


def test_floor_matches_the_finite_sample_bias_and_the_classifier_reads_real_digits(
  tmp_path, tfds_dir
):
  floor = _load()
  out = tmp_path / 'floor.json'
  n = 5000
  report = floor.main(
    ['--draws', '2', '--num-samples', str(n), '--data-dir', tfds_dir, '--out', str(out)]
  )
  assert json.loads(out.read_text())['summary'] == report['summary']
  # KL(empirical || uniform) of n uniform draws over K = 1,000 modes ~ (K - 1) / (2n) =
  # 0.0999 (the second-order expansion; at K / n = 0.2 it is accurate to ~10%).
  assert report['summary']['multinomial']['kl']['mean'] == pytest.approx(999 / (2 * n), rel=0.15)
  # Real data drawn i.i.d. scores about the same; the LeNet misreads under 2% of digits.
  assert report['summary']['real_iid']['kl']['mean'] == pytest.approx(999 / (2 * n), rel=0.15)
  for row in report['rows']['real_iid'] + report['rows']['real_balanced']:
    assert row['digit_error_rate'] < 0.02
  # Consecutive real images hold each mode n / 1000 times: only misread digits move the KL.
  assert report['rows']['real_balanced'][0]['kl'] < 0.01


def test_zero_draws_is_a_usage_error(capsys):
  floor = _load()
  with pytest.raises(SystemExit) as e:
    floor.parse_args(['--draws', '0'])
  assert e.value.code == 2 and '--draws' in capsys.readouterr().err
