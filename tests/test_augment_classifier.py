"""scripts/augment_classifier.py on real MNIST: a tiny end-to-end run."""

import json

import pytest

from conftest import REPO, TFDS_DIR, load_script


@pytest.fixture(scope='module')
def augment():
  return load_script('scripts/augment_classifier.py')


def test_records_its_own_path_from_the_repository_root(augment):
  assert augment.SCRIPT == 'scripts/augment_classifier.py'
  assert (REPO / augment.SCRIPT).resolve() == (REPO / 'scripts' / 'augment_classifier.py').resolve()
  # The committed result's command names the script where it is now.
  recorded = json.loads((REPO / 'experiments' / 'results' / 'augment_mnist.json').read_text())
  assert (REPO / recorded['command'].split()[0]).is_file()


def test_subsets_are_disjoint_slices_per_seed(augment):
  assert [augment.subset_split(5, s) for s in range(3)] == [
    'train[0%:5%]',
    'train[5%:10%]',
    'train[10%:15%]',
  ]
  assert augment.subset_split(0.5, 1) == 'train[0.5%:1%]'
  with pytest.raises(SystemExit):  # 3 disjoint 50% slices do not fit in the split.
    augment.parse_args(['--out', 'x', '--fractions', '50', '--seeds', '0,1,2'])


def test_tiny_run_trains_the_gan_on_the_subset_and_scores_all_conditions(augment, tmp_path):
  argv = [
    '--tiny',
    '--out',
    str(tmp_path),
    '--fractions',
    '1',
    '--seeds',
    '0',
    '--gan-steps',
    '2',
    '--per-class',
    '13',
    '--clf-steps',
    '20',
    '--data-dir',
    str(TFDS_DIR),
  ]
  report = augment.main(argv)
  (row,) = report['results']
  assert row['split'] == 'train[0%:1%]' and row['num_real'] == 600 and row['num_gan'] == 130
  for key in ('real', 'real_gan', 'gan', 'gan_test'):
    assert 0.0 <= row[key] <= 1.0
  # 20 steps on 600 real digits already beat chance (10%) by far; the 2-step GAN's samples
  # are not digits, so the pinned LeNet recognises few as their requested class.
  assert row['real'] > 0.25
  assert row['gan_test'] < 0.5
  # The GAN saw only the subset: its run folder's config says so.
  run = tmp_path / 'mnist' / 'f1' / 'seed0' / 'gan'
  config = json.loads((run / 'config.json').read_text())
  assert config['data']['split'] == 'train[0%:1%]' and config['model']['num_classes'] == 10
  assert json.loads((tmp_path / 'mnist' / 'results.json').read_text())['results'] == [row]
  assert '| 1% | 600 |' in (tmp_path / 'mnist' / 'results.md').read_text()
  assert report['command'] == ' '.join(['scripts/augment_classifier.py', *argv])
  # Run again: the finished GAN is reused, not retrained ...
  args = augment.parse_args(argv)
  assert augment.train_gan(args, row['split'], 0, str(run)) == 0.0
  # ... and so is the finished cell's row (its classifier timings too: nothing retrained).
  assert augment.main(argv)['results'] == [row]
  cached = json.loads((tmp_path / 'mnist' / 'f1' / 'seed0' / 'row.json').read_text())
  assert cached['settings']['clf_steps'] == 20 and cached['real_s'] == row['real_s']
