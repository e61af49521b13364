"""The pytorch-fid FID InceptionV3 in NNX and its torch-free weight loader.

Everything here runs without torch: weight files in torch's two formats (the zip archive of
`torch.save` since torch 1.6, and the older legacy stream) are written by a stdlib-only writer
that emits the same pickle opcodes and persistent ids as `torch.save`. The tests marked
`needs torch` additionally check that writer and reader against real torch, and the whole
network against a plain-torch transcription of pytorch-fid's `FIDInceptionV3`; they are
skipped when torch is not installed.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import struct
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gan_jax.metrics import inception as inc
from gan_jax.metrics import inception_weights

# ----------------------------------------------------------------------------------------------
# A stdlib-only writer of torch checkpoints (what torch.save emits for a dict of tensors).
# ----------------------------------------------------------------------------------------------

_STORAGE_NAMES = {
  np.dtype(np.float32): 'FloatStorage',
  np.dtype(np.float64): 'DoubleStorage',
  np.dtype(np.int64): 'LongStorage',
}


def _op_str(s: str) -> bytes:
  b = s.encode()
  return b'X' + struct.pack('<I', len(b)) + b  # BINUNICODE


def _op_int(n: int) -> bytes:
  return b'J' + struct.pack('<i', n)  # BININT


def _op_global(module: str, name: str) -> bytes:
  return b'c' + f'{module}\n{name}\n'.encode()  # GLOBAL


def _op_int_tuple(values) -> bytes:
  return b'(' + b''.join(_op_int(int(v)) for v in values) + b't'  # MARK ... TUPLE


_ORDERED_DICT = _op_global('collections', 'OrderedDict') + b')R'  # OrderedDict()


def _tensor_pickle(
  storage_key: str,
  dtype: np.dtype,
  numel: int,
  shape,
  stride,
  offset: int = 0,
  *,
  legacy: bool,
) -> bytes:
  """`torch._utils._rebuild_tensor_v2(storage, offset, shape, stride, False, OrderedDict())`."""
  pid = (
    b'('
    + _op_str('storage')
    + _op_global('torch', _STORAGE_NAMES[np.dtype(dtype)])
    + _op_str(storage_key)
    + _op_str('cpu')
    + _op_int(numel)
    + (b'N' if legacy else b'')  # legacy: view_metadata = None
    + b't'
  )
  return (
    _op_global('torch._utils', '_rebuild_tensor_v2')
    + b'('
    + pid
    + b'Q'  # BINPERSID
    + _op_int(offset)
    + _op_int_tuple(shape)
    + _op_int_tuple(stride)
    + b'\x89'  # NEWFALSE: requires_grad
    + _ORDERED_DICT  # backward_hooks
    + b'tR'
  )


def _contiguous_strides(shape) -> tuple[int, ...]:
  strides, acc = [], 1
  for n in reversed(shape):
    strides.append(acc)
    acc *= n
  return tuple(reversed(strides))


def _state_dict_pickle(
  state_dict: dict[str, np.ndarray], *, legacy: bool
) -> tuple[bytes, list[tuple[str, bytes]]]:
  """The main pickle and the storages [(key, little-endian bytes)], one storage per tensor."""
  body, storages = [], []
  for i, (name, array) in enumerate(state_dict.items()):
    array = np.asarray(array, order='C')  # (ascontiguousarray would make 0-d arrays 1-d)
    key = str(i) if not legacy else str(140000000000 + 16 * i)  # legacy keys are id()s
    body.append(
      _op_str(name)
      + _tensor_pickle(
        key, array.dtype, array.size, array.shape, _contiguous_strides(array.shape), legacy=legacy
      )
    )
    storages.append((key, array.astype(array.dtype.newbyteorder('<')).tobytes()))
  data = b'\x80\x02' + _ORDERED_DICT + b'(' + b''.join(body) + b'u.'  # SETITEMS, STOP
  return data, storages


def write_torch_zip(path: Path, state_dict: dict[str, np.ndarray], *, pickle_bytes=None) -> None:
  """Writes `state_dict` as `torch.save` (zip format) does: <stem>/data.pkl, data/<key>, ...

  Records are stored uncompressed with their data 64-byte aligned (padding in the local header's
  extra field), like torch's writer.
  """
  data_pkl, storages = _state_dict_pickle(state_dict, legacy=False)
  if pickle_bytes is not None:
    data_pkl = pickle_bytes
  prefix = path.stem
  records = [('data.pkl', data_pkl), ('.format_version', b'1'), ('.storage_alignment', b'64')]
  records += [('byteorder', b'little')]
  records += [(f'data/{key}', raw) for key, raw in storages]
  records += [('version', b'3\n'), ('.data/serialization_id', b'0' * 40)]
  with open(path, 'wb') as f, zipfile.ZipFile(f, 'w', zipfile.ZIP_STORED) as zf:
    for name, raw in records:
      info = zipfile.ZipInfo(f'{prefix}/{name}', date_time=(1980, 1, 1, 0, 0, 0))
      header_end = f.tell() + 30 + len(info.filename.encode())
      pad = -(header_end + 4) % 64 + 4  # an extra field needs at least its 4-byte header
      info.extra = b'FB' + struct.pack('<H', pad - 4) + b'Z' * (pad - 4)
      zf.writestr(info, raw)


def write_torch_legacy(path: Path, state_dict: dict[str, np.ndarray]) -> None:
  """Writes `state_dict` as `torch.save(..., _use_new_zipfile_serialization=False)` does."""
  main, storages = _state_dict_pickle(state_dict, legacy=True)
  sys_info = {'protocol_version': 1001, 'little_endian': True, 'type_sizes': {'short': 2}}
  with open(path, 'wb') as f:
    f.write(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2))
    f.write(pickle.dumps(1001, protocol=2))
    f.write(pickle.dumps(sys_info, protocol=2))
    f.write(main)
    f.write(pickle.dumps([key for key, _ in storages], protocol=2))
    for (_, raw), array in zip(storages, state_dict.values()):
      f.write(struct.pack('<q', np.asarray(array).size) + raw)


# ----------------------------------------------------------------------------------------------
# Fixtures.
# ----------------------------------------------------------------------------------------------


def random_state_dict(seed: int = 0, *, with_num_batches_tracked: bool = True):
  """Random weights in torch layout, scaled so activations stay O(1) through the 94 convs."""
  rng = np.random.default_rng(seed)
  state_dict = {}
  for key, shape in inc.inception_torch_shapes().items():
    if key.endswith('.conv.weight'):
      value = rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))
    elif key.endswith(('.bn.weight', '.bn.running_var')):
      value = rng.uniform(0.5, 1.5, shape)
    elif key == 'fc.weight':
      value = rng.standard_normal(shape) / np.sqrt(shape[1])
    else:
      value = 0.1 * rng.standard_normal(shape)
    state_dict[key] = value.astype(np.float32)
    if with_num_batches_tracked and key.endswith('.bn.running_var'):
      state_dict[key.replace('running_var', 'num_batches_tracked')] = np.array(7, np.int64)
  return state_dict


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
  """(state dict, path of it written in torch's zip format under the pytorch-fid file name)."""
  state_dict = random_state_dict()
  path = tmp_path_factory.mktemp('inception') / inc.WEIGHTS_FILENAME
  write_torch_zip(path, state_dict)
  return state_dict, path


@pytest.fixture(scope='module')
def net(weights):
  return inc.load_inception(str(weights[1]))


@pytest.fixture
def no_network(monkeypatch):
  """Fails the test if anything tries to download."""

  def refuse(*args, **kwargs):
    raise AssertionError(f'tried to download: {args} {kwargs}')

  monkeypatch.setattr(urllib.request, 'urlopen', refuse)


# ----------------------------------------------------------------------------------------------
# Architecture.
# ----------------------------------------------------------------------------------------------


def test_expected_keys_and_shapes():
  shapes = inc.inception_torch_shapes()
  convs = sorted({k[: -len('.conv.weight')] for k in shapes if k.endswith('.conv.weight')})
  assert len(convs) == 94  # 5 stem + 3 * 7 (A) + 4 (B) + 4 * 10 (C) + 6 (D) + 2 * 9 (E)
  expected_keys = {'fc.weight', 'fc.bias'}
  for c in convs:
    expected_keys |= {f'{c}.conv.weight'} | {
      f'{c}.bn.{n}' for n in ('weight', 'bias', 'running_mean', 'running_var')
    }
    out = shapes[f'{c}.conv.weight'][0]
    for n in ('weight', 'bias', 'running_mean', 'running_var'):
      assert shapes[f'{c}.bn.{n}'] == (out,)
  assert set(shapes) == expected_keys and len(shapes) == 472
  # Spot checks against torchvision's Inception3 / pytorch-fid's FID blocks.
  assert shapes['Conv2d_1a_3x3.conv.weight'] == (32, 3, 3, 3)
  assert shapes['Conv2d_4a_3x3.conv.weight'] == (192, 80, 3, 3)
  assert shapes['Mixed_5b.branch_pool.conv.weight'] == (32, 192, 1, 1)
  assert shapes['Mixed_5d.branch5x5_2.conv.weight'] == (64, 48, 5, 5)
  assert shapes['Mixed_6a.branch3x3.conv.weight'] == (384, 288, 3, 3)
  assert shapes['Mixed_6b.branch7x7_2.conv.weight'] == (128, 128, 1, 7)
  assert shapes['Mixed_6e.branch7x7dbl_4.conv.weight'] == (192, 192, 7, 1)
  assert shapes['Mixed_7a.branch7x7x3_4.conv.weight'] == (192, 192, 3, 3)
  assert shapes['Mixed_7b.branch_pool.conv.weight'] == (192, 1280, 1, 1)
  assert shapes['Mixed_7c.branch3x3dbl_3b.conv.weight'] == (384, 384, 3, 1)
  assert shapes['fc.weight'] == (1008, 2048) and shapes['fc.bias'] == (1008,)
  # torchvision's inception_v3() (1000 classes, aux head) has 27,161,264 parameters; less the
  # aux head (3,326,696) and plus 8 more classes (8 * 2048 + 8) gives pytorch-fid's 23,850,960.
  n_params = sum(int(np.prod(s)) for k, s in shapes.items() if 'running' not in k)
  n_buffers = sum(int(np.prod(s)) for k, s in shapes.items() if 'running' in k)
  assert n_params == 27_161_264 - 3_326_696 + 8 * 2048 + 8 == 23_850_960
  assert n_buffers == 34_432


def test_forward_shapes_and_values(net, weights):
  import jax.numpy as jnp

  assert (net.name, net.label, net.feature_dim, net.num_classes) == (
    'inception_v3',
    'Inception',
    2048,
    1008,
  )
  assert net.image_shape is None
  assert net.weights_sha256 == hashlib.sha256(weights[1].read_bytes()).hexdigest()
  rng = np.random.default_rng(1)
  gray = rng.uniform(-1, 1, (2, 28, 28, 1)).astype(np.float32)
  color = rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
  for images in (gray, color):
    net.check_images(images)
    features, logits = net.apply(jnp.asarray(images))
    assert features.shape == (2, 2048) and logits.shape == (2, 1008)
    assert features.dtype == jnp.float32 and logits.dtype == jnp.float32
    assert np.isfinite(features).all() and np.isfinite(logits).all()
    assert (np.asarray(features) >= 0).all()  # a mean of ReLU outputs
    assert np.asarray(features).std() > 1e-3 and np.asarray(logits).std() > 1e-3
    assert not np.allclose(features[0], features[1])  # the batch is not mixed up or collapsed
  # One channel is tiled to three.
  tiled, _ = net.apply(jnp.asarray(np.repeat(gray, 3, axis=-1)))
  np.testing.assert_allclose(net.apply(jnp.asarray(gray))[0], tiled, rtol=1e-5, atol=1e-5)
  # The logits are the fc layer on the pool3 features.
  features, logits = net.apply(jnp.asarray(color))
  state_dict = weights[0]
  expected = np.asarray(features) @ state_dict['fc.weight'].T + state_dict['fc.bias']
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-3)
  with pytest.raises(ValueError, match='1 or 3 channels'):
    net.check_images(np.zeros((1, 28, 28, 2), np.float32))


