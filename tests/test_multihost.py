"""Multi-host training for real: 2 processes x 2 CPU devices on localhost (gloo collectives).

The tiny MNIST DCGAN trained by two `gan-jax train` processes that form one run of 4 devices
must equal the same config trained by one process with 4 devices, to float32 tolerance
(only the collectives differ). Along the way one process alone gets SIGTERM: both must stop
at the same step with a checkpoint, which then resumes in a single process (another process
and device count) to the uninterrupted run's final state. And the launch flags fail fast:
bad flags in one line with exit status 2, an unreachable coordinator within its timeout.
The same holds for K = 2 replicas in one compiled program (`num_replicas = 2`, with a
learning rate per replica): each process feeds its rows of every replica's global batch.
"""

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from PIL import Image

from conftest import REPO
from gan_jax.data import pipeline as data
from gan_jax.training import replicas, train
from gan_jax.cli.main import main

CONFIG = str(REPO / 'experiments' / 'mnist_dcgan.py') + ':tiny'
# A checkpoint every step, so the 4-device run has one at whatever step the other stops.
OVERRIDES = {
  'train.steps': 4,
  'checkpoint_every': 1,
  'keep_checkpoints': 4,
  'log_every': 1,
  'sample_every': 2,
}
TIMEOUT_S = 240  # per run; a run past it is killed, with its process group

# `gan-jax train`, after an optional sabotage: SIGTERM_AFTER_SAVE=N makes this process send
# itself SIGTERM once its checkpoint N is written (as a preemption would, to one host only).
DRIVER = r"""
import os, signal, sys
from gan_jax.training import checkpoint

from gan_jax.cli import main
after = int(os.environ.get('SIGTERM_AFTER_SAVE', '-1'))
if after >= 0:
  save, signalled = checkpoint.Checkpointer.save, []
  def save_then_signal(self, state, **kwargs):
    step = save(self, state, **kwargs)
    if step == after and not signalled:  # once: K replicas each save step N
      signalled.append(step)
      os.kill(os.getpid(), signal.SIGTERM)
    return step
  checkpoint.Checkpointer.save = save_then_signal

sys.exit(main.main(sys.argv[1:]))
"""

# Variables by which `jax.distributed.initialize()` would detect a cluster around us.
CLUSTER_VARS = ('SLURM_', 'OMPI_', 'PMI_', 'KUBERNETES_', 'JAX_COORDINATOR', 'TPU_')


def _env(devices: int, **extra: str) -> dict[str, str]:
  env = {k: v for k, v in os.environ.items() if not k.startswith(CLUSTER_VARS)}
  env.update(
    XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
    JAX_PLATFORMS='cpu',
    TF_CPP_MIN_LOG_LEVEL='3',
    **extra,
  )
  return env


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _train_command(workdir, data_dir, *flags: str) -> list[str]:
  return [
    sys.executable,
    '-c',
    DRIVER,
    'train',
    '--config',
    CONFIG,
    '--workdir',
    str(workdir),
    f'--config.data.data_dir={data_dir}',
    *[f'--config.{k}={v}' for k, v in OVERRIDES.items()],
    *flags,
  ]


def _run_together(jobs, timeout=TIMEOUT_S):
  """Runs `[(command, env), ...]` side by side; returns [(returncode, stdout, stderr)].

  Each job is the leader of its own process group; whatever still runs at the deadline (or
  when the test fails) is killed with its group, so no process outlives the test.
  """
  procs = [
    subprocess.Popen(
      command,
      env=env,
      cwd=str(REPO),
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
      start_new_session=True,
    )
    for command, env in jobs
  ]
  deadline = time.monotonic() + timeout
  try:
    results = []
    for proc in procs:
      out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
      results.append((proc.returncode, out, err))
    return results
  finally:
    for proc in procs:
      if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _lines(workdir) -> list[dict]:
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [{k: v for k, v in json.loads(line).items() if not k.startswith('perf/')} for line in f]


def _saved_state(workdir, step: int) -> dict:
  """Checkpoint `step` of a run as a dict of numpy arrays, read as saved (no model built)."""
  path = os.path.join(workdir, 'checkpoints', str(step), 'state')
  with ocp.PyTreeCheckpointer() as checkpointer:
    tree = checkpointer.metadata(path).item_metadata.tree
    args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    return checkpointer.restore(path, restore_args=args)


def _assert_close(a, b):
  """Two states (or logs) equal to float32 tolerance; integers (steps, keys) exactly."""
  la, lb = jax.tree.leaves(jax.device_get(a)), jax.tree.leaves(jax.device_get(b))
  assert len(la) == len(lb)
  for x, y in zip(la, lb):
    x, y = np.asarray(x), np.asarray(y)
    if np.issubdtype(x.dtype, np.floating):
      np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    else:
      np.testing.assert_array_equal(x, y)


