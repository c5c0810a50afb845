"""Download and verify the raw Omniglot archives, for data/prepare.py (which downloads them
when it is given no --source).

Downloads go to `<file>.part` first and are renamed only once complete and verified, so an
interrupted download never passes for a complete file; a `.part` left behind is resumed when
the server supports ranges. miniImageNet has no official download: prepare it from local files.
"""

import hashlib
import os
from typing import NamedTuple
from typing import Optional
import urllib.error
import urllib.request

from tqdm import tqdm

OMNIGLOT_URL = 'https://github.com/brendenlake/omniglot/raw/master/python/'


class Archive(NamedTuple):
  url: str
  checksum: Optional[tuple] = None  # (hashlib algorithm, hex digest); None: not verified


# MD5 digests as published with the archives' widely used loaders (torchvision, others).
OMNIGLOT_ARCHIVES = {
    'images_background.zip': Archive(OMNIGLOT_URL + 'images_background.zip',
                                     ('md5', '68d2efa1b9178cc56df9314c21c6e718')),
    'images_evaluation.zip': Archive(OMNIGLOT_URL + 'images_evaluation.zip',
                                     ('md5', '6b91aef0f799c5bb55b94e3f2daec811')),
}
CHUNK = 1 << 20


class DownloadError(RuntimeError):
  """A failed or unverifiable download; one line naming the URL or file and what to do."""


def file_digest(path, algorithm='sha256'):
  digest = hashlib.new(algorithm)
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(CHUNK), b''):
      digest.update(chunk)
  return digest.hexdigest()


def verify(path, checksum):
  """Raises DownloadError if `path` does not have `checksum` ((algorithm, hex) or None)."""
  if checksum is None:
    return
  algorithm, expected = checksum
  actual = file_digest(path, algorithm)
  if actual != expected:
    raise DownloadError(f'{path} has {algorithm} {actual}, expected {expected}: the file is '
                        'corrupt or not the official archive; delete it and download again')


def download(url, dest, checksum=None, progress=True, timeout=60):
  """Fetches `url` to `dest` unless `dest` already exists and verifies; returns dest."""
  if os.path.exists(dest):
    verify(dest, checksum)
    return dest
  os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
  part = dest + '.part'
  done = os.path.getsize(part) if os.path.exists(part) else 0
  request = urllib.request.Request(url, headers={'Range': f'bytes={done}-'} if done else {})
  try:
    with urllib.request.urlopen(request, timeout=timeout) as response:
      resumed = done and getattr(response, 'status', 200) == 206
      total = response.headers.get('Content-Length')
      total = int(total) + (done if resumed else 0) if total else None
      with open(part, 'ab' if resumed else 'wb') as out, tqdm(
          total=total, initial=done if resumed else 0, unit='B', unit_scale=True,
          desc=os.path.basename(dest), disable=not progress) as bar:
        for chunk in iter(lambda: response.read(CHUNK), b''):
          out.write(chunk)
          bar.update(len(chunk))
  except (urllib.error.URLError, OSError, ValueError) as e:
    reason = getattr(e, 'reason', e)
    raise DownloadError(f'cannot download {url}: {reason}; offline? fetch it elsewhere, copy it '
                        f'to {dest} (or pass --source=FOLDER to data/prepare.py)') from None
  try:
    verify(part, checksum)
  except DownloadError:
    os.remove(part)
    raise
  os.replace(part, dest)
  return dest


def fetch_omniglot(raw_dir, progress=True, archives=None):
  """Downloads (or finds) both Omniglot archives in raw_dir; returns {file name: path}."""
  archives = archives or OMNIGLOT_ARCHIVES
  return {name: download(a.url, os.path.join(raw_dir, name), a.checksum, progress)
          for name, a in archives.items()}