# ----------------------------------------------------------------------------------------------
# The loader.
# ----------------------------------------------------------------------------------------------


def test_loader_round_trip_all_formats(weights, tmp_path):
  state_dict, zip_path = weights
  read = inc.read_torch_state_dict(zip_path)
  assert list(read) == list(state_dict)
  for key, value in state_dict.items():
    assert read[key].dtype == value.dtype and read[key].shape == value.shape, key
    np.testing.assert_array_equal(read[key], value)
  legacy_path = tmp_path / 'legacy.pth'
  write_torch_legacy(legacy_path, state_dict)
  npz_path = tmp_path / 'weights.npz'
  np.savez(npz_path, **state_dict)
  checked = inc.read_inception_state_dict(zip_path)
  assert set(checked) == set(inc.inception_torch_shapes())  # num_batches_tracked dropped
  for other in (legacy_path, npz_path):
    again = inc.read_inception_state_dict(other)
    assert set(again) == set(checked)
    for key in checked:
      np.testing.assert_array_equal(again[key], checked[key])
  # Layouts after conversion: conv OIHW -> HWIO, fc [out, in] -> [in, out], BN as is.
  model = inc.build_inception_model(checked)
  conv = np.asarray(model.Mixed_6b.branch7x7_2.conv.kernel[...])
  torch_conv = state_dict['Mixed_6b.branch7x7_2.conv.weight']
  assert conv.shape == (1, 7, 128, 128)
  np.testing.assert_array_equal(conv, np.transpose(torch_conv, (2, 3, 1, 0)))
  np.testing.assert_array_equal(model.fc.kernel[...], state_dict['fc.weight'].T)
  np.testing.assert_array_equal(model.fc.bias[...], state_dict['fc.bias'])
  bn = model.Mixed_7c.branch_pool.bn
  for ours, theirs in (('scale', 'weight'), ('bias', 'bias'), ('mean', 'running_mean')):
    np.testing.assert_array_equal(
      getattr(bn, ours)[...], state_dict[f'Mixed_7c.branch_pool.bn.{theirs}']
    )
  np.testing.assert_array_equal(bn.var[...], state_dict['Mixed_7c.branch_pool.bn.running_var'])
  assert bn.epsilon == 1e-3 and bn.use_running_average


