"""The errors gan_jax raises for problems a user can fix; each message says what and how.

Kept in a module with no heavy imports, so the command line can catch them cheaply.
`gan_jax.data.pipeline.DatasetNotFoundError` (a FileNotFoundError) is the fourth such error.
"""


class ConfigError(ValueError):
  """A config field has an invalid value; the message names the field and a valid choice."""


class NonFiniteError(FloatingPointError):
  """A loss or gradient norm became NaN or Inf; the message names the step and quantity."""


class UnreadableCheckpointError(RuntimeError):
  """A checkpoint's files cannot be read, or what they hold fails its SHA-256 digest."""


class CheckpointWriteError(OSError):
  """A checkpoint could not be written (disk full, quota, I/O error); earlier ones are intact."""


class WorkdirLockedError(RuntimeError):
  """Another process is writing the run folder (`gan_jax.training.run_lock`); names it (PID, host)."""
