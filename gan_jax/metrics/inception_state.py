"""The pytorch-fid Inception state dict and `FIDInceptionV3`: key names, layouts, checks.

Conv weights go from OIHW to HWIO and the fc weight from [out, in] to [in, out];
`num_batches_tracked` buffers are ignored; every other key must be present with the expected
shape, or `InceptionWeightsError` lists everything missing, unexpected and mis-shaped at once.
The keys and shapes were transcribed from torchvision's `Inception3` and pytorch-fid's FID
blocks (the state dict pytorch-fid loads strictly: 472 keys, 94 BasicConv2d x 5 + fc, plus 94
ignored `num_batches_tracked`; 23,850,960 parameters and 34,432 running-statistic values).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from gan_jax.metrics.inception_net import FIDInceptionV3
from gan_jax.metrics.inception_weights import WEIGHTS_FILENAME, WEIGHTS_URL, InceptionWeightsError
from gan_jax.metrics.torch_pickle import read_torch_state_dict

# NNX variable name -> torch parameter/buffer name, by the module that holds it.
_BN_NAMES = {'scale': 'weight', 'bias': 'bias', 'mean': 'running_mean', 'var': 'running_var'}


def torch_key_for_path(path: tuple[Any, ...]) -> str:
  """The torch state-dict key of an NNX variable path of `FIDInceptionV3`.

  E.g. ('Mixed_5b', 'branch1x1', 'conv', 'kernel') -> 'Mixed_5b.branch1x1.conv.weight',
  ('Conv2d_1a_3x3', 'bn', 'mean') -> 'Conv2d_1a_3x3.bn.running_mean', ('fc', 'kernel') ->
  'fc.weight'.

  Raises:
    ValueError: for a path that is not a variable of the network.
  """
  *modules, name = (str(p) for p in path)
  if modules and modules[-1] == 'bn' and name in _BN_NAMES:
    name = _BN_NAMES[name]
  elif modules and modules[-1] in ('conv', 'fc') and name in ('kernel', 'bias'):
    name = 'weight' if name == 'kernel' else 'bias'
  else:
    raise ValueError(f'Not a FIDInceptionV3 variable path: {path!r}.')
  return '.'.join([*modules, name])


def _to_nnx_layout(key: str, array: np.ndarray) -> np.ndarray:
  """Torch layout -> NNX layout: conv OIHW -> HWIO, Linear [out, in] -> [in, out]."""
  if key.endswith('.conv.weight'):
    return np.transpose(array, (2, 3, 1, 0))
  if key == 'fc.weight':
    return np.transpose(array)
  return array


def _to_torch_shape(key: str, shape: tuple[int, ...]) -> tuple[int, ...]:
  """NNX shape -> torch shape (inverse of `_to_nnx_layout`)."""
  if key.endswith('.conv.weight'):
    kh, kw, i, o = shape
    return (o, i, kh, kw)
  if key == 'fc.weight':
    return tuple(reversed(shape))
  return tuple(shape)


@functools.cache
def _abstract_model() -> tuple[nnx.GraphDef, nnx.State]:
  model = nnx.eval_shape(lambda: FIDInceptionV3(rngs=nnx.Rngs(0)))
  return nnx.split(model)


def inception_torch_shapes() -> dict[str, tuple[int, ...]]:
  """The keys and torch-layout shapes a pytorch-fid Inception state dict must have.

  Returns:
    {torch key: shape}, 472 entries sorted by key: for each of the 94 BasicConv2d
    `<name>.conv.weight` [O, I, kh, kw] and `<name>.bn.{weight,bias,running_mean,running_var}`
    [O], then `fc.weight` [1008, 2048] and `fc.bias` [1008]. (The file may also hold the 94
    scalar `<name>.bn.num_batches_tracked` buffers, which are ignored.)
  """
  _, state = _abstract_model()
  shapes = {}
  for path, var in nnx.to_flat_state(state):
    key = torch_key_for_path(path)
    shapes[key] = _to_torch_shape(key, tuple(var.get_value().shape))
  return shapes


def _check_state_dict(state_dict: Mapping[str, Any], source: str) -> dict[str, np.ndarray]:
  """Checks keys, shapes and dtypes; returns float32 arrays in torch layout."""
  expected = inception_torch_shapes()
  problems = []
  missing = [k for k in expected if k not in state_dict]
  unexpected = [
    k for k in state_dict if k not in expected and not str(k).endswith('.num_batches_tracked')
  ]
  out = {}
  for key, shape in expected.items():
    if key not in state_dict:
      continue
    array = np.asarray(state_dict[key])
    if tuple(array.shape) != shape:
      problems.append(f'{key}: shape {tuple(array.shape)}, expected {shape}')
    elif not (np.issubdtype(array.dtype, np.floating) or array.dtype.name == 'bfloat16'):
      problems.append(f'{key}: dtype {array.dtype}, expected a float dtype')
    else:
      out[key] = np.ascontiguousarray(array, dtype=np.float32)
  if missing or unexpected or problems:
    lines = [
      f'{source} is not the pytorch-fid FID Inception state dict '
      f'({WEIGHTS_FILENAME}, keys as in torchvision Inception3 with pytorch-fid\'s FID blocks):'
    ]
    if missing:
      lines.append(f'  {len(missing)} missing key(s): {", ".join(missing[:20])}')
      if len(missing) > 20:
        lines.append(f'    ... and {len(missing) - 20} more')
    if unexpected:
      lines.append(f'  {len(unexpected)} unexpected key(s): {", ".join(map(str, unexpected[:20]))}')
      if len(unexpected) > 20:
        lines.append(f'    ... and {len(unexpected) - 20} more')
    for p in problems[:20]:
      lines.append(f'  {p}')
    if len(problems) > 20:
      lines.append(f'  ... and {len(problems) - 20} more wrong shapes/dtypes')
    lines.append(f'Get the right file from {WEIGHTS_URL}.')
    raise InceptionWeightsError('\n'.join(lines))
  return out


def read_inception_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
  """Reads and checks the pytorch-fid Inception weights (torch file or `.npz`).

  Args:
    path: a torch checkpoint (`.pth`, see `read_torch_state_dict`) or an `.npz` with the same
      keys and torch layouts.

  Returns:
    {torch key: float32 array in torch layout} with exactly the keys of
    `inception_torch_shapes()` (`num_batches_tracked` dropped).

  Raises:
    InceptionWeightsError: unreadable file, or keys missing / unexpected / mis-shaped (all
      listed in one message).
    UnsafeCheckpointError: a pickle with a disallowed global.
  """
  path = Path(path)
  if path.suffix == '.npz':
    with np.load(path, allow_pickle=False) as npz:
      state_dict = {k: npz[k] for k in npz.files}
  else:
    state_dict = read_torch_state_dict(path)
  return _check_state_dict(state_dict, str(path))


def build_inception_model(state_dict: Mapping[str, np.ndarray]) -> FIDInceptionV3:
  """An `FIDInceptionV3` holding the given torch-layout weights (checked, converted to NHWC).

  Args:
    state_dict: {torch key: array}, e.g. from `read_inception_state_dict`.

  Returns:
    The model; conv kernels HWIO, fc kernel [2048, 1008], BN running statistics as given.

  Raises:
    InceptionWeightsError: keys missing / unexpected / mis-shaped.
  """
  arrays = _check_state_dict(state_dict, 'the state dict')
  graphdef, abstract = _abstract_model()
  flat = []
  for path, var in nnx.to_flat_state(abstract):
    key = torch_key_for_path(path)
    flat.append((path, var.replace(jnp.asarray(_to_nnx_layout(key, arrays[key])))))
  return nnx.merge(graphdef, nnx.from_flat_state(flat))