def test_reader_handles_strides_offsets_and_dtypes(tmp_path):
  """A transposed view into a shared storage at an offset, a 0-d int64 and a float64 tensor."""
  storage = np.arange(10, dtype=np.float32)  # tensor = storage[1:7].view(2, 3).t()
  body = (
    _op_str('t')
    + _tensor_pickle('0', np.float32, 10, (3, 2), (1, 3), offset=1, legacy=False)
    + _op_str('same_storage')
    + _tensor_pickle('0', np.float32, 10, (4,), (2,), offset=2, legacy=False)
    + _op_str('n')
    + _tensor_pickle('1', np.int64, 1, (), (), legacy=False)
    + _op_str('d')
    + _tensor_pickle('2', np.float64, 2, (2,), (1,), legacy=False)
  )
  data_pkl = b'\x80\x02' + _ORDERED_DICT + b'(' + body + b'u.'
  path = tmp_path / 'strided.pth'
  with zipfile.ZipFile(path, 'w') as zf:
    zf.writestr('strided/data.pkl', data_pkl)
    zf.writestr('strided/byteorder', b'little')
    zf.writestr('strided/data/0', storage.tobytes())
    zf.writestr('strided/data/1', np.array([5], np.int64).tobytes())
    zf.writestr('strided/data/2', np.array([0.5, -2.0], np.float64).tobytes())
  read = inc.read_torch_state_dict(path)
  np.testing.assert_array_equal(read['t'], storage[1:7].reshape(2, 3).T)
  np.testing.assert_array_equal(read['same_storage'], storage[2:10:2])
  assert read['n'].shape == () and read['n'].dtype == np.int64 and read['n'] == 5
  assert read['d'].dtype == np.float64 and list(read['d']) == [0.5, -2.0]


