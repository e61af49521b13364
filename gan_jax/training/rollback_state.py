"""Run-scoped rollback state: the learning-rate scale and the rollbacks already used.

`on_nonfinite='rollback'` records each rollback in `<workdir>/rollbacks.json`; the last
entry's `lr_scale` is the scale the run's later checkpoints were trained with, and the
entries count against `max_rollbacks`. That record belongs to the run whose checkpoints are
in the folder: a run that resumes from one of them keeps the lowered rates and the spent
budget, exactly as before. A run that restores no checkpoint is a new run: it starts at the
requested rates with its whole budget, and the earlier run's record is removed (it used to
carry over, so that a fresh run after a failed one trained at 1/8 of the requested rates
with no rollback left). The effective rates are recorded in summary.json.

No JAX here.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

log = logging.getLogger(__name__)

FILE = 'rollbacks.json'


def load(workdir: str, *, resumed: bool, writer: bool = True) -> tuple[list[dict[str, Any]], float]:
  """(the rollbacks recorded so far, the learning-rate scale) of the run in `workdir`.

  Args:
    workdir: the run folder.
    resumed: whether the run restored a checkpoint; if not, the run starts clean and
      `writer` removes an earlier run's record.
    writer: this process writes the run's files (process 0).
  """
  path = os.path.join(workdir, FILE)
  if not resumed:
    if writer and os.path.exists(path):
      os.remove(path)
      log.warning(
        'A new run (no checkpoint restored): removed the rollback record of an earlier run '
        'in %s; training at the requested learning rates.',
        workdir,
      )
    return [], 1.0
  if not os.path.exists(path):
    return [], 1.0
  with open(path) as f:
    rollbacks = json.load(f)
  lr_scale = rollbacks[-1]['lr_scale'] if rollbacks else 1.0
  if rollbacks:
    log.warning(
      'Resuming after %d rollback(s) (%s): learning rates x%g.', len(rollbacks), path, lr_scale
    )
  return rollbacks, lr_scale
