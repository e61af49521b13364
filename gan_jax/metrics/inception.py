"""The FID InceptionV3 of pytorch-fid ("pt_inception-2015-12-05") in Flax NNX, loaded without torch.

`load_inception` finds the weights file, reads it without torch, checks it and returns the
network as a `FeatureNet` ("FID (Inception)"). The parts live in their own modules; their public
names are importable from here as well:

  inception_net       the network (`FIDInceptionV3`, its blocks, `preprocess_images`,
                      `make_apply`; `INPUT_SIZE`, `FEATURE_DIM`, `NUM_CLASSES`)
  torch_pickle        the torch-free, restricted reader of `torch.save` files
                      (`read_torch_state_dict`, `UnsafeCheckpointError`)
  inception_state     torch key names and layouts (`torch_key_for_path`,
                      `inception_torch_shapes`, `read_inception_state_dict`,
                      `build_inception_model`)
  inception_weights   finding and downloading the file (`resolve_weights_path`,
                      `download_inception_weights`, `WEIGHTS_URL`, `$GAN_JAX_INCEPTION_WEIGHTS`)

Verified here (tests/test_inception.py; the torch comparisons ran with torch 2.13 CPU and are
skipped without torch): the key names and shapes, transcribed from torchvision's `Inception3` and
pytorch-fid's FID blocks (the state dict pytorch-fid loads strictly: 472 keys, 94 BasicConv2d x 5
+ fc, plus 94 ignored `num_batches_tracked`; 23,850,960 parameters, which is torchvision's
27,161,264 less the aux head plus 8 classes, and 34,432 running-statistic values); that
`torch.load` reads the files the tests' stdlib writer makes and that this reader reads files
written by `torch.save` in both formats (strided views, shared storages, 0-d, float16/bfloat16/
float64/int64/bool tensors, a module's state dict with `_metadata`); the forward pass's shapes and
finiteness with random weights; and agreement, with the same random weights, with an
independent plain-torch transcription of pytorch-fid's `InceptionV3` (F.interpolate, conv2d,
batch_norm, pooling): pool3 and logits within about 1e-6 of their largest magnitude, at 32x32,
299x299 and 512x384 (one channel) inputs; the resize alone matches `F.interpolate` to 2e-6 when
upsampling and downsampling. NOT verified: numerical agreement with pytorch-fid on the real
weights, and which of torch's two formats the real file uses, since it cannot be downloaded
here; a first run with the real file should compare a few images' features with pytorch-fid's.

`load_inception` finds the file (argument, `$GAN_JAX_INCEPTION_WEIGHTS`, then
`<cache_dir or $GAN_JAX_CACHE_DIR or ~/.cache/gan_jax>/pt_inception-2015-12-05-6726825d.pth`),
downloads it only when asked (`download=True`), and returns a `FeatureNet`.
"""

from __future__ import annotations

import os

from gan_jax.metrics.features import FeatureNet
from gan_jax.metrics.inception_net import (
  FEATURE_DIM,
  INPUT_SIZE,
  NUM_CLASSES,
  BasicConv2d,
  FIDInceptionA,
  FIDInceptionC,
  FIDInceptionE,
  FIDInceptionV3,
  InceptionB,
  InceptionD,
  make_apply,
  preprocess_images,
)
from gan_jax.metrics.inception_state import (
  build_inception_model,
  inception_torch_shapes,
  read_inception_state_dict,
  torch_key_for_path,
)
from gan_jax.metrics.inception_weights import (
  DEFAULT_CACHE_DIR,
  ENV_CACHE_DIR,
  ENV_WEIGHTS,
  WEIGHTS_FILENAME,
  WEIGHTS_SHA256_PREFIX,
  WEIGHTS_URL,
  InceptionWeightsError,
  InceptionWeightsNotFoundError,
  default_cache_dir,
  download_inception_weights,
  file_sha256,
  resolve_weights_path,
)
from gan_jax.metrics.torch_pickle import (
  CheckpointError,
  UnsafeCheckpointError,
  read_torch_state_dict,
)

__all__ = [
  'DEFAULT_CACHE_DIR',
  'ENV_CACHE_DIR',
  'ENV_WEIGHTS',
  'FEATURE_DIM',
  'INPUT_SIZE',
  'NUM_CLASSES',
  'WEIGHTS_FILENAME',
  'WEIGHTS_SHA256_PREFIX',
  'WEIGHTS_URL',
  'BasicConv2d',
  'CheckpointError',
  'FIDInceptionA',
  'FIDInceptionC',
  'FIDInceptionE',
  'FIDInceptionV3',
  'InceptionB',
  'InceptionD',
  'InceptionWeightsError',
  'InceptionWeightsNotFoundError',
  'UnsafeCheckpointError',
  'build_inception_model',
  'default_cache_dir',
  'download_inception_weights',
  'inception_torch_shapes',
  'load_inception',
  'make_apply',
  'preprocess_images',
  'read_inception_state_dict',
  'read_torch_state_dict',
  'resolve_weights_path',
  'torch_key_for_path',
]


def load_inception(
  weights_path: str | None = None, *, download: bool = False, cache_dir: str | None = None
) -> FeatureNet:
  """The pytorch-fid FID InceptionV3 as a `FeatureNet` ("FID (Inception)").

  Args:
    weights_path: `pt_inception-2015-12-05-6726825d.pth` (torch zip or legacy format) or an
      `.npz` with the same keys. Default: `$GAN_JAX_INCEPTION_WEIGHTS`, else the file in the
      cache directory.
    download: if the file is not found (and no path was given explicitly), download it from
      `WEIGHTS_URL` into the cache directory. Never downloads otherwise.
    cache_dir: cache directory; default `$GAN_JAX_CACHE_DIR`, else `~/.cache/gan_jax`.

  Returns:
    `FeatureNet(name='inception_v3', label='Inception', weights_sha256=<SHA-256 of the file>,
    feature_dim=2048, num_classes=1008, image_shape=None, apply=...)`; `apply(images)` takes
    float32 `[B, H, W, C]` in [-1, 1], C = 1 or 3, any H and W (resized to 299x299), and
    returns `(pool3 float32 [B, 2048], logits float32 [B, 1008])`. The hash is that of the file
    read, so a `.npz` conversion of the same weights gets a different hash (and its own cached
    reference statistics).

  Raises:
    InceptionWeightsNotFoundError: no file found and download=False; the message lists the
      paths searched and how to get the file.
    InceptionWeightsError: wrong keys/shapes, unreadable file, or a download whose SHA-256 does
      not match.
    UnsafeCheckpointError: the checkpoint's pickle names a disallowed global.
  """
  try:
    path = resolve_weights_path(weights_path, cache_dir=cache_dir)
  except InceptionWeightsNotFoundError:
    if not download or weights_path or os.environ.get(ENV_WEIGHTS):
      raise
    path = download_inception_weights(cache_dir)
  model = build_inception_model(read_inception_state_dict(path))
  return FeatureNet(
    name='inception_v3',
    label='Inception',
    weights_sha256=file_sha256(path),
    feature_dim=FEATURE_DIM,
    num_classes=NUM_CLASSES,
    image_shape=None,
    apply=make_apply(model),
  )
