"""Finding and downloading the pytorch-fid Inception weights file.

`resolve_weights_path` looks for `pt_inception-2015-12-05-6726825d.pth` (argument,
`$GAN_JAX_INCEPTION_WEIGHTS`, then `<cache_dir or $GAN_JAX_CACHE_DIR or
~/.cache/gan_jax>/pt_inception-2015-12-05-6726825d.pth`) and never downloads;
`download_inception_weights` fetches it from pytorch-fid's release (`WEIGHTS_URL`), atomically,
and checks its SHA-256 against the prefix in the file name.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

from gan_jax.metrics.torch_pickle import CheckpointError

WEIGHTS_FILENAME = 'pt_inception-2015-12-05-6726825d.pth'
WEIGHTS_URL = (
  'https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/' + WEIGHTS_FILENAME
)
# torch.hub names a file <name>-<first 8 hex digits of its SHA-256>.<ext>.
WEIGHTS_SHA256_PREFIX = '6726825d'
ENV_WEIGHTS = 'GAN_JAX_INCEPTION_WEIGHTS'
ENV_CACHE_DIR = 'GAN_JAX_CACHE_DIR'
DEFAULT_CACHE_DIR = '~/.cache/gan_jax'

# One error class for every unusable weights file, whether the torch reader or the key check
# found the problem (a subclass would not catch the reader's errors).
InceptionWeightsError = CheckpointError


class InceptionWeightsNotFoundError(FileNotFoundError):
  """The Inception weights file was not found; the message lists where and how to get it."""


def default_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
  """`cache_dir`, else `$GAN_JAX_CACHE_DIR`, else `~/.cache/gan_jax` (user-expanded)."""
  return Path(cache_dir or os.environ.get(ENV_CACHE_DIR) or DEFAULT_CACHE_DIR).expanduser()


def _not_found(searched: list[str], why: str) -> InceptionWeightsNotFoundError:
  cache = Path(DEFAULT_CACHE_DIR) / WEIGHTS_FILENAME
  return InceptionWeightsNotFoundError(
    f'{why}\nSearched:\n' + ''.join(f'  {s}\n' for s in searched) + 'To get them, either\n'
    f'  * download them: curl -L -o {cache} {WEIGHTS_URL}\n'
    f'    (mkdir -p {cache.parent} first; or into $GAN_JAX_CACHE_DIR or your cache_dir), or\n'
    f'  * set {ENV_WEIGHTS}=/path/to/{WEIGHTS_FILENAME} (or pass weights_path), or\n'
    '  * let gan_jax download them: load_inception(download=True), or --download-inception on '
    'the command line.'
  )


def resolve_weights_path(
  weights_path: str | os.PathLike[str] | None = None,
  *,
  cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
  """Finds the weights file without downloading anything.

  Order: `weights_path`, else `$GAN_JAX_INCEPTION_WEIGHTS`, else
  `<cache_dir or $GAN_JAX_CACHE_DIR or ~/.cache/gan_jax>/pt_inception-2015-12-05-6726825d.pth`.
  A path given explicitly (argument or environment) must exist; the cache is not searched then.

  Raises:
    InceptionWeightsNotFoundError: listing the path(s) searched and how to get the file.
  """
  for given, what in ((weights_path, 'weights_path'), (os.environ.get(ENV_WEIGHTS), ENV_WEIGHTS)):
    if given:
      path = Path(given).expanduser()
      if path.is_file():
        return path
      raise _not_found([f'{path} ({what})'], f'Inception weights not found at {path} ({what}).')
  path = default_cache_dir(cache_dir) / WEIGHTS_FILENAME
  if path.is_file():
    return path
  raise _not_found(
    [f'{path} (cache)', f'${ENV_WEIGHTS} (not set)'],
    f'The FID Inception weights ({WEIGHTS_FILENAME}) are not on this machine.',
  )


def file_sha256(path: str | os.PathLike[str]) -> str:
  """Hex SHA-256 of a file, read in 1 MiB chunks."""
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      h.update(chunk)
  return h.hexdigest()


def download_inception_weights(
  cache_dir: str | os.PathLike[str] | None = None, *, url: str = WEIGHTS_URL
) -> Path:
  """Downloads the weights into the cache directory (atomically) and checks their SHA-256.

  Args:
    cache_dir: target directory (default: `$GAN_JAX_CACHE_DIR` or `~/.cache/gan_jax`).
    url: where from (default: pytorch-fid's GitHub release, `WEIGHTS_URL`).

  Returns:
    The path of the verified file, `<cache dir>/pt_inception-2015-12-05-6726825d.pth`.

  Raises:
    InceptionWeightsError: if the download's SHA-256 does not start with 6726825d (the file name's
      hash prefix); the partial file is deleted.
    OSError: network or disk errors (urllib.error.URLError is one); nothing is left behind.
  """
  target = default_cache_dir(cache_dir) / WEIGHTS_FILENAME
  target.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=WEIGHTS_FILENAME + '.', suffix='.part')
  try:
    h = hashlib.sha256()
    with os.fdopen(fd, 'wb') as out, urllib.request.urlopen(url, timeout=60) as response:
      for chunk in iter(lambda: response.read(1 << 20), b''):
        h.update(chunk)
        out.write(chunk)
    digest = h.hexdigest()
    if not digest.startswith(WEIGHTS_SHA256_PREFIX):
      raise InceptionWeightsError(
        f'The file downloaded from {url} has SHA-256 {digest}, which does not start with '
        f'{WEIGHTS_SHA256_PREFIX} as {WEIGHTS_FILENAME} must; it was deleted. Try again, or '
        f'download it by hand and set {ENV_WEIGHTS}.'
      )
    os.replace(tmp, target)
  except BaseException:
    Path(tmp).unlink(missing_ok=True)
    raise
  return target
