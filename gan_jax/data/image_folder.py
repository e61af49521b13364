"""Folders (or .zip files) of images as datasets: `data.name='folder:/path/to/images'`.

A folder is read at any depth; every .png, .jpg, .jpeg and .webp file (any case; Pillow
decodes them) is one example, in the order of its relative path (sorted, '/'-separated);
hidden files and folders ('.x', and '__MACOSX' in zips) are skipped, other files ignored.
A `.zip` of images is read the same way (`folder:/path/x.zip`); when every image of a zip
lies in one top folder (what zipping a folder gives) that folder is its root.

Labels follow the ImageFolder convention: the sorted names of the first-level subfolders
that hold images are the classes 0..K-1, and an image's label is the index of the
first-level subfolder it lies in (at any depth below it). Images directly in the root have
no label (-1); a conditional model needs every image in a class folder. Train runs record
the classes in `<workdir>/classes.json` (`write_classes`).

Each image is decoded once (EXIF orientation applied, then converted to grayscale 'L' or
'RGB' as `data.channels` says, alpha dropped, 16-bit scaled to 8), brought to
`image_size` x `image_size` and stored in a uint8 cache, opened memory-mapped, so folders
larger than memory work (then also set `data.cache=False` and a `data.shuffle_buffer`):

    <cache_root()>/folders/<content key>-<H>x<W>x<C>-<resize>/
        images.npy   uint8 [N, H, W, C]
        labels.npy   int32 [N] (-1: no label)
        meta.json    source, content key, classes, count, options

The content key is the SHA-256 of every image's relative path, size and modification time
(for a zip: name, size and CRC-32), so adding, removing, renaming or rewriting an image
gives a new key, hence a new cache and new FID reference statistics; the folder's own path
is not part of it (a moved folder keeps its cache). Caches are written to a temporary
folder and renamed, so a crash never leaves a half-written one.

Options follow the path after '?', '&'-separated: `folder:/data/faces?resize=stretch`.

    resize=crop     (default) centre-crop the largest square, then resize it (bilinear,
                    antialiased, as data.py resizes TFDS images) to image_size
    resize=stretch  resize the whole image to image_size x image_size (aspect ratio lost)
    upscale=no      (default) an image whose square (crop) or shorter side (stretch) is
                    smaller than image_size is an error; upscale=yes enlarges it instead
    mixed=error     (default) with data.channels=3, a folder mixing grayscale and colour
                    images is an error; mixed=convert tiles the grayscale ones to RGB

The folder is one split, 'train', sliced like TFDS splits: 'train', 'train[:1000]',
'train[10%:]' (the slice is taken in the sorted order above).

Paired images (pix2pix's format, `gan_jax.data.translation_sources`' 'pairs:'): a
`FolderSpec` with `halves=2` reads each file as two images side by side, A | B, its width
twice its height; each half is brought to image_size like a square image, and the cache
holds them side by side, [N, H, 2W, C] (cache folder tag '-pairs'). A file of another shape
is an error (`NotAPairError`, reported with the others in one line).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import hashlib
import io
import json
import logging
import os
import re
import shutil
import threading
import time
import zipfile
from typing import Any

import numpy as np

from gan_jax.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = [
  'PREFIX',
  'EXTENSIONS',
  'FolderSpec',
  'Listing',
  'NotAPairError',
  'CachedFolder',
  'is_folder_name',
  'parse_name',
  'absolute_name',
  'list_images',
  'content_key',
  'reference_name',
  'split_range',
  'check_folder',
  'label_classes',
  'decode_image',
  'stored_channels',
  'load_cached',
  'folder_dataset',
  'raw_images',
  'write_classes',
]

PREFIX = 'folder:'
EXTENSIONS = ('.png', '.jpg', '.jpeg', '.webp')
_OPTIONS = {
  'resize': ('crop', 'stretch'),
  'upscale': ('no', 'yes'),
  'mixed': ('error', 'convert'),
}
_FORMAT_VERSION = 1  # bump when the decoding changes, so old caches are not reused
_SHOW = 5  # files named in an error message
_GRAY_MODES = ('1', 'L', 'LA', 'La', 'I', 'I;16', 'I;16B', 'I;16L', 'I;16N', 'F')


@dataclasses.dataclass(frozen=True)
class FolderSpec:
  """A parsed `folder:` name.

  Attributes:
    name: the name as given (what messages quote).
    path: the folder or .zip, user-expanded and absolute.
    resize, upscale, mixed: the options (see the module docstring).
    halves: 1, each file is one image; 2, each file is an A | B pair side by side (width
      twice the height), cached as [N, H, 2W, C] (see the module docstring).
    fields: the config fields (or command-line flags) that give the name, the image size
      and the channels, as messages quote them.
  """

  name: str
  path: str
  resize: str = 'crop'
  upscale: str = 'no'
  mixed: str = 'error'
  halves: int = 1
  fields: tuple[str, str, str] = ('data.name', 'data.image_size', 'data.channels')

  @property
  def is_zip(self) -> bool:
    return self.path.lower().endswith('.zip')


@dataclasses.dataclass(frozen=True)
class Listing:
  """The images of a folder or zip, in example order.

  Attributes:
    files: relative '/'-separated paths (zip: member names), sorted.
    labels: int32 [N], the first-level subfolder index of each file (-1: in the root).
    classes: the sorted first-level subfolder names holding images.
    key: the content key (SHA-256 hex of paths, sizes and mtimes / CRCs).
    ignored: how many other (non-image) files were skipped.
    root: inside a zip, the member prefix stripped from `files` ('' for none).
  """

  files: tuple[str, ...]
  labels: np.ndarray
  classes: tuple[str, ...]
  key: str
  ignored: int
  root: str = ''


@dataclasses.dataclass(frozen=True)
class CachedFolder:
  """A decoded folder: memory-mapped uint8 images [N, H, W, C] and int32 labels [N]."""

  images: np.ndarray
  labels: np.ndarray
  classes: tuple[str, ...]
  key: str
  path: str


def is_folder_name(name: Any) -> bool:
  """Whether a `data.name` names an image folder or zip ('folder:...')."""
  return isinstance(name, str) and name.startswith(PREFIX)


def parse_name(name: str, field: str = 'data.name', *, prefix: str = PREFIX) -> FolderSpec:
  """Parses 'folder:PATH[?opt=value&...]' and checks that PATH is a folder or a .zip file.

  Args:
    name: the name.
    field: the config field (or flag) that gave it, quoted in messages.
    prefix: the prefix before PATH ('folder:'; '' for a bare path, as in 'unpaired:').

  Raises:
    ConfigError: no path, an unknown option or value, or no such folder / zip file.
  """
  if not (isinstance(name, str) and name.startswith(prefix)):
    raise ConfigError(f'{field}={name!r} is invalid: an image folder is named {prefix}/path.')
  rest = name[len(prefix) :]
  options: dict[str, str] = {}
  path, sep, query = rest.rpartition('?')
  if sep and query and all('=' in part for part in query.split('&')):
    for part in query.split('&'):
      key, _, value = part.partition('=')
      if key not in _OPTIONS or value not in _OPTIONS[key]:
        choices = '; '.join(f'{k}={"|".join(v)}' for k, v in _OPTIONS.items())
        raise ConfigError(
          f'{field}={name!r} is invalid: unknown option {part!r}; the options are {choices}.'
        )
      options[key] = value
  else:
    path = rest
  if not path:
    raise ConfigError(f'{field}={name!r} is invalid: give a path, e.g. {prefix}/data/images.')
  path = os.path.abspath(os.path.expanduser(path))
  spec = FolderSpec(name, path, **options, fields=(field, *FolderSpec.fields[1:]))
  if spec.is_zip:
    if not os.path.isfile(path):
      raise ConfigError(f'{field}={name!r} is invalid: no such zip file {path}.')
  elif not os.path.isdir(path):
    raise ConfigError(
      f'{field}={name!r} is invalid: no such folder {path} (give a folder of images or a .zip).'
    )
  return spec


def absolute_name(name: str) -> str:
  """The name with its path made absolute (options kept), as a run records it in config.json,
  so that it resumes and evaluates from any working folder."""
  spec = parse_name(name)
  options = '&'.join(
    f'{k}={getattr(spec, k)}' for k, values in _OPTIONS.items() if getattr(spec, k) != values[0]
  )
  return PREFIX + spec.path + (f'?{options}' if options else '')


def _is_image(relpath: str) -> bool:
  return relpath.lower().endswith(EXTENSIONS)


def _hidden(relpath: str) -> bool:
  return any(p.startswith('.') or p == '__MACOSX' for p in relpath.split('/'))


def _walk(spec: FolderSpec) -> tuple[list[tuple[str, Any]], int, str]:
  """[(relpath, identity)] of the images, the number of other files, and a zip's root."""
  entries, ignored, root = [], 0, ''
  if spec.is_zip:
    try:
      with zipfile.ZipFile(spec.path) as z:
        infos = [i for i in z.infolist() if not i.is_dir() and not _hidden(i.filename)]
    except (zipfile.BadZipFile, OSError) as err:
      raise ConfigError(
        f'{spec.fields[0]}={spec.name!r} is invalid: cannot read the zip ({err}).'
      ) from None
    for info in infos:
      if _is_image(info.filename):
        entries.append((info.filename, (info.file_size, info.CRC)))
      else:
        ignored += 1
    tops = {name.split('/')[0] for name, _ in entries if '/' in name}
    if len(tops) == 1 and all('/' in name for name, _ in entries):
      root = tops.pop() + '/'
  else:
    seen = set()  # real paths of the folders walked: linked folders are followed once
    for dirpath, dirnames, filenames in os.walk(spec.path, followlinks=True):
      real = os.path.realpath(dirpath)
      if real in seen:  # a link back up the tree (or a second link to one folder)
        dirnames[:] = []
        continue
      seen.add(real)
      dirnames[:] = sorted(d for d in dirnames if not d.startswith('.'))
      rel_dir = os.path.relpath(dirpath, spec.path)
      for filename in filenames:
        if filename.startswith('.'):
          continue
        rel = filename if rel_dir == '.' else os.path.join(rel_dir, filename)
        rel = rel.replace(os.sep, '/')
        if not _is_image(filename):
          ignored += 1
          continue
        try:
          st = os.stat(os.path.join(dirpath, filename))
        except OSError:
          st = None  # a broken link: it fails, named, when decoded
        entries.append((rel, (st.st_size, st.st_mtime_ns) if st else (-1, -1)))
  entries.sort(key=lambda e: e[0])
  return entries, ignored, root


