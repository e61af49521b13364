"""What `gan-jax sample`, `eval` and `edit` refuse before they allocate or write: grids over
the memory limit, scales out of range, output paths Pillow cannot write, non-finite edit
values, a garbled config.json in the run folder (issue 17, items 6-8). Each is one line and
exit status 2, with nothing written and nothing in the run folder changed."""

import json
import os
import shutil

import jax
import numpy as np
import pytest
from PIL import Image

from conftest import digest_folder

from gan_jax.cli import main as cli
from gan_jax.core import sampling
from gan_jax.training.checkpoint import load_run


def test_grid_bytes_by_hand():
  # 10 images of 28x28x1, 4 per row (3 rows), 2-pixel borders, scale 3:
  # (3 * 30 + 2) * 3 rows of pixels x (4 * 30 + 2) * 3 columns x 1 channel.
  assert sampling.grid_bytes(10, (28, 28, 1), 4, 3) == (92 * 3) * (122 * 3)
  # Default ncol ceil(sqrt(10)) = 4; RGB triples it.
  assert sampling.grid_bytes(10, (28, 28, 3), None, 1) == 92 * 122 * 3
  # save_grid makes exactly that many bytes.
  images = np.zeros((10, 28, 28, 1), np.float32)
  grid = sampling.make_grid(images, 4)
  assert grid.size == sampling.grid_bytes(10, (28, 28, 1), 4, 1)


def test_checks_raise_one_line_value_errors(tmp_path):
  for scale in (0, -3, sampling.MAX_SCALE + 1):
    with pytest.raises(ValueError, match=f'--scale={scale} must be an integer from 1 to'):
      sampling.check_scale(scale)
  sampling.check_grid(64, (28, 28, 1), None, 2)
  with pytest.raises(ValueError, match=r'over the 1 GiB limit: lower --num or --scale'):
    sampling.check_grid(10_000_000, (28, 28, 1), None, 1)
  assert sampling.check_image_path(str(tmp_path / 'a.png')).endswith('a.png')
  assert sampling.check_image_path(str(tmp_path / 'a.JPG')).endswith('a.JPG')
  for bad, message in ((str(tmp_path), 'is a folder'), (str(tmp_path / 'a.txt'), '.txt is not'),
                       (str(tmp_path / 'grid'), 'no extension is not')):  # fmt: skip
    with pytest.raises(ValueError, match=message):
      sampling.check_image_path(bad)


@pytest.fixture
def run(trained_tiny_run):
  return trained_tiny_run


def test_chunked_sampling_gives_the_same_images(run):
  _, gan, state = load_run(run)
  z = gan.sample_latents(jax.random.PRNGKey(3), 10)
  whole = np.asarray(sampling.sample(gan, state, z))
  chunked = sampling.sample_in_chunks(gan, state, z, chunk=3)
  assert chunked.shape == whole.shape == (10, 28, 28, 1)
  np.testing.assert_allclose(chunked, whole, atol=1e-6)
  np.testing.assert_array_equal(sampling.sample_in_chunks(gan, state, z), whole)


def _refused(capsys, argv, message):
  status = cli.main(argv)
  err = capsys.readouterr().err.strip()
  assert status == 2, err
  assert len(err.splitlines()) == 1 and message in err, err
  return err


def test_sample_refuses_before_allocating_or_writing(run, tmp_path, capsys):
  before = sorted(os.listdir(run))
  out = str(tmp_path / 'big.png')
  err = _refused(capsys, ['sample', '--workdir', run, '--num', '10000000', '--out', out],
                 'over the 1 GiB limit')  # fmt: skip
  assert '10000000 images of 28x28 at scale 2' in err
  for argv, message in (
    (['--scale', '0'], '--scale=0 must be an integer from 1 to 64'),
    (['--scale', '100000'], '--scale=100000 must be'),
    (['--out', str(tmp_path)], 'is a folder'),
    (['--out', str(tmp_path / 'x.jpgx')], '.jpgx is not an image format'),
  ):
    full = ['sample', '--workdir', run, '--num', '4', '--out', out] + argv
    _refused(capsys, full, message)
  assert not os.path.exists(out) and sorted(os.listdir(run)) == before
  # A grid just under the limit is written, with the same pixels as the default path.
  ok = str(tmp_path / 'ok.png')
  assert cli.main(['sample', '--workdir', run, '--num', '9', '--scale', '1', '--out', ok]) == 0
  assert Image.open(ok).size == (3 * 30 + 2,) * 2