def test_wrong_keys_and_shapes_are_listed_in_one_error(weights, tmp_path):
  state_dict = dict(weights[0])
  del state_dict['Mixed_6c.branch7x7dbl_3.conv.weight']
  del state_dict['fc.bias']
  state_dict['Mixed_7a.branch3x3_2.conv.weight'] = np.zeros((320, 192, 1, 1), np.float32)
  state_dict['AuxLogits.fc.weight'] = np.zeros((1008, 768), np.float32)
  path = tmp_path / 'bad.npz'
  np.savez(path, **state_dict)
  with pytest.raises(inc.InceptionWeightsError) as excinfo:
    inc.read_inception_state_dict(path)
  message = str(excinfo.value)
  assert '2 missing key(s)' in message
  assert 'Mixed_6c.branch7x7dbl_3.conv.weight' in message and 'fc.bias' in message
  assert '1 unexpected key(s): AuxLogits.fc.weight' in message
  assert 'Mixed_7a.branch3x3_2.conv.weight: shape (320, 192, 1, 1), expected (320, 192, 3, 3)' in (
    message
  )
  assert inc.WEIGHTS_URL in message
  with pytest.raises(inc.InceptionWeightsError, match='missing'):
    inc.build_inception_model(state_dict)


def test_disallowed_globals_are_refused(tmp_path, monkeypatch):
  import os

  calls = []
  monkeypatch.setattr(os, 'getcwd', lambda: calls.append('ran') or '/')
  evil = b'\x80\x02' + _op_global('os', 'getcwd') + b')R.'  # os.getcwd()
  assert pickle.loads(evil) == '/' and calls == ['ran']  # what a plain unpickler would do
  calls.clear()
  zip_path = tmp_path / 'evil.pth'
  write_torch_zip(zip_path, {'a': np.zeros(2, np.float32)}, pickle_bytes=evil)
  legacy_path = tmp_path / 'evil_legacy.pth'
  legacy_path.write_bytes(
    pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    + pickle.dumps(1001, protocol=2)
    + pickle.dumps({'little_endian': True}, protocol=2)
    + evil
  )
  for path in (zip_path, legacy_path):
    with pytest.raises(
      inc.UnsafeCheckpointError, match='refusing to unpickle the global os.getcwd'
    ):
      inc.read_torch_state_dict(path)
    with pytest.raises(pickle.UnpicklingError):  # UnsafeCheckpointError is one
      inc.load_inception(str(path))
  # A global that looks like torch but is not on the list is refused as well.
  sneaky = b'\x80\x02' + _op_global('torch', 'load') + b'.'
  write_torch_zip(zip_path, {}, pickle_bytes=sneaky)
  with pytest.raises(inc.UnsafeCheckpointError, match='torch.load'):
    inc.read_torch_state_dict(zip_path)
  assert calls == []