def list_images(spec: FolderSpec) -> Listing:
  """Lists the images of a folder or zip (see the module docstring); reads no image.

  Raises:
    ConfigError: the folder holds no image (the message counts the other files).
  """
  entries, ignored, root = _walk(spec)
  if not entries:
    raise ConfigError(
      f'{spec.fields[0]}={spec.name!r} is invalid: no images ({", ".join(EXTENSIONS)}) in '
      f'{spec.path}' + (f' ({ignored} other files ignored)' if ignored else '') + '.'
    )
  digest = hashlib.sha256()
  files = []
  for rel, identity in entries:
    rel = rel[len(root) :]
    files.append(rel)
    digest.update(json.dumps([rel, *identity]).encode() + b'\n')
  class_names = sorted({f.split('/')[0] for f in files if '/' in f})
  index = {c: i for i, c in enumerate(class_names)}
  labels = np.array([index[f.split('/')[0]] if '/' in f else -1 for f in files], np.int32)
  return Listing(tuple(files), labels, tuple(class_names), digest.hexdigest(), ignored, root)


def content_key(name: str) -> str:
  """The SHA-256 (hex) of the folder's content listing: paths, sizes and mtimes (zip: CRCs)."""
  return list_images(parse_name(name)).key


def reference_name(name: str) -> str:
  """A file-safe stand-in for a folder name in cache keys: 'folder-<key[:16]>-<options>'.

  Used by `gan_jax.metrics.reference.reference_key`, so a changed folder gets new FID
  statistics and the same content in another place reuses them.
  """
  spec = parse_name(name)
  return f'folder-{list_images(spec).key[:16]}-{_options_tag(spec)}'


