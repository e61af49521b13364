"""Several processes (multi-host): starting `jax.distributed`, and agreeing across processes.

One run can span several processes, each driving its own devices: the hosts of a TPU pod
slice, the nodes of a GPU cluster, or a few processes on one machine (CPU devices talking
over gloo, as the tests do). Every process runs the same command. Once `initialize` has
connected them, `jax.devices()` lists every process's devices, the ('data',) mesh of
`gan_jax.core.sharding.make_mesh` spans them all, and each process feeds its own rows of every
global batch (`gan_jax.data.pipeline.process_rows`); the global batches, and so the training, do not
depend on the number of processes. Process 0 writes the run's files (config.json, the logs,
sample grids, summary); Orbax writes the checkpoints, which restore on any process count.

`initialize` must run before anything starts a JAX backend (`jax.devices()`, creating an
array, a jit call): `gan-jax train` calls it first, from its flags

    --coordinator HOST:PORT --num-processes N --process-id I     (all three), or
    --distributed                                                 (detected: TPU VM, SLURM,
                                                                   Open MPI, Kubernetes)

No global state is kept here beyond what `jax.distributed` itself keeps.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import sys
import threading

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

log = logging.getLogger(__name__)

# Seconds every process waits for all of them to connect (JAX's own default).
DEFAULT_TIMEOUT_S = 300
# JAX's own deadline comes this much later than ours, so that ours, which prints one clear
# line, fires first: JAX's aborts the process from C++ with a stack trace.
_JAX_TIMEOUT_MARGIN_S = 30


class LaunchError(ValueError):
  """Bad or incomplete multi-process settings; the one-line message says what to give."""


def _bind_error(bind_address: str) -> OSError | None:
  """The error binding 'HOST:PORT' (host '[::]', an IP or a name) would raise, or None.

  Binds and at once closes a listening socket with the options gRPC's server uses
  (SO_REUSEADDR, and SO_REUSEPORT where it exists), so that a port gRPC could share is not
  reported. Only 'address in use' and 'permission denied' are returned; anything else (no
  IPv6 on this host, an unresolvable name) is left for JAX itself to report.
  """
  host, _, port = bind_address.rpartition(':')
  host = host.strip('[]') or '::'
  try:
    infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
  except (OSError, ValueError):
    return None
  for family, kind, proto, _, address in infos[:1]:
    try:
      with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, 'SO_REUSEPORT'):
          s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:  # '[::]' takes the IPv4 port too, as gRPC's does
          s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(address)
        s.listen()
    except OSError as err:
      if err.errno in (errno.EADDRINUSE, errno.EACCES):
        return err
  return None


def check_launch(
  coordinator: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  *,
  auto: bool = False,
  timeout_s: float = DEFAULT_TIMEOUT_S,
) -> bool:
  """Checks the multi-process settings without touching JAX; returns whether they ask for
  several processes (False: none given, a plain single-process run).

  Args:
    coordinator: 'HOST:PORT' of process 0's coordinator service (an address every process
      can reach; process 0 listens on PORT on all its interfaces).
    num_processes: N, the number of processes, >= 1.
    process_id: this process's index I in [0, N).
    auto: detect what is not given from the cluster (`jax.distributed.initialize()`'s
      auto-detection: Cloud TPU VMs, SLURM, Open MPI, Kubernetes; under SLURM and Open
      MPI on GPUs it also gives each process only the GPU of its local rank, so start one
      task per GPU). Without it, all three of coordinator, num_processes and process_id
      are needed, nothing is detected, and each process drives all devices it sees
      (`$JAX_LOCAL_DEVICE_IDS`, e.g. '0,1', narrows them).
    timeout_s: seconds to wait for all processes to connect, > 0.

  Raises:
    LaunchError: only some of the three given without `auto`, a malformed address, N < 1,
      I outside [0, N), or timeout_s <= 0; the message names the flag and a valid value.
  """
  given = {
    '--coordinator': coordinator,
    '--num-processes': num_processes,
    '--process-id': process_id,
  }
  if not auto and any(v is not None for v in given.values()):
    missing = [k for k, v in given.items() if v is None]
    if missing:
      raise LaunchError(
        f'{", ".join(missing)} missing: a multi-process run needs all of --coordinator '
        'HOST:PORT, --num-processes N and --process-id I (or --distributed, to detect them '
        'on a TPU pod, SLURM or Open MPI).'
      )
  if coordinator is not None:
    host, sep, port = coordinator.rpartition(':')
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
      raise LaunchError(
        f'--coordinator={coordinator!r} must be HOST:PORT, the address of process 0 and a '
        'free port there, e.g. --coordinator=10.0.0.1:12345 (localhost:12345 on one machine).'
      )
  if num_processes is not None and num_processes < 1:
    raise LaunchError(f'--num-processes={num_processes} must be >= 1.')
  if process_id is not None:
    if process_id < 0:
      raise LaunchError(f'--process-id={process_id} must be >= 0.')
    if num_processes is not None and process_id >= num_processes:
      raise LaunchError(
        f'--process-id={process_id} must be below --num-processes={num_processes} '
        f'(processes are numbered 0 to {num_processes - 1}).'
      )
  if not timeout_s > 0:
    raise LaunchError(f'--distributed-timeout={timeout_s} must be a positive number of seconds.')
  return auto or any(v is not None for v in given.values())


def initialize(
  coordinator: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  *,
  auto: bool = False,
  timeout_s: float = DEFAULT_TIMEOUT_S,
) -> bool:
  """Connects this process to the others of a multi-process run (`jax.distributed`).

  Call it first, before any JAX computation or `jax.devices()`, in every process, with the
  same coordinator and process count and each process's own id. It returns once all
  `num_processes` processes are connected. On CPU the processes exchange data over gloo
  (`jax_cpu_collectives_implementation`, the default in JAX 0.10); on GPU over NCCL; on TPU
  over the pod's interconnect.

  If the processes are not all connected within `timeout_s` seconds (a process did not
  start, a wrong address, a firewall), this process prints one line, `gan-jax: error: ...`,
  to stderr and exits with status 1 at once. It must: JAX's own deadline aborts the process
  from C++ with a stack trace, which no Python code can catch.

  Args:
    coordinator, num_processes, process_id, auto, timeout_s: as in `check_launch`.

  Returns:
    True if this process is now one of several (or one of one, if asked for explicitly);
    False if no setting asked for several processes (nothing was done).

  Raises:
    LaunchError: bad settings (see `check_launch`), `auto` found no cluster to join, or the
      coordinator service could not start (process 0: e.g. its port is in use).
    RuntimeError: a JAX backend was already started in this process.
  """
  if not check_launch(coordinator, num_processes, process_id, auto=auto, timeout_s=timeout_s):
    return False
  if jax.distributed.is_initialized():
    return True
  where = f'the coordinator at {coordinator}' if coordinator else 'the detected coordinator'
  who = 'this process' if process_id is None else f'process {process_id}'
  if num_processes is not None:
    who += f' of {num_processes}'
  if process_id == 0 and coordinator:
    # jaxlib 0.10's coordinator service crashes the process (SIGSEGV, no Python error) when
    # it cannot listen on its port: find out first. (Another program can still take the port
    # in between; that race is JAX's to fix.)
    bind = os.environ.get('JAX_COORDINATOR_BIND_ADDRESS') or f'[::]:{coordinator.rsplit(":", 1)[1]}'
    err = _bind_error(bind)
    if err is not None:
      raise LaunchError(
        f'{who} could not start the multi-process run with {where}: process 0 cannot listen '
        f'on {bind} ({err.strerror}); choose another port in --coordinator (one that no other '
        'program uses), on every process.'
      )
  done = threading.Event()

  def give_up() -> None:
    if done.wait(timeout_s):
      return
    sys.stderr.write(
      f'gan-jax: error: {who} could not connect to {where} and the other processes within '
      f'{timeout_s:g} s: start every process with the same --coordinator and '
      '--num-processes and its own --process-id, check that process 0 runs and that its '
      'address and port are reachable from every host, or wait longer with '
      '--distributed-timeout.\n'
    )
    sys.stderr.flush()
    os._exit(1)  # the main thread is blocked inside JAX's C++ connect: nothing else stops it

  watchdog = threading.Thread(target=give_up, name='gan_jax-distributed-timeout', daemon=True)
  watchdog.start()
  try:
    jax.distributed.initialize(
      coordinator_address=coordinator,
      num_processes=num_processes,
      process_id=process_id,
      # Explicit settings are all there is: no detection (which under SLURM would also
      # narrow each process to one GPU).
      cluster_detection_method=None if auto else 'deactivate',
      initialization_timeout=int(timeout_s) + _JAX_TIMEOUT_MARGIN_S,
    )
  except ValueError as err:  # auto-detection found nothing to fill in
    raise LaunchError(
      f'--distributed found no cluster to join ({err}): run under a TPU pod slice, SLURM '
      '(srun) or Open MPI (mpirun), or give --coordinator HOST:PORT --num-processes N '
      '--process-id I.'
    ) from None
  except RuntimeError as err:
    if 'must be called before' in str(err):
      raise RuntimeError(
        'gan_jax.training.distributed.initialize must run before anything starts a JAX backend '
        '(jax.devices(), an array, a jit call) in this process.'
      ) from err
    reason = ' '.join(str(err).split())[:200]
    raise LaunchError(
      f'{who} could not start the multi-process run with {where} ({reason}); if process 0 '
      'cannot listen on that port (in use?), choose another port in --coordinator.'
    ) from None
  finally:
    done.set()
  log.info(
    'Process %d of %d connected: %d local and %d global devices.',
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
  )
  return True


def is_writer() -> bool:
  """Whether this process writes the run's files: process 0 (the only one, usually)."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits until every process reached `barrier(name)`; nothing with one process.

  Every process must call the same barriers in the same order (the name guards against a
  mismatch). Used where one process changes files that the others read next.
  """
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

    multihost_utils.sync_global_devices(f'gan_jax:{name}')


class StopVote:
  """Agrees across processes on the step after which to stop (SIGTERM/SIGINT on any host).

  A signal reaches the processes of a run at different steps, or only one of them, but they
  must all run the same steps and save the same checkpoint: a process that stopped alone
  would leave the others waiting forever in the step's collectives. Every process calls
  `update` once per step; its flag goes into an all-reduce (max) that is dispatched with
  the step and read one step later, when that step's results are awaited anyway, so the
  vote adds no wait of its own. All processes thus stop together, one step after the
  signal. With a single process `update` returns its flag at once (no device work).

  Args:
    mesh: the run's device mesh (axis 'data' over every process's devices).
  """

  def __init__(self, mesh: Mesh):
    self._several = jax.process_count() > 1
    self._pending: jax.Array | None = None
    if self._several:
      self._sharding = NamedSharding(mesh, P('data'))
      self._local = len(mesh.local_devices)
      self._max = jax.jit(lambda votes: votes.max(), out_shardings=NamedSharding(mesh, P()))

  def update(self, stop_here: bool) -> bool:
    """Casts this process's vote; returns whether all processes stop after this step.

    Args:
      stop_here: whether this process received a stop signal.

    Returns:
      One process: `stop_here`. Several: whether any process voted True at the previous
      call (the same answer in every process).
    """
    if not self._several:
      return stop_here
    previous = self._pending
    votes = np.full((self._local,), int(stop_here), np.int32)
    self._pending = self._max(jax.make_array_from_process_local_data(self._sharding, votes))
    return previous is not None and bool(int(jax.device_get(previous)))