def test_garbage_and_truncated_files(weights, tmp_path):
  junk = tmp_path / 'junk.pth'
  junk.write_bytes(b'not a checkpoint at all')
  with pytest.raises(inc.InceptionWeightsError, match='neither a torch checkpoint'):
    inc.read_torch_state_dict(junk)
  legacy = tmp_path / 'short.pth'
  write_torch_legacy(legacy, {'w': np.ones((4, 4), np.float32)})
  legacy.write_bytes(legacy.read_bytes()[:-8])
  with pytest.raises(inc.InceptionWeightsError, match='truncated'):
    inc.read_torch_state_dict(legacy)


# ----------------------------------------------------------------------------------------------
# Finding and downloading the file.
# ----------------------------------------------------------------------------------------------


def test_missing_weights_raise_with_instructions_and_never_download(
  tmp_path, monkeypatch, no_network
):
  monkeypatch.delenv(inc.ENV_WEIGHTS, raising=False)
  monkeypatch.setenv(inc.ENV_CACHE_DIR, str(tmp_path / 'cache'))
  with pytest.raises(inc.InceptionWeightsNotFoundError) as excinfo:
    inc.load_inception()
  assert isinstance(excinfo.value, FileNotFoundError)
  message = str(excinfo.value)
  assert inc.WEIGHTS_URL in message
  assert f'curl -L -o ~/.cache/gan_jax/{inc.WEIGHTS_FILENAME} {inc.WEIGHTS_URL}' in message
  assert str(tmp_path / 'cache' / inc.WEIGHTS_FILENAME) in message  # the path searched
  assert 'GAN_JAX_INCEPTION_WEIGHTS' in message
  assert 'download=True' in message and '--download-inception' in message
  # An explicit path that does not exist is an error even with download=True.
  for kwargs in ({}, {'download': True}):
    with pytest.raises(inc.InceptionWeightsNotFoundError, match='nope.pth'):
      inc.load_inception(str(tmp_path / 'nope.pth'), **kwargs)
  monkeypatch.setenv(inc.ENV_WEIGHTS, str(tmp_path / 'nope_env.pth'))
  with pytest.raises(inc.InceptionWeightsNotFoundError, match='GAN_JAX_INCEPTION_WEIGHTS'):
    inc.load_inception(download=True)
  assert not (tmp_path / 'cache').exists()