def test_edit_refuses_non_finite_values(run, tmp_path, capsys):
  digit = str(tmp_path / 'digit.png')
  Image.fromarray(np.zeros((28, 28), np.uint8)).save(digit)
  out = str(tmp_path / 'edit.png')
  base = ['edit', '--workdir', run, '--image', digit, '--attribute', 'ink', '--out', out]
  for argv, message in (
    (['--strengths', 'nan,inf'], 'must be comma-separated finite numbers'),
    (['--strength', 'inf'], '--strength=inf must be a finite number'),
    (['--lr', 'nan'], '--lr=nan must be a positive finite number'),
    (['--lr', '0'], '--lr=0.0 must be a positive finite number'),
    (['--scale', '100000'], '--scale=100000 must be'),
  ):
    _refused(capsys, base + argv, message)
  _refused(capsys, base[:-1] + [str(tmp_path / 'e.txt')], '.txt is not an image format')
  assert not os.path.exists(out)


@pytest.mark.parametrize(
  'content, message',
  [
    (b'{"model": ', 'is not valid JSON (Expecting value'),
    (b'[1, 2]', 'holds a JSON list, not the object gan-jax train writes'),
    (b'{"model": {"name": "dcgan28"}}', 'does not describe a model gan-jax can build'),
    (b'\xff\xfe', "is not valid JSON ('utf-8' codec"),
  ],
)
def test_garbled_config_json_is_one_line(run, tmp_path, capsys, content, message):
  workdir = str(tmp_path / 'copy')
  shutil.copytree(run, workdir)
  with open(os.path.join(workdir, 'config.json'), 'wb') as f:
    f.write(content)
  before = digest_folder(workdir)
  out = str(tmp_path / 's.png')
  for argv in (
    ['sample', '--workdir', workdir, '--out', out],
    ['eval', '--workdir', workdir, '--num-samples', '100', '--out', str(tmp_path / 'e.json')],
  ):
    err = _refused(capsys, argv, message)
    assert 'config.json' in err and 'Traceback' not in err
  assert digest_folder(workdir) == before and not os.path.exists(out)