def _options_tag(spec: FolderSpec) -> str:
  tag = spec.resize
  if spec.upscale == 'yes':
    tag += '_up'
  if spec.halves == 2:
    tag += '-pairs'
  return tag


_SPLIT = re.compile(r'^(\w+)(?:\[(-?\d+%?)?:(-?\d+%?)?\])?$')


def split_range(split: str, n: int, name: str = '') -> tuple[int, int]:
  """[start, stop) of `split` over a folder of `n` images: 'train', 'train[:100]', 'train[10%:]'.

  Raises:
    ConfigError: another split name, or a malformed slice.
  """
  m = _SPLIT.match(split.replace(' ', ''))
  if not m or m.group(1) != 'train':
    raise ConfigError(
      f'split {split!r} (data.split or eval.split) is invalid for {name or "an image folder"}: '
      "a folder is one split, 'train', sliced like TFDS ('train', 'train[:1000]', "
      "'train[10%:90%]')."
    )

  def bound(text: str | None, default: int) -> int:
    if text is None:
      return default
    if text.endswith('%'):
      value = round(int(text[:-1]) * n / 100)
    else:
      value = int(text)
    if value < 0:
      value += n
    return min(max(value, 0), n)

  return bound(m.group(2), 0), bound(m.group(3), n)


def check_folder(name: str, split: str) -> int:
  """The number of examples of `split` of the folder `name`, from its listing (no image read).

  Raises:
    ConfigError: a bad name or split, no such folder, or no image in it.
  """
  listing = list_images(parse_name(name))
  start, stop = split_range(split, len(listing.files), name)
  return max(stop - start, 0)