def test_weights_path_resolution(tmp_path, monkeypatch, no_network):
  monkeypatch.delenv(inc.ENV_WEIGHTS, raising=False)
  monkeypatch.delenv(inc.ENV_CACHE_DIR, raising=False)
  argument, env_file = tmp_path / 'arg.pth', tmp_path / 'env.pth'
  argument.write_bytes(b'x')
  env_file.write_bytes(b'x')
  cache_a, cache_b = tmp_path / 'a', tmp_path / 'b'
  for d in (cache_a, cache_b):
    d.mkdir()
    (d / inc.WEIGHTS_FILENAME).write_bytes(b'x')
  assert inc.resolve_weights_path(cache_dir=str(cache_a)) == cache_a / inc.WEIGHTS_FILENAME
  monkeypatch.setenv(inc.ENV_CACHE_DIR, str(cache_b))
  assert inc.resolve_weights_path() == cache_b / inc.WEIGHTS_FILENAME
  assert inc.resolve_weights_path(cache_dir=str(cache_a)) == cache_a / inc.WEIGHTS_FILENAME
  monkeypatch.setenv(inc.ENV_WEIGHTS, str(env_file))
  assert inc.resolve_weights_path(cache_dir=str(cache_a)) == env_file
  assert inc.resolve_weights_path(str(argument)) == argument
  monkeypatch.setenv('HOME', str(tmp_path))
  monkeypatch.delenv(inc.ENV_WEIGHTS)
  monkeypatch.delenv(inc.ENV_CACHE_DIR)
  assert inc.default_cache_dir() == tmp_path / '.cache' / 'gan_jax'


def test_environment_variable_loads_the_weights(weights, monkeypatch, no_network):
  monkeypatch.setenv(inc.ENV_WEIGHTS, str(weights[1]))
  net = inc.load_inception()
  assert net.weights_sha256 == hashlib.sha256(weights[1].read_bytes()).hexdigest()


class _FakeResponse(io.BytesIO):
  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def test_download_is_atomic_and_hash_checked(weights, tmp_path, monkeypatch):
  payload = weights[1].read_bytes()
  digest = hashlib.sha256(payload).hexdigest()
  urls = []

  def fake_urlopen(url, timeout=None):
    urls.append(url)
    return _FakeResponse(payload)

  monkeypatch.setattr(urllib.request, 'urlopen', fake_urlopen)
  monkeypatch.delenv(inc.ENV_WEIGHTS, raising=False)
  cache = tmp_path / 'cache'
  # The random file's hash does not start with 6726825d: refused, nothing left behind.
  assert not digest.startswith(inc.WEIGHTS_SHA256_PREFIX)
  with pytest.raises(inc.InceptionWeightsError, match='does not start with 6726825d'):
    inc.load_inception(download=True, cache_dir=str(cache))
  assert urls == [inc.WEIGHTS_URL]
  assert list(cache.iterdir()) == []
  # With a matching hash prefix the file lands under its final name and is used.
  monkeypatch.setattr(inception_weights, 'WEIGHTS_SHA256_PREFIX', digest[:8])  # read there
  path = inc.download_inception_weights(str(cache))
  assert path == cache / inc.WEIGHTS_FILENAME and path.read_bytes() == payload
  assert [p.name for p in cache.iterdir()] == [inc.WEIGHTS_FILENAME]
  monkeypatch.setattr(urllib.request, 'urlopen', None)  # now found in the cache: no download
  assert inc.resolve_weights_path(cache_dir=str(cache)) == path


# ----------------------------------------------------------------------------------------------
# Against real torch (skipped without it).
# ----------------------------------------------------------------------------------------------