def test_eval_images_names_the_unreadable_file(tfds_dir, tmp_path, capsys, monkeypatch):
  folder = tmp_path / 'imgs'
  folder.mkdir()
  rng = np.random.default_rng(0)
  for i in range(200):  # FID (LeNet, 128 features) needs more than 128 images
    Image.fromarray(rng.integers(0, 256, (28, 28), np.uint8)).save(folder / f'{i:03d}.png')
  (folder / 'dir.png').mkdir()  # a folder named like an image is not an image
  good = (folder / '150.png').read_bytes()
  (folder / '150.png').write_bytes(good[: len(good) // 2])  # cut short
  base = ['eval', '--images', str(folder), '--dataset', 'mnist', '--data-dir', tfds_dir,
          '--split', 'train[:1000]', '--metrics', 'fid', '--out', str(tmp_path / 'e.json')]  # fmt: skip
  err = _refused(capsys, base, f'--images: {folder / "150.png"} cannot be read as an image')
  assert 'truncated' in err or 'OSError' in err
  (folder / '150.png').write_bytes(good)
  # A decompression bomb (here: any image over twice a lowered pixel limit) is refused too,
  # naming the file, instead of Pillow's traceback.
  monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 100)
  _refused(capsys, base, f'--images: {folder / "000.png"} cannot be read as an image '
           '(DecompressionBombError')  # fmt: skip
  monkeypatch.undo()
  assert cli.main(base) == 0, capsys.readouterr().err
  assert not os.path.exists(tmp_path / 'imgs' / 'e.json')


@pytest.mark.parametrize(
  'seed, replicas, ok',
  [(2**63 - 1, 1, True), (2**63, 1, False), (2**64, 1, False), (-(2**63), 1, True),
   (-(2**63) - 1, 1, False), (2**63 - 4, 4, True), (2**63 - 3, 4, False)],
)  # fmt: skip
def test_seed_must_fit_in_64_bits(seed, replicas, ok):
  """jax.random.PRNGKey overflows past int64; replica i uses seed + i."""
  from gan_jax.config import validate
  from gan_jax.errors import ConfigError
  from conftest import load_experiment

  config = load_experiment('mnist_dcgan', 'tiny')
  config.seed = seed
  config.num_replicas = replicas
  if ok:
    validate(config)
    jax.random.PRNGKey(seed + replicas - 1)  # the largest seed a replica gets
  else:
    with pytest.raises(ConfigError, match=r'^seed=.* is invalid'):
      validate(config)


def test_oversized_models_and_grids_are_refused_before_allocation():
  """A latent_dim of 1e8 gives G a 1e8 x 6,272 first layer: counted from shapes, refused
  in one line instead of an XLA out-of-memory traceback."""
  from gan_jax.config import MAX_GRID_IMAGES, MAX_PARAMS, validate
  from gan_jax.errors import ConfigError
  from conftest import load_experiment

  config = load_experiment('mnist_dcgan', 'tiny')
  validate(config)
  config.model.latent_dim = 100_000_000
  # DCGAN-28's fc layer alone: latent_dim x (7 * 7 * 2 * g_width) weights.
  fc = 100_000_000 * 7 * 7 * 2 * config.model.g_width
  assert fc > MAX_PARAMS
  with pytest.raises(ConfigError, match=r'^the model would have [\d,]+ parameters .* use '
                     r'smaller model.latent_dim'):  # fmt: skip
    validate(config)
  config = load_experiment('mnist_dcgan', 'tiny')
  config.num_samples = MAX_GRID_IMAGES + 1
  with pytest.raises(ConfigError, match=r'^num_samples=10001 is invalid: a sample grid holds'):
    validate(config)


def test_hostile_direction_files_are_one_line(run, tmp_path, capsys):
  """`edit --direction`: a NaN, zero, garbled or non-.npz direction file is refused in one
  line (a NaN direction wrote black images and exited 0)."""
  from gan_jax import latent

  digit = str(tmp_path / 'digit.png')
  Image.fromarray(np.zeros((28, 28), np.uint8)).save(digit)
  out = str(tmp_path / 'edit.png')
  d = 100  # the tiny run's latent_dim
  files = {}
  for name, vector in (('nan', np.full(d, np.nan)), ('zero', np.zeros(d))):
    files[name] = str(tmp_path / f'{name}.npz')
    np.savez(files[name], direction=vector.astype(np.float32))
  files['garbled'] = str(tmp_path / 'garbled.npz')
  open(files['garbled'], 'wb').write(b'PK\x03\x04 not really a zip')
  files['npy'] = str(tmp_path / 'plain.npy')
  np.save(files['npy'], np.ones(d, np.float32))
  for name, message in (('nan', 'non-finite or zero'), ('zero', 'non-finite or zero'),
                        ('garbled', 'not a readable .npz file'), ('npy', 'is a .npy array')):  # fmt: skip
    with pytest.raises(ValueError, match=message):
      latent.load_direction(files[name])
    argv = ['edit', '--workdir', run, '--image', digit, '--direction', files[name], '--out', out]
    _refused(capsys, argv, f'cannot read --direction {files[name]!r}')
  assert not os.path.exists(out)


def test_sample_reads_past_a_damaged_checkpoint_without_moving_it(run, tmp_path, capsys, caplog):
  """A read-only command never changes the run folder: with the newest checkpoint damaged,
  `sample` reads the previous one and leaves the damaged one where it is (training moves it
  aside to <step>.unreadable, tests/test_train.py)."""
  import glob

  workdir = str(tmp_path / 'copy')
  shutil.copytree(run, workdir)
  data = glob.glob(os.path.join(workdir, 'checkpoints', '6', 'state', '**', 'd', '*'))
  biggest = max(data, key=os.path.getsize)
  with open(biggest, 'r+b') as f:
    f.truncate(os.path.getsize(biggest) // 3)
  before = digest_folder(workdir)
  out = str(tmp_path / 's.png')
  assert cli.main(['sample', '--workdir', workdir, '--num', '4', '--out', out]) == 0
  assert 'from step 3' in capsys.readouterr().out
  assert 'checkpoints/6 is unreadable' in caplog.text and 'left it in place' in caplog.text
  assert digest_folder(workdir) == before
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['3', '6']


@pytest.mark.parametrize(
  'name, source, message',
  [
    ('exits.py', 'import sys\nsys.exit(0)\n', 'called sys.exit(0) while loading'),
    ('exits_later.py', 'import sys\ndef get_config():\n  sys.exit(3)\n', 'called sys.exit(3)'),
    ('none.py', 'def get_config():\n  return None\n', 'returned NoneType, not an'),
    ('no_blocks.py', 'import ml_collections\ndef get_config():\n  return '
     'ml_collections.ConfigDict({"seed": 0})\n', 'without the block(s) data, eval, model, train'),
    ('config.yaml', 'train: {}\n', 'is not a .py file'),
    ('no_function.py', 'get_config = 3\n', 'defines no get_config() function'),
  ],
)  # fmt: skip
def test_hostile_config_files_are_one_line(tmp_path, capsys, name, source, message):
  """A config file is Python code run by gan-jax: one that exits (status 0 would read as
  success), returns no config or a config without its blocks is refused in one line."""
  path = tmp_path / name
  path.write_text(source)
  workdir = tmp_path / 'run'
  _refused(capsys, ['train', '--config', str(path), '--workdir', str(workdir)], message)
  assert not workdir.exists()


def test_resume_with_another_seed_or_data_is_refused_unless_allowed(tfds_dir, tmp_path):
  """A resume that changes the seed or the data would silently mix two runs and overwrite
  config.json: refused in one line, nothing changed; allowed explicitly, it goes on and the
  earlier config.json is kept in config_history.jsonl."""
  from gan_jax.training import train
  from gan_jax.errors import ConfigError
  from conftest import load_experiment

  config = load_experiment('mnist_dcgan', 'tiny')
  config.data.data_dir = tfds_dir
  config.train.steps = 3
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir)
  saved = open(os.path.join(workdir, 'config.json')).read()
  before = digest_folder(workdir)
  for field, value in (('seed', 7), ('data.split', 'train[:512]'), ('data.name', 'fashion_mnist')):
    changed = load_experiment('mnist_dcgan', 'tiny')
    changed.data.data_dir = tfds_dir
    changed.train.steps = 6
    block, _, name = field.rpartition('.')
    (changed[block] if block else changed)[name] = value
    with pytest.raises(
      ConfigError, match=rf'another seed or data \({field}: .*allow_resume_changes=true'
    ):
      train.train_and_evaluate(changed, workdir)
    assert digest_folder(workdir) == before
  changed.allow_resume_changes = True  # data.name=fashion_mnist, allowed
  assert int(train.train_and_evaluate(changed, workdir).step) == 6
  history = [json.loads(line) for line in open(os.path.join(workdir, 'config_history.jsonl'))]
  assert len(history) == 1 and history[0]['config'] == json.loads(saved)
  assert json.load(open(os.path.join(workdir, 'config.json')))['data']['name'] == 'fashion_mnist'


def test_a_run_killed_before_its_summary_finishes_on_rerun(tfds_dir, tmp_path):
  """Killed after its last checkpoint (and final evaluation) but before summary.json, or
  with the summary of an earlier stop: rerunning the same command writes the summary of the
  finished run, so a sweep sees it done instead of 'stopped' on every rerun."""
  from gan_jax import sweep
  from gan_jax.training import train
  from conftest import load_experiment

  config = load_experiment('mnist_dcgan', 'tiny')
  config.data.data_dir = tfds_dir
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir)
  path = os.path.join(workdir, 'summary.json')
  full = json.load(open(path))
  stale = {**full, 'end_step': 3, 'stopped_by_signal': 'SIGTERM'}  # an earlier stop's
  for damage in ('missing', 'stale'):
    if damage == 'missing':
      os.remove(path)
    else:
      json.dump(stale, open(path, 'w'))
    run = sweep.Run(cell=None, seed=0, workdir=workdir, args=[], config=config)
    assert sweep.run_state(run).status == 'unfinished'
    state = train.train_and_evaluate(config, workdir)
    assert int(state.step) == config.train.steps
    summary = json.load(open(path))
    assert summary['end_step'] == config.train.steps and summary['stopped_by_signal'] is None
    assert summary['finished_on_rerun'] is True
    assert summary['final_metrics'] == full['final_metrics']  # from metrics.jsonl
    assert sweep.run_state(run).status == 'done'


