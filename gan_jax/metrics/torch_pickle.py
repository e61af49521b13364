"""Reading PyTorch checkpoints (`torch.save` state dicts) without torch, and safely.

Both of torch's formats are read with zipfile + pickle only: the zip archive of `torch.save`
since torch 1.6 and the older "legacy" stream (magic number, protocol, system info, the pickle,
then the raw storages). The unpickler resolves only `collections.OrderedDict`,
`torch._utils._rebuild_tensor_v2` / `_rebuild_tensor` / `_rebuild_parameter` and torch's typed
storage classes (`torch.FloatStorage`, `torch.LongStorage`, ...), each to a stand-in defined here
that builds numpy arrays; any other global is refused with `UnsafeCheckpointError`, so no code
from the file ever runs. Strided views, shared storages, 0-d tensors, float16/bfloat16/float64/
int64/bool tensors and a module's state dict with `_metadata` are read (tests/test_inception.py
checks this against `torch.save` output when torch is installed).
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import jax.numpy as jnp
import numpy as np


class CheckpointError(ValueError):
  """A weights file is unreadable or malformed, or (raised by `gan_jax.metrics.inception_state`
  and `inception_weights` as `CheckpointError`) has the wrong keys, shapes or hash."""


class UnsafeCheckpointError(CheckpointError, pickle.UnpicklingError):
  """A checkpoint's pickle names a global that is not a tensor, storage or OrderedDict."""


_STORAGE_DTYPES = {
  'DoubleStorage': np.dtype(np.float64),
  'FloatStorage': np.dtype(np.float32),
  'HalfStorage': np.dtype(np.float16),
  'BFloat16Storage': np.dtype(jnp.bfloat16),
  'LongStorage': np.dtype(np.int64),
  'IntStorage': np.dtype(np.int32),
  'ShortStorage': np.dtype(np.int16),
  'CharStorage': np.dtype(np.int8),
  'ByteStorage': np.dtype(np.uint8),
  'BoolStorage': np.dtype(np.bool_),
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class _StorageType:
  """Stands in for `torch.FloatStorage` etc. in a pickle: only carries the dtype."""

  def __init__(self, name: str):
    self.name = name
    self.dtype = _STORAGE_DTYPES[name]


class _Storage:
  """A torch storage: numel elements of dtype; `data` (1-D numpy) is filled in after unpickling."""

  def __init__(self, key: str, dtype: np.dtype, numel: int):
    self.key, self.dtype, self.numel = key, dtype, numel
    self.data: np.ndarray | None = None


class _Tensor:
  """A strided view of a `_Storage`, turned into a numpy array once the storage is read."""

  def __init__(self, storage: Any, offset: int, size: tuple[int, ...], stride: tuple[int, ...]):
    if not isinstance(storage, _Storage):
      raise CheckpointError(f'Malformed checkpoint: a tensor has storage {storage!r}.')
    self.storage, self.offset, self.size, self.stride = storage, int(offset), size, stride

  def to_numpy(self) -> np.ndarray:
    data = self.storage.data
    size, stride = tuple(int(s) for s in self.size), tuple(int(s) for s in self.stride)
    if (
      data is None or len(size) != len(stride) or min((*size, *stride, self.offset), default=0) < 0
    ):
      raise CheckpointError(f'Malformed checkpoint tensor (storage {self.storage.key}).')
    if 0 not in size:
      last = self.offset + sum((n - 1) * s for n, s in zip(size, stride))
      if last >= data.size:
        raise CheckpointError(
          f'Malformed checkpoint: a tensor of size {size} reads past the end of storage '
          f'{self.storage.key} ({data.size} elements); the file is probably truncated.'
        )
    view = np.lib.stride_tricks.as_strided(
      data[self.offset :] if 0 not in size else data[:0],
      shape=size,
      strides=tuple(s * data.itemsize for s in stride),
      writeable=False,
    )
    return np.array(view)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *unused_args):
  """Stands in for `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`."""
  del unused_args  # requires_grad, backward_hooks, metadata
  return _Tensor(storage, storage_offset, tuple(size), tuple(stride))


def _rebuild_tensor(storage, storage_offset, size, stride):
  """Stands in for torch's older `torch._utils._rebuild_tensor`."""
  return _Tensor(storage, storage_offset, tuple(size), tuple(stride))


def _rebuild_parameter(data, *unused_args):
  """Stands in for `torch._utils._rebuild_parameter(data, requires_grad, backward_hooks)`."""
  del unused_args
  return data


_ALLOWED_GLOBALS = {
  ('collections', 'OrderedDict'): collections.OrderedDict,
  ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor_v2,
  ('torch._utils', '_rebuild_tensor'): _rebuild_tensor,
  ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
}


class _RestrictedUnpickler(pickle.Unpickler):
  """Unpickles a torch state dict into `_Tensor`s, refusing every other global.

  Args:
    file: binary stream positioned at the pickle.
    source: the file's name, for messages.
  """

  def __init__(self, file: BinaryIO, source: str):
    super().__init__(file)
    self.source = source
    self.storages: dict[str, _Storage] = {}

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) in _ALLOWED_GLOBALS:
      return _ALLOWED_GLOBALS[(module, name)]
    if module == 'torch' and name in _STORAGE_DTYPES:
      return _StorageType(name)
    raise UnsafeCheckpointError(
      f'{self.source}: refusing to unpickle the global {module}.{name}: a weights file may only '
      'hold tensors (torch._utils._rebuild_tensor_v2, torch.*Storage) in dicts, and running '
      'anything else from a pickle could execute arbitrary code. Is this really a weights file?'
    )

  def persistent_load(self, pid: Any) -> _Storage:
    # Zip format: ('storage', storage_type, key, location, numel); legacy format adds
    # view_metadata (None unless the tensor views part of a larger storage, pre torch 0.4).
    if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == 'storage'):
      raise CheckpointError(f'{self.source}: unsupported persistent id {pid!r}.')
    storage_type, key, numel = pid[1], str(pid[2]), pid[4]
    if len(pid) == 6 and pid[5] is not None:
      raise CheckpointError(f'{self.source}: storage views are not supported.')
    if not isinstance(storage_type, _StorageType) or not isinstance(numel, int) or numel < 0:
      raise CheckpointError(f'{self.source}: malformed storage record {pid!r}.')
    if key not in self.storages:
      self.storages[key] = _Storage(key, storage_type.dtype, numel)
    return self.storages[key]