def _assert_logs_close(a, b):
  assert [l['step'] for l in a] == [l['step'] for l in b]
  assert [sorted(l) for l in a] == [sorted(l) for l in b]
  _assert_close([[l[k] for k in sorted(l)] for l in a], [[l[k] for k in sorted(l)] for l in b])


@pytest.fixture(scope='module')
def runs(tmp_path_factory, tfds_dir):
  """The 2-process run (process 1 alone gets SIGTERM after its checkpoint 1) and the
  uninterrupted 1-process 4-device run of the same config, trained side by side.

  Process 0 is launched with explicit flags, process 1 with `--distributed` in what looks
  like SLURM task 1 of 2 on this host: both ways of launching meet in one run.
  """
  root = tmp_path_factory.mktemp('multihost')
  two, one = root / 'two_processes', root / 'one_process'
  port = str(_free_port())
  slurm_task_1 = dict(
    SLURM_JOB_ID='7',
    SLURM_STEP_NODELIST='localhost',  # the coordinator: the job's first node, and
    JAX_COORDINATOR_PORT=port,  # this port instead of one derived from the job id
    SLURM_NTASKS='2',
    SLURM_PROCID='1',
    SLURM_LOCALID='1',
  )
  explicit = ['--coordinator', f'localhost:{port}', '--num-processes', '2', '--process-id', '0']
  patience = ['--distributed-timeout', '60']  # if one fails to start, the other stops too
  results = _run_together(
    [
      (_train_command(two, tfds_dir, *explicit, *patience), _env(2)),
      (
        _train_command(two, tfds_dir, '--distributed', *patience),
        _env(2, SIGTERM_AFTER_SAVE='1', **slurm_task_1),
      ),
      (_train_command(one, tfds_dir), _env(4)),
    ]
  )
  for code, _, err in results:
    assert code == 0, err[-3000:]
  return two, one, results


def test_two_processes_train_as_one_process_with_four_devices(runs):
  two, one, ((_, out0, _), (_, out1, _), _) = runs
  # Process 1's SIGTERM stopped both: after the step it arrived in and one more (the vote).
  assert 'stopped at step 3 of 4' in out0
  assert 'stopped at step' not in out1 and 'done' not in out1  # process 0 speaks for the run
  assert sorted(os.listdir(two / 'checkpoints')) == ['1', '2', '3']
  state = _saved_state(two, 3)
  assert int(state['step']) == 3
  _assert_close(state, _saved_state(one, 3))
  # Process 0 alone wrote the logs, grids and summary, each once.
  _assert_logs_close(_lines(two), _lines(one)[:3])
  assert len([n for n in os.listdir(two) if n.startswith('events.out.tfevents.')]) == 1
  assert os.listdir(two / 'samples') == ['step_0000002.png']
  grids = [np.asarray(Image.open(d / 'samples' / 'step_0000002.png'), int) for d in (two, one)]
  assert np.abs(grids[0] - grids[1]).max() <= 1  # float32 round-off may move a pixel by 1
  summary = json.loads((two / 'summary.json').read_text())
  assert summary['end_step'] == 3 and summary['devices'] == 4
  assert summary['stopped_by_signal'] == 'in another process'
  assert json.loads((two / 'config.json').read_text())['train']['steps'] == 4
  assert not [n for n in os.listdir(two) if n.endswith('.tmp')]


def test_the_checkpoint_resumes_in_one_process_to_the_uninterrupted_state(
  runs, tiny_config, tmp_path
):
  """Resumed here, in one process with this test's devices, the 2-process run's checkpoint
  of step 3 goes on to the uninterrupted 4-device run's step 4."""
  two, one, _ = runs
  workdir = tmp_path / 'resumed'
  shutil.copytree(two, workdir)
  tiny_config.update_from_flattened_dict(OVERRIDES)
  state = train.train_and_evaluate(tiny_config, str(workdir))
  assert int(state.step) == 4
  _assert_close(_saved_state(workdir, 4), _saved_state(one, 4))
  _assert_logs_close(_lines(workdir), _lines(one))  # every step once


# Two replicas with their own discriminator learning rates (traced per-replica inputs).
REPLICAS = {'num_replicas': 2, 'replica_values': 'train.d_lr=1e-4,3e-4'}


