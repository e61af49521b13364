"""Helpers shared by the benchmark scripts (not part of the gan_jax package).

`JsonLinesWorker` is the parent's side of the PyTorch worker protocol that
`throughput.py` (worker: `torch_reference.py --worker`) and `time_to_quality.py` (worker: its
own `--torch-worker`) both speak: one JSON command per line on the worker's stdin, one JSON
reply per line on its stdout, `{"error": "..."}` for a failed command and `{"cmd": "exit"}` to
end it. The benchmark scripts are plain files, not a package: they put this folder on
`sys.path` and `import bench_util`.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any


def default_threads() -> int:
  """The cores this process may run on (the affinity mask), else os.cpu_count()."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # Not on Linux.
    return os.cpu_count() or 1


def batch_sizes(text: str, error) -> list[int]:
  """'64,256' -> [64, 256]; calls `error(message)` (e.g. `parser.error`) unless every item is
  a positive integer and there is at least one."""
  try:
    sizes = [int(b) for b in text.split(',') if b]
  except ValueError:
    sizes = []
  if not sizes or min(sizes) < 1:
    error(f'--batch-sizes {text!r}: give comma-separated positive integers, e.g. 64,256.')
  return sizes


def parse_set(items: list[str], error) -> dict[str, Any]:
  """`--set` items 'block.field=value' -> {'block.field': value}; a value is a Python
  literal (`ast.literal_eval`) or else the string itself. Calls `error(message)` on an item
  without '='."""
  out: dict[str, Any] = {}
  for item in items:
    key, sep, text = item.partition('=')
    if not sep or not key:
      error(
        f'--set {item!r}: use FIELD=VALUE, e.g. model.tconv_backward=adjoint or train.penalty_interval=16.'
      )
    try:
      out[key] = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      out[key] = text
  return out


def loadavg() -> float | None:
  """The 1-minute load average, or None where the OS has none."""
  try:
    return os.getloadavg()[0]
  except OSError:
    return None


def package_version(package: str) -> str | None:
  """An installed package's version from its metadata, without importing it; None if absent."""
  try:
    return version(package)
  except PackageNotFoundError:
    return None


class JsonLinesWorker:
  """A Python script run as a subprocess that answers one JSON line per JSON command line.

  Args:
    script: the worker script, run with this interpreter.
    *flags: its command-line flags (e.g. '--worker').

  `call(cmd=..., **fields)` sends one command and returns the reply dict. It raises
  RuntimeError (and ends the worker) if the worker replied with an error or exited; the
  worker's own traceback is then on its stderr, which is this process's stderr.
  """

  def __init__(self, script: str | Path, *flags: str) -> None:
    self.proc = subprocess.Popen(
      [sys.executable, str(script), *flags],
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      text=True,
    )

  def call(self, **msg: Any) -> dict[str, Any]:
    self.proc.stdin.write(json.dumps(msg) + '\n')
    self.proc.stdin.flush()
    line = self.proc.stdout.readline()
    if not line:
      self.proc.wait()
      raise RuntimeError(
        f'the PyTorch worker exited (status {self.proc.returncode}) during {msg["cmd"]!r}; '
        'see its stderr above.'
      )
    reply = json.loads(line)
    if 'error' in reply:
      self.close()
      raise RuntimeError(f'the PyTorch worker failed in {msg["cmd"]!r}: {reply["error"]}')
    return reply

  def close(self) -> dict[str, Any]:
    """Sends "exit" if the worker still runs and waits for it; returns its last reply."""
    reply: dict[str, Any] = {}
    if self.proc.returncode is None:
      try:
        self.proc.stdin.write(json.dumps({'cmd': 'exit'}) + '\n')
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        reply = json.loads(line) if line else {}
      except (BrokenPipeError, json.JSONDecodeError):
        pass
      self.proc.stdin.close()
      self.proc.stdout.close()
      self.proc.wait()
    return reply


def run_json_child(cmd: list[str], what: str, env: dict[str, str] | None = None) -> dict[str, Any]:
  """Runs one of a benchmark's own child processes; returns the JSON of its last stdout line
  that starts with '{'.

  Args:
    cmd: the command line (e.g. [sys.executable, __file__, '--child', name, ...]).
    what: names the child in the error.
    env: its environment (default: this process's).

  Raises:
    RuntimeError: if it exits non-zero or prints no JSON line (with the end of its stderr).
  """
  proc = subprocess.run(
    cmd, env=dict(os.environ) if env is None else env, capture_output=True, text=True, check=False
  )
  lines = [line for line in proc.stdout.splitlines() if line.startswith('{')]
  if proc.returncode or not lines:
    raise RuntimeError(f'{what} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}')
  return json.loads(lines[-1])


def write_report(out: Path, report: dict[str, Any]) -> None:
  """Writes a benchmark's report as indented JSON (creating the folder) and says where."""
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(report, indent=1))
  print(f'\nwrote {out}')