def _materialize(obj: Any) -> Any:
  if isinstance(obj, _Tensor):
    return obj.to_numpy()
  if isinstance(obj, dict):
    return type(obj)((k, _materialize(v)) for k, v in obj.items())
  if isinstance(obj, (list, tuple)):
    return type(obj)(_materialize(v) for v in obj)
  return obj


def _storage_array(raw: bytes, storage: _Storage, byteorder: str, source: str) -> np.ndarray:
  dtype = storage.dtype.newbyteorder('<' if byteorder == 'little' else '>')
  nbytes = storage.numel * dtype.itemsize
  if len(raw) < nbytes:
    raise CheckpointError(
      f'{source}: storage {storage.key} has {len(raw)} bytes, expected {nbytes}; '
      'the file is probably truncated.'
    )
  return np.frombuffer(raw[:nbytes], dtype=dtype).astype(storage.dtype, copy=False)


def _read_zip_checkpoint(path: Path) -> Any:
  source = str(path)
  with zipfile.ZipFile(path) as zf:
    names = zf.namelist()
    pickles = [n for n in names if n.endswith('/data.pkl') and n.count('/') == 1]
    if len(pickles) != 1:
      raise CheckpointError(
        f'{source} is a zip file but not a torch checkpoint (no <name>/data.pkl).'
      )
    prefix = pickles[0][: -len('data.pkl')]
    byteorder = 'little'
    if prefix + 'byteorder' in names:
      byteorder = zf.read(prefix + 'byteorder').decode().strip()
    unpickler = _RestrictedUnpickler(io.BytesIO(zf.read(pickles[0])), source)
    obj = unpickler.load()
    for key, storage in unpickler.storages.items():
      record = f'{prefix}data/{key}'
      if record not in names:
        raise CheckpointError(f'{source}: storage record {record} is missing.')
      storage.data = _storage_array(zf.read(record), storage, byteorder, source)
  return _materialize(obj)


def _read_legacy_checkpoint(path: Path) -> Any:
  source = str(path)
  with open(path, 'rb') as f:
    try:
      magic = _RestrictedUnpickler(f, source).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
      if isinstance(e, UnsafeCheckpointError):
        raise
      raise CheckpointError(
        f'{source} is neither a torch checkpoint (zip or legacy format) nor an .npz: {e}'
      ) from e
    if magic != _LEGACY_MAGIC:
      raise CheckpointError(
        f'{source} is neither a torch checkpoint (zip or legacy format) nor an .npz '
        '(wrong magic number).'
      )
    protocol = _RestrictedUnpickler(f, source).load()
    if protocol != _LEGACY_PROTOCOL:
      raise CheckpointError(f'{source}: unsupported legacy protocol {protocol!r}.')
    sys_info = _RestrictedUnpickler(f, source).load()
    little = sys_info.get('little_endian', True) if isinstance(sys_info, dict) else True
    unpickler = _RestrictedUnpickler(f, source)
    obj = unpickler.load()
    keys = _RestrictedUnpickler(f, source).load()
    for key in keys:
      storage = unpickler.storages.get(str(key))
      if storage is None:
        raise CheckpointError(f'{source}: unknown storage key {key!r}.')
      header = f.read(8)
      if len(header) != 8:
        raise CheckpointError(f'{source} is truncated (storage {key}).')
      (numel,) = struct.unpack('<q' if little else '>q', header)
      raw = f.read(numel * storage.dtype.itemsize)
      storage.numel = max(storage.numel, numel)
      storage.data = _storage_array(raw, storage, 'little' if little else 'big', source)
  return _materialize(obj)


def read_torch_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
  """Reads a state dict saved by `torch.save` (zip or legacy format) without torch.

  Only tensors in (ordered) dicts are understood; the pickle may name no other global.

  Args:
    path: the checkpoint file.

  Returns:
    {key: numpy array} in the file's order, with the tensors' dtypes (float32 for float tensors
    saved as such) and torch layouts, contiguous.

  Raises:
    UnsafeCheckpointError: if the pickle names any global but OrderedDict, the tensor rebuild
      functions and the typed storages (nothing from the file is executed).
    CheckpointError: if the file is not a torch checkpoint, is truncated, or does not hold
      a dict of tensors.
  """
  path = Path(path)
  with open(path, 'rb') as f:
    is_zip = f.read(4) == b'PK\x03\x04'
  obj = _read_zip_checkpoint(path) if is_zip else _read_legacy_checkpoint(path)
  if isinstance(obj, dict) and 'state_dict' in obj and isinstance(obj['state_dict'], dict):
    obj = obj['state_dict']
  if not isinstance(obj, dict) or not all(isinstance(v, np.ndarray) for v in obj.values()):
    raise CheckpointError(f'{path} does not hold a state dict (a dict of tensors).')
  return {str(k): v for k, v in obj.items()}