@pytest.fixture(scope='module')
def replica_runs(tmp_path_factory, tfds_dir):
  """K = 2 replicas trained by 2 processes x 2 devices (process 1 alone gets SIGTERM after
  its checkpoint 1) and by 1 process with 4 devices, uninterrupted, side by side."""
  root = tmp_path_factory.mktemp('multihost_replicas')
  two, one = root / 'two_processes', root / 'one_process'
  port = str(_free_port())
  flags = [f'--config.{k}={v}' for k, v in REPLICAS.items()]
  launch = ['--coordinator', f'localhost:{port}', '--num-processes', '2', '--distributed-timeout']
  results = _run_together(
    [
      (_train_command(two, tfds_dir, *flags, *launch, '60', '--process-id', '0'), _env(2)),
      (
        _train_command(two, tfds_dir, *flags, *launch, '60', '--process-id', '1'),
        _env(2, SIGTERM_AFTER_SAVE='1'),
      ),
      (_train_command(one, tfds_dir, *flags), _env(4)),
    ]
  )
  for code, _, err in results:
    assert code == 0, err[-3000:]
  return two, one, results


def test_two_processes_train_replicas_as_one_process_with_four_devices(replica_runs):
  """Each replica folder of the 2-process run holds what the 4-device run's holds at step
  3, written once, to float32 tolerance: the replicas' gradients are all-reduced over
  gloo between the processes and within XLA in one process, which sum in another order
  (so not bit for bit; a bit-exact difference would mean other batches or another step)."""
  two, one, ((_, out0, _), (_, out1, _), _) = replica_runs
  assert 'stopped at step 3 of 4' in out0
  assert 'stopped at step' not in out1 and 'done' not in out1
  assert sorted(os.listdir(two)) == ['replica_0', 'replica_1']
  finals = []
  for i in range(2):
    folder, alone = two / f'replica_{i}', one / f'replica_{i}'
    assert sorted(os.listdir(folder / 'checkpoints')) == ['1', '2', '3']
    state = _saved_state(folder, 3)
    assert int(state['step']) == 3
    _assert_close(state, _saved_state(alone, 3))
    finals.append(state)
    _assert_logs_close(_lines(folder), _lines(alone)[:3])
    assert len([n for n in os.listdir(folder) if n.startswith('events.out.tfevents.')]) == 1
    assert os.listdir(folder / 'samples') == ['step_0000002.png']
    summary = json.loads((folder / 'summary.json').read_text())
    assert summary['end_step'] == 3 and summary['devices'] == 4
    assert summary['replica'] == i and summary['num_replicas'] == 2
    assert summary['stopped_by_signal'] == 'in another process'
    config = json.loads((folder / 'config.json').read_text())
    assert config['seed'] == i and config['num_replicas'] == 1
    assert config['train']['d_lr'] == [1e-4, 3e-4][i]
    assert not [n for n in os.listdir(folder) if n.endswith('.tmp')]
  # The replicas are distinct runs (seeds and learning rates), not copies of one.
  assert not np.array_equal(*(jax.tree.leaves(s['g_params'])[0] for s in finals))


def test_replica_checkpoints_resume_in_one_process_to_the_uninterrupted_state(
  replica_runs, tiny_config, tmp_path
):
  """Resumed here, in one process, the 2-process replicas' checkpoints of step 3 go on to
  the uninterrupted 4-device replicas' step 4."""
  two, one, _ = replica_runs
  workdir = tmp_path / 'resumed'
  shutil.copytree(two, workdir)
  tiny_config.update_from_flattened_dict({**OVERRIDES, **REPLICAS})
  states = train.train_and_evaluate(tiny_config, str(workdir))
  assert np.asarray(jax.device_get(states.step)).tolist() == [4, 4]
  for i in range(2):
    folder = workdir / f'replica_{i}'
    _assert_close(_saved_state(folder, 4), _saved_state(one / f'replica_{i}', 4))
    _assert_logs_close(_lines(folder), _lines(one / f'replica_{i}'))


def test_the_global_batches_do_not_depend_on_the_number_of_processes(tfds_dir):
  """Each process's rows of a step are rows of the one-process batch of that step, so the
  processes together train on exactly the batches one process would."""

  def steps(**layout):
    ds = data.build_train_dataset(
      'mnist', 'test[:64]', data_dir=tfds_dir, image_size=28, channels=1, batch_size=8,
      seed=3, n_critic=2, start_step=5, **layout,
    )  # fmt: skip
    batches = ds.as_numpy_iterator()
    return [next(batches) for _ in range(3)]  # 5 steps (80 examples) in: the 2nd epoch

  whole = steps()
  halves = [steps(process_index=i, process_count=2) for i in range(2)]
  scattered = steps(rows=[0, 2, 5])  # a mesh whose devices of one process are not adjacent
  for step in range(3):
    for key in ('image', 'label'):
      assert halves[0][step][key].shape[1] == 4
      np.testing.assert_array_equal(
        np.concatenate([h[step][key] for h in halves], axis=1), whole[step][key]
      )
      np.testing.assert_array_equal(scattered[step][key], whole[step][key][:, [0, 2, 5]])


