"""The gan-jax command line: a real train + sample round trip, and every usage error."""

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from conftest import one_line_error

from gan_jax.cli import main as cli

from conftest import REPO

GAN_JAX = str(Path(sys.executable).parent / 'gan-jax')
TINY = str(REPO / 'experiments' / 'mnist_dcgan.py') + ':tiny'


_one_line_error = one_line_error


def test_console_script_trains_and_samples_real_mnist(tfds_dir, tmp_path):
  workdir = tmp_path / 'run'
  proc = subprocess.run(
    [
      GAN_JAX,
      'train',
      '--config',
      TINY,
      '--workdir',
      str(workdir),
      f'--config.data.data_dir={tfds_dir}',
      '--config.train.steps',
      '4',
    ],
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert (workdir / 'checkpoints' / '4').is_dir()
  out = tmp_path / 'grid.png'
  proc = subprocess.run(
    [GAN_JAX, 'sample', '--workdir', str(workdir), '--num', '9', '--out', str(out), '--scale', '1'],
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert 'from step 4' in proc.stdout
  assert Image.open(out).size == (3 * 30 + 2, 3 * 30 + 2)


def test_console_script_usage_error_exits_2_without_traceback(tmp_path):
  proc = subprocess.run(
    [GAN_JAX, 'train', '--config', TINY, '--workdir', str(tmp_path), '--config.train.stepz=3'],
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(
    "gan-jax: error: unknown config key 'train.stepz'. Did you mean train.steps"
  ), lines


def test_missing_config_file(capsys, tmp_path):
  _one_line_error(
    capsys,
    ['train', '--config', 'experiments/nope.py', '--workdir', str(tmp_path)],
    "config file 'experiments/nope.py' not found",
  )


def test_config_file_without_get_config(capsys, tmp_path):
  bad = tmp_path / 'bad.py'
  bad.write_text('x = 1\n')
  _one_line_error(
    capsys, ['train', '--config', str(bad), '--workdir', str(tmp_path)], 'defines no get_config()'
  )


def test_broken_config_file(capsys, tmp_path):
  bad = tmp_path / 'bad.py'
  bad.write_text('def get_config(:\n')
  _one_line_error(
    capsys,
    ['train', '--config', str(bad), '--workdir', str(tmp_path)],
    'failed to load: SyntaxError',
  )


def test_unknown_config_key_suggests_the_closest(capsys, tmp_path):
  _one_line_error(
    capsys,
    ['train', '--config', TINY, '--workdir', str(tmp_path), '--config.train.batchsize=8'],
    "unknown config key 'train.batchsize'",
    'train.batch_size',
  )


@pytest.mark.parametrize(
  'arg,fragment',
  [
    ('--config.train.steps=ten', 'expected a value of type int'),
    ('--config.train.g_lr=fast', 'expected a value of type float'),
    ('--config.progress_bar=maybe', 'expected a value of type bool'),
  ],
)
def test_wrong_value_type(capsys, tmp_path, arg, fragment):
  _one_line_error(capsys, ['train', '--config', TINY, '--workdir', str(tmp_path), arg], fragment)


def test_invalid_value(capsys, tmp_path, tfds_dir):
  _one_line_error(
    capsys,
    [
      'train',
      '--config',
      TINY,
      '--workdir',
      str(tmp_path),
      f'--config.data.data_dir={tfds_dir}',
      '--config.train.batch_size=0',
    ],
    'train.batch_size=0 is invalid',
  )


def test_override_without_value_and_stray_argument(capsys, tmp_path):
  _one_line_error(
    capsys,
    ['train', '--config', TINY, '--workdir', str(tmp_path), '--config.train.steps'],
    'needs a value',
  )
  _one_line_error(
    capsys,
    ['train', '--config', TINY, '--workdir', str(tmp_path), '--fast'],
    "unrecognized argument '--fast'",
  )


def test_missing_dataset(capsys, tmp_path):
  empty = tmp_path / 'empty'
  empty.mkdir()
  err = _one_line_error(
    capsys,
    [
      'train',
      '--config',
      TINY,
      '--workdir',
      str(tmp_path / 'run'),
      f'--config.data.data_dir={empty}',
    ],
    str(empty),
    'TFDS_DATA_DIR',
  )
  assert 'mnist' in err


def test_sample_errors(capsys, tmp_path):
  _one_line_error(capsys, ['sample', '--workdir', str(tmp_path / 'nope')], 'does not exist')
  _one_line_error(capsys, ['sample', '--workdir', str(tmp_path)], 'holds no config.json')
  _one_line_error(capsys, ['sample', '--workdir', str(tmp_path), '--num', '0'], '--num=0')


def test_required_flags_are_argparse_errors(capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(['train', '--config', TINY])
  assert e.value.code == 2
  assert '--workdir' in capsys.readouterr().err


def test_overrides_are_typed():
  config = cli.load_config_file(TINY)
  cli.apply_overrides(
    config,
    [
      '--config.train.g_lr=1e-3',
      '--config.progress_bar=true',
      '--config.model.hidden=(8, 8)',
      '--config.data.data_dir',
      '/x',
      '--config.train.steps=7',
    ],
  )
  assert config.train.g_lr == 1e-3 and config.progress_bar is True
  assert tuple(config.model.hidden) == (8, 8) and config.data.data_dir == '/x'
  assert config.train.steps == 7


def test_unknown_split(capsys, tmp_path, tfds_dir):
  _one_line_error(
    capsys,
    [
      'train',
      '--config',
      TINY,
      '--workdir',
      str(tmp_path),
      f'--config.data.data_dir={tfds_dir}',
      '--config.data.split=validation',
    ],
    "Invalid split 'validation'",
    "'train'",
  )
