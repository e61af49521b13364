"""The TensorBoard writer does not import PyTorch (run_actions.summary_writer_class).

tensorboardX imports `torch` whenever it is installed. The test puts a stand-in `torch`
package first on the path of a fresh interpreter; the stand-in records that it was imported.
CI has no PyTorch, so the stand-in is what tensorboardX would find there too.
"""

import glob
import os
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
  """
  import os, sys
  from gan_jax.training.run_actions import ScalarLog
  log = ScalarLog(sys.argv[1], 0)
  log.write(1, {'d_loss': 0.5})
  log.close()
  print('torch imported by the writer:', 'torch' in sys.modules, os.path.exists(sys.argv[2]))
  import torch  # the user's own import still works afterwards
  print('torch imported after:', torch.STAND_IN, os.path.exists(sys.argv[2]))
  """
)


def test_writer_does_not_import_torch(tmp_path):
  fake = tmp_path / 'site' / 'torch'
  fake.mkdir(parents=True)
  mark = tmp_path / 'torch_was_imported'
  (fake / '__init__.py').write_text(f'open({str(mark)!r}, "w").close()\nSTAND_IN = True\n')
  run = tmp_path / 'run'
  run.mkdir()
  env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(tmp_path / 'site'), os.getcwd()])}
  out = subprocess.run(
    [sys.executable, '-c', CHILD, str(run), str(mark)],
    env=env,
    capture_output=True,
    text=True,
    check=False,
    timeout=300,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  lines = out.stdout.splitlines()
  assert 'torch imported by the writer: False False' in lines, out.stdout
  assert 'torch imported after: True True' in lines, out.stdout
  assert glob.glob(str(run / 'events.out.tfevents.*')), os.listdir(run)
  assert (run / 'metrics.jsonl').read_text() == '{"step": 1, "d_loss": 0.5}\n'