def _without_item(run, tmp_path, item):
  """A copy of `run` whose newest checkpoint (step 6) lost its `item` folder."""
  workdir = str(tmp_path / 'copy')
  shutil.copytree(run, workdir)
  shutil.rmtree(os.path.join(workdir, 'checkpoints', '6', item))
  return workdir


def _checkpoint_warnings(caplog):
  """(gan_jax's checkpoint warnings, every other warning or error) in the captured log."""
  records = [r for r in caplog.records if r.levelno >= 30]
  ours = [r for r in records if r.name == 'gan_jax.training.checkpoint']
  return [r.getMessage() for r in ours], [r.getMessage() for r in records if r not in ours]


@pytest.mark.parametrize('item', ['meta', 'state'])
def test_readers_skip_a_checkpoint_missing_an_item_in_one_line(run, tmp_path, capsys, caplog, item):
  """Issue 17, item 7: the newest checkpoint lacks its `meta` (digest) or `state` folder.
  `sample` and `eval` read step 3 with one warning naming the checkpoint and the missing
  item, and change nothing; asked for step 6 explicitly, one line of error, exit 2."""
  workdir = _without_item(run, tmp_path, item)
  before = digest_folder(workdir)
  missing = f"{os.path.join(workdir, 'checkpoints', '6')} lacks its '{item}' item"
  out = str(tmp_path / 's.png')
  for argv in (
    ['sample', '--workdir', workdir, '--num', '4', '--out', out],
    ['eval', '--workdir', workdir, '--num-samples', '200', '--out', str(tmp_path / 'e.json')],
  ):
    caplog.clear()
    assert cli.main(argv) == 0
    assert 'from step 3' in capsys.readouterr().out or argv[0] == 'eval'
    ours, others = _checkpoint_warnings(caplog)
    assert len(ours) == 1 and missing in ours[0] and 'left it in place' in ours[0], ours
    assert len(ours[0].splitlines()) == 1 and not others, others
  assert json.load(open(tmp_path / 'e.json'))['step'] == 3
  err = _refused(capsys, ['sample', '--workdir', workdir, '--step', '6', '--out', out], missing)
  assert 'Traceback' not in err
  assert digest_folder(workdir) == before


