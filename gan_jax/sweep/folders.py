"""Reading a sweep's run folders (`gan_jax.sweep`): evaluations, whether a run is done,
unfinished or new, and whether a folder holds a run of another config.
"""

from __future__ import annotations

import json
import os
from typing import Any

from gan_jax.sweep.spec import Run, RunState

# Config fields that do not change what a run computes: an existing run folder may have been
# trained with other values of these (train.steps is checked on its own).
NEUTRAL_FIELDS = frozenset(
  {
    'data.data_dir',
    'data.cache',
    'data.download',
    'progress_bar',
    'log_every',
    'sample_every',
    'checkpoint_every',
    'keep_checkpoints',
    'train.steps',
    'eval.batch_size',
    'eval.cache_dir',
    'eval.inception_weights',
    'eval.download_inception',
    'eval.keep_best',
  }
)


def _read_json(path: str) -> Any:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _latest_checkpoint(workdir: str) -> int | None:
  folder = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(folder):
    return None
  steps = [int(n) for n in os.listdir(folder) if n.isdigit()]
  return max(steps) if steps else None


def read_evals(workdir: str) -> list[tuple[int, dict[str, float]]]:
  """[(step, {metric: value})] of every evaluation in `<workdir>/metrics.jsonl`, in order.

  Metric names lose their `eval/` prefix; a line that does not parse (cut short by a crash)
  or is no JSON object is skipped; a missing file gives [].
  """
  out = []
  try:
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      lines = f.readlines()
  except OSError:
    return out
  for line in lines:
    try:
      entry = json.loads(line)
    except ValueError:
      continue
    if not isinstance(entry, dict):  # JSON, but not a line gan-jax wrote (`[1, 2]`)
      continue
    values = {k[len('eval/') :]: v for k, v in entry.items() if k.startswith('eval/')}
    if values and isinstance(entry.get('step'), int):
      out.append((entry['step'], values))
  return out


def run_state(run: Run) -> RunState:
  """Whether `run` is done, unfinished or new, from the files in its folder.

  Done: summary.json's end_step equals train.steps and the run was not stopped by a signal,
  or it was but its final evaluation is logged (or evaluation is off).
  """
  steps = run.config.train.steps
  summary = _read_json(os.path.join(run.workdir, 'summary.json'))
  summary = summary if isinstance(summary, dict) else None
  end = summary.get('end_step') if summary else None
  latest = max([s for s in (end, _latest_checkpoint(run.workdir)) if isinstance(s, int)] or [-1])
  if end == steps:
    final_logged = not run.config.eval_every or any(s == steps for s, _ in read_evals(run.workdir))
    if not summary.get('stopped_by_signal') or final_logged:
      return RunState('done', end, summary)
  if latest >= 0:
    return RunState('unfinished', latest, summary)
  return RunState('new', None, summary)


def _flatten(d: dict[str, Any], prefix: str = '') -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def conflict(run: Run) -> str | None:
  """Why `run`'s folder cannot be resumed or reused as this run, or None.

  Its config.json (if any) must equal the run's config in every field both have, but
  `NEUTRAL_FIELDS`, and it must not have trained past train.steps.
  """
  recorded = _read_json(os.path.join(run.workdir, 'config.json'))
  if isinstance(recorded, dict):
    old = _flatten(recorded)
    new = _flatten(json.loads(run.config.to_json()))
    changed = [
      f'{k}: {old[k]!r} -> {new[k]!r}'
      for k in sorted(set(old) & set(new))
      if k not in NEUTRAL_FIELDS and old[k] != new[k]
    ]
    if changed:
      return f'it was trained with another config ({"; ".join(changed)})'
  state = run_state(run)
  if state.step is not None and state.step > run.config.train.steps:
    return f'it was trained to step {state.step}, past train.steps={run.config.train.steps}'
  return None
