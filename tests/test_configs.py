"""Every experiment config: valid at full size, and its tiny variant trains on real data."""

import json
import os

import pytest

from gan_jax import config as config_lib
from gan_jax.training import train

from conftest import REPO, load_experiment

# Run configs: every experiments/*.py with a get_config (scripts such as train_classifier.py
# are not configs). Translation configs (a `translation` block) are tested in
# tests/test_translation_train.py.
EXPERIMENTS = sorted(
  p.stem
  for p in (REPO / 'experiments').glob('*.py')
  if 'def get_config' in p.read_text() and 'translation_config(' not in p.read_text()
)


def test_the_four_configs_exist():
  assert {'mnist_mlp', 'mnist_dcgan', 'fashion_mnist_dcgan', 'cifar10_dcgan'} <= set(EXPERIMENTS)


@pytest.mark.parametrize('name', EXPERIMENTS)
def test_full_config_is_valid_and_documents_its_command(name):
  config = load_experiment(name)
  config_lib.validate(config)
  text = (REPO / 'experiments' / f'{name}.py').read_text()
  assert f'gan-jax train --config experiments/{name}.py' in text


@pytest.mark.parametrize('name', EXPERIMENTS)
def test_tiny_variant_trains_on_real_data(name, tfds_dir, tmp_path):
  config = load_experiment(name, 'tiny')
  config.data.data_dir = tfds_dir
  state = train.train_and_evaluate(config, str(tmp_path))
  assert int(state.step) == config.train.steps
  with open(tmp_path / 'metrics.jsonl') as f:
    assert json.loads(f.readlines()[-1])['step'] == config.train.steps
  assert os.listdir(tmp_path / 'samples')


def test_unknown_variant_is_an_error():
  from gan_jax.cli.main import UsageError  # pylint: disable=g-import-not-at-top

  with pytest.raises(UsageError, match='unknown variant'):
    load_experiment('mnist_dcgan', 'huge')


@pytest.mark.parametrize(
  'field,value,message',
  [
    ('train.batch_size', 0, 'train.batch_size=0'),
    ('train.g_lr', -1e-4, 'train.g_lr=-0.0001'),
    ('train.loss', 'wgan', "train.loss='wgan' is invalid: choose one of"),
    ('model.name', 'biggan', "model.name='biggan'"),
    ('data.channels', 2, 'data.channels=2'),
    ('data.image_size', 32, 'data.image_size=32'),  # dcgan28 needs 28
    ('train.ema_decay', 1.0, 'train.ema_decay=1.0'),
    ('data.data_dir', '/nonexistent/tfds', "data.data_dir='/nonexistent/tfds'"),
  ],
)
def test_validate_names_the_field(field, value, message):
  config = load_experiment('mnist_dcgan')
  section, key = field.split('.')
  config[section][key] = value
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(config)
  assert message in str(e.value) and '\n' not in str(e.value)


def test_cifar10_sngan_is_the_papers_resnet_setting():
  """Miyato et al. 2018, CIFAR-10 ResNet: hinge, n_dis 5, Adam(2e-4, 0, 0.9), batch 64, 50k."""
  c = load_experiment('cifar10_sngan')
  m = c.model
  assert (m.name, m.latent_dim, m.g_width, m.d_width) == ('sngan32', 128, 256, 128)
  assert (c.data.name, c.data.image_size, c.data.channels) == ('cifar10', 32, 3)
  t = c.train
  assert (t.loss, t.n_critic, t.batch_size, t.steps) == ('hinge', 5, 64, 50000)
  assert (t.g_lr, t.d_lr, t.b1, t.b2) == (2e-4, 2e-4, 0.0, 0.9)
  assert c.eval.feature_net == 'inception_v3' and c.eval_every > 0
  tiny = load_experiment('cifar10_sngan', 'tiny')
  assert (tiny.model.name, tiny.data.image_size, tiny.data.name) == ('sngan32', 32, 'cifar10_jpeg')