@pytest.mark.parametrize('item', ['meta', 'state'])
def test_training_moves_a_checkpoint_missing_an_item_aside(run, tfds_dir, tmp_path, caplog, item):
  """Training resumes from step 3 past a step-6 checkpoint without its `meta` or `state`
  folder, moved aside to 6.unreadable with one warning naming it and the missing item, and
  redoes steps 4-6 to exactly the state of the run that wrote them."""
  from conftest import load_experiment
  from gan_jax.training import train
  from test_train import _assert_states_equal

  workdir = _without_item(run, tmp_path, item)
  config = load_experiment('mnist_dcgan', 'tiny')
  config.data.data_dir = tfds_dir
  state = train.train_and_evaluate(config, workdir)
  ours, others = _checkpoint_warnings(caplog)
  missing = f"{os.path.join(workdir, 'checkpoints', '6')} lacks its '{item}' item"
  assert len(ours) == 1 and missing in ours[0] and '6.unreadable' in ours[0], ours
  assert not [m for m in others if 'could not be restored' in m], others
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['3', '6', '6.unreadable']
  _assert_states_equal(load_run(run)[2], state)


def test_every_checkpoint_missing_an_item_is_one_line(run, tmp_path, capsys):
  """With no checkpoint left whole, the error names what each one lacks, not another
  config (the message for checkpoints of another state structure)."""
  workdir = _without_item(run, tmp_path, 'meta')
  shutil.rmtree(os.path.join(workdir, 'checkpoints', '3', 'state'))
  before = digest_folder(workdir)
  err = _refused(capsys, ['sample', '--workdir', workdir, '--out', str(tmp_path / 's.png')],
                 "checkpoints/6 lacks its 'meta' item")  # fmt: skip
  assert "checkpoints/3 lacks its 'state' item" in err and 'another config' not in err
  assert digest_folder(workdir) == before