def label_classes(name: str) -> int | None:
  """K when every image lies in one of K first-level subfolders; None when none does.

  Raises:
    ConfigError: some images lie in subfolders and some directly in the root (a
      conditional model needs a class for each; the message names a few).
  """
  listing = list_images(parse_name(name))
  if not listing.classes:
    return None
  loose = [f for f, y in zip(listing.files, listing.labels) if y < 0]
  if loose:
    raise ConfigError(
      f'data.name={name!r}: {len(loose)} images lie directly in the folder, outside the class '
      f'subfolders {_first_few(listing.classes)} (e.g. {_first_few(loose)}); move them into a '
      'class folder or set model.num_classes=0.'
    )
  return len(listing.classes)


def _first_few(items) -> str:
  items = list(items)
  shown = ', '.join(str(i) for i in items[:_SHOW])
  return shown + (f', ... ({len(items)} in all)' if len(items) > _SHOW else '')


def _to_mode(img, channels: int):
  """Pillow image -> 'L' or 'RGB' (alpha dropped, 16-bit scaled, palettes expanded)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  if img.mode.startswith('I;16') or img.mode in ('I', 'F'):
    arr = np.asarray(img, np.float64)
    top = 65535.0 if img.mode.startswith('I;16') or arr.max() > 255 else 255.0
    img = Image.fromarray(np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8))
  if img.mode == 'P':
    img = img.convert('RGBA' if 'transparency' in img.info else 'RGB')
  return img.convert('L' if channels == 1 else 'RGB')


class NotAPairError(ValueError):
  """A file read as an A | B pair (`FolderSpec.halves=2`) whose width is not twice its
  height. Attributes: size, its (width, height)."""

  def __init__(self, size: tuple[int, int]):
    super().__init__(f'{size[0]}x{size[1]} is not two squares side by side')
    self.size = size


def decode_image(
  data: bytes,
  image_size: int,
  channels: int,
  resize: str = 'crop',
  upscale: bool = False,
  halves: int = 1,
) -> tuple[np.ndarray | None, bool, tuple[int, int]]:
  """Decodes one encoded image to uint8 [image_size, image_size, channels].

  EXIF orientation is applied, then the image is converted to 'L' (ITU-R 601 luma) or
  'RGB', centre-cropped to its largest square (`resize='crop'`) or not (`'stretch'`), and
  resized with Pillow's antialiased bilinear filter when its size differs. With `halves=2`
  the image is an A | B pair: its width must be twice its height; its left and right
  squares are each brought to image_size so, and returned side by side,
  [image_size, 2 * image_size, channels].

  Returns:
    (the image, or None when it (a half) is smaller than image_size and `upscale` is False;
     whether it is grayscale as stored; its stored (width, height)).

  Raises:
    OSError, ValueError, PIL.UnidentifiedImageError: the data is unreadable or truncated.
    NotAPairError: `halves=2` and the width is not twice the height.
  """
  from PIL import Image, ImageOps  # pylint: disable=g-import-not-at-top

  with Image.open(io.BytesIO(data)) as img:
    img.load()  # raises on truncated data (ImageFile.LOAD_TRUNCATED_IMAGES is False)
    gray = img.mode in _GRAY_MODES
    if img.getexif().get(0x0112, 1) != 1:  # an EXIF orientation other than 'normal'
      img = ImageOps.exif_transpose(img)
    size = img.size
    img = _to_mode(img, channels)
  if halves == 2:
    w, h = img.size
    if w != 2 * h:
      raise NotAPairError(size)
    parts = [_fit(img.crop((x, 0, x + h, h)), image_size, resize, upscale) for x in (0, h)]
    pair = None if parts[0] is None else np.concatenate(parts, axis=1)
    return pair, gray, size
  return _fit(img, image_size, resize, upscale), gray, size


def _fit(img, image_size: int, resize: str, upscale: bool) -> np.ndarray | None:
  """A converted Pillow image cropped / resized to uint8 [S, S, C] (see `decode_image`);
  None when it is too small and not `upscale`."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  w, h = img.size
  if resize == 'crop':
    s = min(w, h)
    if s < image_size and not upscale:
      return None
    left, top = (w - s) // 2, (h - s) // 2
    if (w, h) != (s, s):
      img = img.crop((left, top, left + s, top + s))
  elif min(w, h) < image_size and not upscale:
    return None
  if img.size != (image_size, image_size):
    img = img.resize((image_size, image_size), Image.BILINEAR)
  arr = np.asarray(img, np.uint8)
  return arr[..., None] if arr.ndim == 2 else arr