def _torch():
  return pytest.importorskip('torch', reason='needs torch (optional) to compare against')


def test_torch_reads_our_files_and_we_read_torch_files(weights, tmp_path):
  torch = _torch()
  state_dict, zip_path = weights
  legacy_path = tmp_path / 'legacy.pth'
  write_torch_legacy(legacy_path, state_dict)
  for path in (zip_path, legacy_path):
    loaded = torch.load(path, weights_only=True)
    assert list(loaded) == list(state_dict)
    for key, value in state_dict.items():
      np.testing.assert_array_equal(loaded[key].numpy(), value)
  # torch.save output, both formats: a module's state dict (with _metadata), a strided view,
  # a shared storage, a 0-d tensor and several dtypes.
  module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, bias=False), torch.nn.BatchNorm2d(4))
  base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
  extra = {
    'view.t': base[1:, 2:].t(),
    'view.shared': base[0],
    'half': torch.tensor([1.5, -2.0], dtype=torch.float16),
    'bf16': torch.tensor([1.5, -2.0], dtype=torch.bfloat16),
    'double': torch.tensor([[0.25]], dtype=torch.float64),
    'int': torch.tensor(3),
    'bool': torch.tensor([True, False]),
  }
  saved = {**module.state_dict(), **extra}
  for legacy in (False, True):
    path = tmp_path / f'torch_saved_{legacy}.pth'
    torch.save(saved, path, _use_new_zipfile_serialization=not legacy)
    read = inc.read_torch_state_dict(path)
    assert list(read) == list(saved)
    for key, tensor in saved.items():
      expected = tensor.float().numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
      got = read[key].astype(np.float32) if tensor.dtype == torch.bfloat16 else read[key]
      assert got.shape == expected.shape and got.dtype == expected.dtype, key
      np.testing.assert_array_equal(got, expected)