def test_save_reports_are_replayed_on_success_and_dropped_on_failure(caplog):
  """What Orbax's threads report during a save (absl log records, excepthook calls) is held:
  shown unchanged after a successful save, kept out of sight (DEBUG) after a failed one,
  whose error is then the one line; the hooks are restored either way."""
  import logging
  import sys

  from gan_jax.training import checkpoint

  hook, seen = sys.excepthook, []
  sys.excepthook = lambda *args: seen.append(args[1])
  try:
    with checkpoint._held_write_reports():  # pylint: disable=protected-access
      logging.getLogger('absl').warning('written by a thread')
      sys.excepthook(RuntimeError, RuntimeError('from a callback'), None)
      assert 'written by a thread' not in caplog.text and not seen  # held
    assert 'written by a thread' in caplog.text and [str(e) for e in seen] == ['from a callback']
    caplog.clear()
    with pytest.raises(OSError):
      with checkpoint._held_write_reports():  # pylint: disable=protected-access
        logging.getLogger('absl').error('a failed write')
        sys.excepthook(OSError, OSError('disk full'), None)
        raise OSError('disk full')
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(seen) == 1  # the failed save's report was not passed on
  finally:
    sys.excepthook = hook


def test_metrics_lines_gan_jax_did_not_write_are_skipped_on_resume(tmp_path):
  """Issue 17, item 7: a metrics.jsonl line that is JSON but not a logged step (a list, an
  object without an integer step) failed the resume with a TypeError or KeyError traceback.
  Like a line cut short by a crash, it is dropped, and the steps around it are kept."""
  from gan_jax.sweep.folders import read_evals
  from gan_jax.training.run_actions import ScalarLog, parse_log_line

  ours = [{'step': 2, 'd_loss': 1.5}, {'step': 4, 'eval/fid_lenet': 9.0}, {'step': 6, 'g_loss': 2}]
  alien = ['[1, 2]', '{"d_loss": 1.0}', '{"step": "4"}', '{"step": true}', '3', 'not json',
           '{"step": 4, "d_lo']  # fmt: skip
  lines = [json.dumps(ours[0]), alien[0], alien[1], json.dumps(ours[1]), *alien[2:6],
           json.dumps(ours[2]), json.dumps({'step': 8, 'd_loss': 0.1}), alien[6]]  # fmt: skip
  path = tmp_path / 'metrics.jsonl'
  path.write_text('\n'.join(lines))
  for line in alien:
    assert parse_log_line(line) is None, line
  assert [parse_log_line(json.dumps(e)) for e in ours] == ours
  # The sweep reads evaluations from the same file (a rerun over such a folder).
  assert read_evals(str(tmp_path)) == [(4, {'fid_lenet': 9.0})]
  log = ScalarLog(str(tmp_path), start_step=6)  # resuming at step 6: step 8 is dropped too
  log.writer.close()
  assert [json.loads(l) for l in path.read_text().splitlines()] == ours
  assert log.eval_steps == {4}