def stored_channels(spec: FolderSpec) -> int:
  """The channels the folder's images have as stored: 1 when every one is grayscale (by its
  Pillow mode, as `decode_image` tells), else 3. Reads each file's header, decodes no pixels.

  Raises:
    ConfigError: as `list_images`, or a file that is not an image Pillow can open (named).
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top

  listing = list_images(spec)
  read, close = _reader(spec, listing)
  try:
    for rel in listing.files:
      try:
        with Image.open(io.BytesIO(read(rel))) as img:
          if img.mode not in _GRAY_MODES:
            return 3
      except Exception as err:  # noqa: BLE001 - Pillow raises many kinds; all are reported
        raise ConfigError(
          f'{spec.fields[0]}={spec.name!r}: {rel} cannot be read ({_reason(err)}); fix or '
          'remove it.'
        ) from None
  finally:
    close()
  return 1


def _reader(spec: FolderSpec, listing: Listing):
  """A thread-safe `read(relpath) -> bytes` (a zip is opened once per thread)."""
  if not spec.is_zip:

    def read_file(rel: str) -> bytes:
      with open(os.path.join(spec.path, *rel.split('/')), 'rb') as f:
        return f.read()

    return read_file, lambda: None
  local, opened = threading.local(), []
  lock = threading.Lock()

  def read_member(rel: str) -> bytes:
    if not hasattr(local, 'zip'):
      local.zip = zipfile.ZipFile(spec.path)
      with lock:
        opened.append(local.zip)
    return local.zip.read(listing.root + rel)

  def close() -> None:
    for z in opened:
      z.close()

  return read_member, close


def _cache_dir(cache_dir: str | None) -> str:
  from gan_jax.cache_dir import cache_root  # pylint: disable=g-import-not-at-top

  return os.path.join(cache_root(cache_dir), 'folders')


def _reason(err: BaseException) -> str:
  if type(err).__name__ == 'UnidentifiedImageError':  # its message names a BytesIO object
    return 'not an image Pillow can decode'
  text = (str(err).strip().splitlines() or [''])[0][:80]
  return f'{type(err).__name__}: {text}' if text else type(err).__name__


def _decode_all(
  spec: FolderSpec, listing: Listing, out: np.ndarray, image_size: int, channels: int
) -> None:
  """Decodes every listed image into `out`; raises one ConfigError naming all failures."""
  bad, small, gray, colour, unpaired = [], [], [], [], []
  t0 = last = time.perf_counter()
  n = len(listing.files)
  read, close = _reader(spec, listing)

  def decode(rel: str):
    try:
      return decode_image(
        read(rel), image_size, channels, spec.resize, spec.upscale == 'yes', spec.halves
      )
    except Exception as err:  # noqa: BLE001 - Pillow raises many kinds; all are reported
      return err

  # Pillow releases the GIL while it decodes, so threads decode in parallel; map() keeps
  # the order, and chunks bound what is in flight.
  workers = max(1, min(16, os.cpu_count() or 1))
  try:
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
      for lo in range(0, n, 1024):
        chunk = listing.files[lo : lo + 1024]
        for i, (rel, result) in enumerate(zip(chunk, pool.map(decode, chunk)), lo):
          if isinstance(result, NotAPairError):
            unpaired.append(f'{rel} ({result.size[0]}x{result.size[1]})')
            continue
          if isinstance(result, Exception):
            bad.append(f'{rel} ({_reason(result)})')
            continue
          arr, is_gray, size = result
          (gray if is_gray else colour).append(rel)
          if arr is None:
            small.append(f'{rel} ({size[0]}x{size[1]})')
          else:
            out[i] = arr
        if time.perf_counter() - last > 10:
          last = time.perf_counter()
          log.info('Decoding %s: %d/%d images', spec.path, min(lo + 1024, n), n)
  finally:
    close()
  where = f'{spec.fields[0]}={spec.name!r}'
  if bad:
    raise ConfigError(
      f'{where}: {len(bad)} of {n} images cannot be read (unreadable or truncated): '
      f'{_first_few(bad)}; fix or remove them.'
    )
  if unpaired:
    raise ConfigError(
      f'{where}: {len(unpaired)} of {n} images are not A | B pairs (pix2pix\'s format: width '
      f'twice the height, A left, B right): {_first_few(unpaired)}; fix or remove them.'
    )
  if small:
    raise ConfigError(
      f'{where}: {len(small)} of {n} images are smaller than {spec.fields[1]}={image_size} '
      f'{"after the centre crop" if spec.resize == "crop" else "on a side"} and would be '
      f'upscaled: {_first_few(small)}; remove them, use a smaller {spec.fields[1]}, or add '
      '?upscale=yes to the name to enlarge them.'
    )
  if channels == 3 and gray and colour and spec.mixed == 'error':
    raise ConfigError(
      f'{where}: the folder mixes {len(gray)} grayscale and {len(colour)} colour images and '
      f'{spec.fields[2]}=3 (grayscale ones: {_first_few(gray)}); remove them, set '
      f'{spec.fields[2]}=1, or add ?mixed=convert to the name to use them as gray RGB images.'
    )
  log.info('Decoded %d images of %s in %.1f s', n, spec.path, time.perf_counter() - t0)


def load_cached(
  name: str | FolderSpec, *, image_size: int, channels: int, cache_dir: str | None = None
) -> CachedFolder:
  """The decoded folder, memory-mapped from the cache; decodes and caches it if needed.

  Args:
    name: 'folder:PATH[?options]', or a parsed `FolderSpec` (e.g. one with `halves=2`).
    image_size, channels: the stored shape [image_size, image_size, channels]
      ([image_size, 2 * image_size, channels] for pairs).
    cache_dir: overrides the cache root (`gan_jax.cache_dir.cache_root`).

  Raises:
    ConfigError: a bad name, an empty folder, unreadable or truncated images, images
      smaller than image_size (without upscale=yes), or mixed grayscale and colour images
      with channels=3 (without mixed=convert), files that are not A | B pairs (halves=2);
      one line that names the first few files.
  """
  spec = name if isinstance(name, FolderSpec) else parse_name(name)
  listing = list_images(spec)
  tag = f'{listing.key[:32]}-{image_size}x{image_size}x{channels}-{_options_tag(spec)}'
  tag += f'-v{_FORMAT_VERSION}'
  path = os.path.join(_cache_dir(cache_dir), tag)
  images_path = os.path.join(path, 'images.npy')
  shape = (len(listing.files), image_size, spec.halves * image_size, channels)
  if os.path.exists(images_path):
    try:
      cached = _open(path, listing, shape)
    except Exception as err:  # noqa: BLE001 - e.g. a file damaged after it was written
      log.warning('Cached folder %s is unreadable (%s); decoding the images again.', path, err)
      shutil.rmtree(path, ignore_errors=True)
    else:
      return cached
  n = len(listing.files)  # not cached yet: decode into a temporary folder, then rename it
  tmp = f'{path}.tmp{os.getpid()}'
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  try:
    out = np.lib.format.open_memmap(
      os.path.join(tmp, 'images.npy'),
      mode='w+',
      dtype=np.uint8,
      shape=shape,
    )
    _decode_all(spec, listing, out, image_size, channels)
    out.flush()
    del out
    np.save(os.path.join(tmp, 'labels.npy'), listing.labels)
    meta = {
      'source': spec.path,
      'content_key': listing.key,
      'count': n,
      'shape': list(shape[1:]),
      'options': {k: getattr(spec, k) for k in _OPTIONS},
      **({'halves': spec.halves} if spec.halves != 1 else {}),
      'classes': list(listing.classes),
      'format_version': _FORMAT_VERSION,
    }
    with open(os.path.join(tmp, 'meta.json'), 'w') as f:
      json.dump(meta, f, indent=2)
    try:
      os.rename(tmp, path)
    except OSError:  # another process finished first: use its (identical) cache
      if not os.path.exists(images_path):
        raise
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  log.info('Cached %s as %s', spec.path, path)
  return _open(path, listing, shape)


def _open(path: str, listing: Listing, shape: tuple[int, ...]) -> CachedFolder:
  images = np.load(os.path.join(path, 'images.npy'), mmap_mode='r')
  labels = np.load(os.path.join(path, 'labels.npy'))
  if images.shape != shape or images.dtype != np.uint8 or labels.shape != shape[:1]:
    raise ValueError(f'holds {images.dtype} {images.shape}, expected uint8 {shape}')
  return CachedFolder(images, labels, listing.classes, listing.key, path)


def folder_dataset(
  name: str,
  split: str,
  *,
  image_size: int,
  channels: int,
  chunk: int = 1024,
  cache_dir: str | None = None,
):
  """`split` of the folder as a tf.data.Dataset of {'image': uint8 [H, W, C], 'label': int32}.

  The examples come in the listing's order (sorted relative paths), read from the
  memory-mapped cache `chunk` images at a time, so `gan_jax.data.pipeline` shuffles, shards and
  resumes them exactly as it does TFDS examples.

  Returns:
    (the dataset, its number of examples).

  Raises:
    ConfigError: as `load_cached`, or a bad split (see `split_range`).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  cached = load_cached(name, image_size=image_size, channels=channels, cache_dir=cache_dir)
  start, stop = split_range(split, len(cached.labels), name)
  images, labels = cached.images, cached.labels

  def chunks():
    for lo in range(start, stop, chunk):
      hi = min(lo + chunk, stop)
      yield {'image': np.asarray(images[lo:hi]), 'label': labels[lo:hi]}

  shape = (image_size, image_size, channels)
  ds = tf.data.Dataset.from_generator(
    chunks,
    output_signature={
      'image': tf.TensorSpec((None, *shape), tf.uint8),
      'label': tf.TensorSpec((None,), tf.int32),
    },
  ).unbatch()
  return ds, max(stop - start, 0)