def _torch_fid_inception(state_dict, images_01):
  """pytorch-fid's InceptionV3 (FID blocks, resize + normalize) transcribed to plain torch."""
  torch = _torch()
  F = torch.nn.functional
  w = {k: torch.from_numpy(v) for k, v in state_dict.items()}

  def conv(name, x, stride=1, padding=0):
    x = F.conv2d(x, w[f'{name}.conv.weight'], stride=stride, padding=padding)
    x = F.batch_norm(
      x,
      w[f'{name}.bn.running_mean'],
      w[f'{name}.bn.running_var'],
      w[f'{name}.bn.weight'],
      w[f'{name}.bn.bias'],
      training=False,
      eps=0.001,
    )
    return F.relu(x)

  def avg(x):
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)

  def block_a(n, x):
    b1 = conv(f'{n}.branch1x1', x)
    b5 = conv(f'{n}.branch5x5_2', conv(f'{n}.branch5x5_1', x), padding=2)
    b3 = conv(f'{n}.branch3x3dbl_1', x)
    b3 = conv(f'{n}.branch3x3dbl_3', conv(f'{n}.branch3x3dbl_2', b3, padding=1), padding=1)
    return torch.cat([b1, b5, b3, conv(f'{n}.branch_pool', avg(x))], 1)

  def block_b(n, x):
    b3 = conv(f'{n}.branch3x3', x, stride=2)
    bd = conv(f'{n}.branch3x3dbl_2', conv(f'{n}.branch3x3dbl_1', x), padding=1)
    bd = conv(f'{n}.branch3x3dbl_3', bd, stride=2)
    return torch.cat([b3, bd, F.max_pool2d(x, kernel_size=3, stride=2)], 1)

  def block_c(n, x):
    b1 = conv(f'{n}.branch1x1', x)
    b7 = conv(f'{n}.branch7x7_1', x)
    b7 = conv(f'{n}.branch7x7_2', b7, padding=(0, 3))
    b7 = conv(f'{n}.branch7x7_3', b7, padding=(3, 0))
    bd = conv(f'{n}.branch7x7dbl_1', x)
    for i, pad in ((2, (3, 0)), (3, (0, 3)), (4, (3, 0)), (5, (0, 3))):
      bd = conv(f'{n}.branch7x7dbl_{i}', bd, padding=pad)
    return torch.cat([b1, b7, bd, conv(f'{n}.branch_pool', avg(x))], 1)

  def block_d(n, x):
    b3 = conv(f'{n}.branch3x3_2', conv(f'{n}.branch3x3_1', x), stride=2)
    b7 = conv(f'{n}.branch7x7x3_1', x)
    b7 = conv(f'{n}.branch7x7x3_2', b7, padding=(0, 3))
    b7 = conv(f'{n}.branch7x7x3_3', b7, padding=(3, 0))
    b7 = conv(f'{n}.branch7x7x3_4', b7, stride=2)
    return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)

  def block_e(n, x, pool):
    b1 = conv(f'{n}.branch1x1', x)
    b3 = conv(f'{n}.branch3x3_1', x)
    b3 = torch.cat(
      [
        conv(f'{n}.branch3x3_2a', b3, padding=(0, 1)),
        conv(f'{n}.branch3x3_2b', b3, padding=(1, 0)),
      ],
      1,
    )
    bd = conv(f'{n}.branch3x3dbl_2', conv(f'{n}.branch3x3dbl_1', x), padding=1)
    bd = torch.cat(
      [
        conv(f'{n}.branch3x3dbl_3a', bd, padding=(0, 1)),
        conv(f'{n}.branch3x3dbl_3b', bd, padding=(1, 0)),
      ],
      1,
    )
    pooled = avg(x) if pool == 'avg' else F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
    return torch.cat([b1, b3, bd, conv(f'{n}.branch_pool', pooled)], 1)

  with torch.no_grad():
    x = torch.from_numpy(images_01).permute(0, 3, 1, 2)
    x = F.interpolate(x, size=(299, 299), mode='bilinear', align_corners=False)
    x = 2 * x - 1
    x = conv('Conv2d_1a_3x3', x, stride=2)
    x = conv('Conv2d_2a_3x3', x)
    x = conv('Conv2d_2b_3x3', x, padding=1)
    x = F.max_pool2d(x, kernel_size=3, stride=2)
    x = conv('Conv2d_3b_1x1', x)
    x = conv('Conv2d_4a_3x3', x)
    x = F.max_pool2d(x, kernel_size=3, stride=2)
    for n in ('Mixed_5b', 'Mixed_5c', 'Mixed_5d'):
      x = block_a(n, x)
    x = block_b('Mixed_6a', x)
    for n in ('Mixed_6b', 'Mixed_6c', 'Mixed_6d', 'Mixed_6e'):
      x = block_c(n, x)
    x = block_d('Mixed_7a', x)
    x = block_e('Mixed_7b', x, 'avg')
    x = block_e('Mixed_7c', x, 'max')
    pool3 = F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)
    logits = F.linear(pool3, w['fc.weight'], w['fc.bias'])
  return pool3.numpy(), logits.numpy()


def test_matches_a_torch_transcription_of_pytorch_fid(net, weights):
  _torch()
  import jax.numpy as jnp

  state_dict = inc.read_inception_state_dict(weights[1])
  images = np.random.default_rng(2).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
  features, logits = net.apply(jnp.asarray(images))
  ref_features, ref_logits = _torch_fid_inception(state_dict, (images + 1) / 2)
  scale = np.abs(ref_features).max()
  np.testing.assert_allclose(features, ref_features, rtol=1e-3, atol=1e-4 * scale)
  np.testing.assert_allclose(logits, ref_logits, rtol=1e-3, atol=1e-4 * np.abs(ref_logits).max())


@pytest.mark.parametrize('size', [(28, 28), (32, 32), (300, 451), (640, 480)])
def test_resize_matches_torch_interpolate(size):
  torch = _torch()
  import jax.numpy as jnp

  images = np.random.default_rng(3).uniform(-1, 1, (1, *size, 3)).astype(np.float32)
  ours = np.asarray(inc.preprocess_images(jnp.asarray(images)))
  theirs = torch.nn.functional.interpolate(
    torch.from_numpy(images).permute(0, 3, 1, 2),
    size=(299, 299),
    mode='bilinear',
    align_corners=False,
  )
  np.testing.assert_allclose(ours, theirs.permute(0, 2, 3, 1).numpy(), atol=2e-6)