def test_each_process_feeds_its_rows_of_every_replicas_batch(tiny_config):
  """The replicas' stacked batch of a process is its rows (`process_rows`, here scattered
  as a permuted mesh would make them) of each replica's one-process batch, replica by
  replica in each replica's own seed's order."""
  tiny_config.update_from_flattened_dict(REPLICAS)
  configs = replicas.replica_configs(tiny_config)
  whole = next(replicas.stacked_batches(configs, 2))
  mine = next(replicas.stacked_batches(configs, 2, rows=np.array([0, 3, 5])))
  assert whole['image'].shape[:3] == (2, 1, tiny_config.train.batch_size)
  assert not np.array_equal(whole['image'][0], whole['image'][1])  # two data orders
  for key in ('image', 'label'):
    np.testing.assert_array_equal(mine[key], whole[key][:, :, [0, 3, 5]])


@pytest.mark.parametrize(
  'flags, message',
  [
    (['--num-processes', '2', '--process-id', '0'], '--coordinator missing'),
    (['--coordinator', 'localhost:1234'], '--num-processes, --process-id missing'),
    (['--coordinator', 'localhost', '--num-processes', '2', '--process-id', '0'], 'HOST:PORT'),
    (
      ['--coordinator', 'localhost:1234', '--num-processes', '2', '--process-id', '2'],
      'must be below --num-processes=2',
    ),
    (['--coordinator', 'h:1', '--num-processes', '0', '--process-id', '0'], 'must be >= 1'),
    (['--distributed', '--distributed-timeout', '0'], 'positive number of seconds'),
  ],
)
def test_bad_launch_flags_are_one_line_usage_errors(flags, message, tmp_path, capsys):
  workdir = tmp_path / 'run'
  assert main(['train', '--config', CONFIG, '--workdir', str(workdir), *flags]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith('gan-jax: error: ') and message in err[0], err
  assert not workdir.exists()


@pytest.mark.parametrize('host', ['127.0.0.1', ''])
def test_the_coordinator_port_check_finds_a_port_in_use(host):
  """jaxlib's coordinator service crashes (SIGSEGV) on a port in use, so process 0 checks
  the port first: taken on one interface or all of them, and free again once closed."""
  from gan_jax.training.distributed import _bind_error

  with socket.socket() as taken:
    taken.bind((host, 0))
    taken.listen()
    port = taken.getsockname()[1]
    err = _bind_error(f'[::]:{port}')
    assert err is not None and err.errno == errno.EADDRINUSE
    assert _bind_error(f'0.0.0.0:{port}') is not None
  assert _bind_error(f'[::]:{port}') is None


def test_launch_failures_are_one_line_errors_in_bounded_time(tmp_path):
  """`--distributed` with no cluster to detect, and process 0 on a port already taken: exit
  2 at once. Process 0 whose peer never starts, and process 1 whose coordinator never
  starts: exit 1 after --distributed-timeout, with one line (not JAX's C++ abort and stack
  trace), instead of waiting forever."""
  base = ['train', '--config', CONFIG, '--workdir', str(tmp_path / 'run')]
  python = [sys.executable, '-m', 'gan_jax.cli.main', *base]
  alone = ['--num-processes', '2', '--distributed-timeout', '3']

  def process(port, i):
    return [*python, '--coordinator', f'localhost:{port}', *alone, '--process-id', str(i)]

  t0 = time.monotonic()
  with socket.socket() as taken:
    taken.bind(('', 0))
    taken.listen()
    busy = taken.getsockname()[1]
    detect, clash, waits, knocks = _run_together(
      [
        ([*python, '--distributed'], _env(1)),
        (process(busy, 0), _env(1)),
        (process(_free_port(), 0), _env(1)),
        (process(_free_port(), 1), _env(1)),
      ],
      timeout=60,
    )
  elapsed = time.monotonic() - t0
  for (code, _, err), start in (
    (detect, 'gan-jax: error: --distributed found no cluster to join'),
    (clash, 'gan-jax: error: process 0 of 2 could not start the multi-process run'),
  ):
    assert code == 2 and err.strip().splitlines()[-1].startswith(start), err[-2000:]
  assert f'cannot listen on [::]:{busy}' in clash[2], clash[2][-2000:]
  for name, (code, _, err) in (('process 0', waits), ('process 1', knocks)):
    last = err.strip().splitlines()[-1]
    assert code == 1, err[-2000:]
    assert last.startswith(f'gan-jax: error: {name} of 2 could not connect to'), err[-2000:]
    assert 'Check failure stack trace' not in err
  assert elapsed < 45  # 3 s of waiting, plus starting Python and JAX on a busy machine
  assert not (tmp_path / 'run').exists()