def raw_images(name: str, split: str, *, image_size: int, channels: int):
  """`folder_dataset` resized and channel-converted as every gan_jax dataset is
  (`gan_jax.data.tfds_images.preprocess`; the cache already holds that shape, so it only
  checks it): what the name 'folder:...' gives `gan_jax.data.pipeline`.

  Returns:
    `(ds, n)`: `ds` yields `{'image': uint8 [image_size, image_size, channels] in [0, 255],
    'label': int32 []}` in listing order; `n` examples.

  Raises:
    ConfigError: as `folder_dataset`.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from gan_jax.data.tfds_images import preprocess  # pylint: disable=g-import-not-at-top  (TensorFlow)

  ds, num_examples = folder_dataset(name, split, image_size=image_size, channels=channels)
  process = functools.partial(preprocess, image_size=image_size, channels=channels)
  return ds.map(process, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True), num_examples


def write_classes(name: str, workdir: str) -> str:
  """Writes `<workdir>/classes.json`: the folder's class names (label i is classes[i]),
  source path, content key and image count. Returns its path."""
  spec = parse_name(name)
  listing = list_images(spec)
  path = os.path.join(workdir, 'classes.json')
  record = {
    'classes': list(listing.classes),
    'source': spec.path,
    'content_key': listing.key,
    'num_images': len(listing.files),
    'unlabelled_images': int(np.sum(listing.labels < 0)),
  }
  with open(path + '.tmp', 'w') as f:
    json.dump(record, f, indent=2)
  os.replace(path + '.tmp', path)
  return path
