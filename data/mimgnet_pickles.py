"""miniImageNet from the two pickle layouts users actually have.

  cache pickles        mini-imagenet-cache-{train,val,test}.pkl: {'image_data': uint8
                       [N, 84, 84, 3], 'class_dict': {wnid: [row indices]}}
  category-split       miniImageNet_category_split_{train_phase_train,val,test}.pickle
  pickles              (Python 2): {'data': uint8 [N, 84, 84, 3], 'labels': [N],
                       'catname2label': {name: label}}

Pickles are read with an unpickler that builds only NumPy arrays and plain containers (a
pickle can run code; these are files from file hosts). A file host's HTML page saved under a
pickle's name is recognized and reported as such.
"""

import os
import pickle

import numpy as np

CACHE = 'mini-imagenet-cache-{}.pkl'
CATEGORY = 'miniImageNet_category_split_{}.pickle'
CATEGORY_PARTS = {'train': 'train_phase_train', 'val': 'val', 'test': 'test'}
_ALLOWED = {('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct'),
            ('numpy.core.multiarray', 'scalar'), ('numpy._core.multiarray', 'scalar'),
            ('numpy', 'ndarray'), ('numpy', 'dtype'), ('_codecs', 'encode'),
            ('collections', 'OrderedDict'), ('builtins', 'set'), ('__builtin__', 'set')}


class PickleError(RuntimeError):
  """An unusable pickle; one line naming the file and what to do."""


class _ArraysOnly(pickle.Unpickler):
  def find_class(self, module, name):
    if (module, name) not in _ALLOWED:
      raise pickle.UnpicklingError(f'it asks for {module}.{name}, which a dataset pickle '
                                   'never holds')
    return super().find_class(module, name)


def load(path: str, what: str = 'miniImageNet'):
  """The object in pickle `path` (NumPy arrays, dicts, lists only; Python 2 pickles too);
  `what` names the file's kind in errors."""
  with open(path, 'rb') as f:
    head = f.read(512).lstrip().lower()
    if head.startswith((b'<!doctype html', b'<html', b'<head', b'<?xml')):
      raise PickleError(f'{path} is an HTML page (a file host\'s error or confirmation page '
                        'saved under the pickle\'s name), not a pickle: download it again')
    f.seek(0)
    try:
      return _ArraysOnly(f, encoding='latin1').load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            ImportError, IndexError) as e:
      raise PickleError(f'{path} is not a readable {what} pickle ({e}); download it '
                        'again') from None


def entry(obj, *names):
  for name in names:  # Python 2 pickles may hold byte-string keys
    for key in (name, name.encode()):
      if key in obj:
        return obj[key]
  raise KeyError(names[0])


def classes_from_cache(obj) -> dict:
  """{wnid: uint8 [n, 84, 84, 3]} of a cache pickle's object."""
  images = np.asarray(entry(obj, 'image_data'))
  return {text(wnid): images[np.asarray(rows)]
          for wnid, rows in sorted(entry(obj, 'class_dict').items(), key=lambda kv: text(kv[0]))}


def classes_from_category(obj) -> dict:
  """{class name: uint8 [n, 84, 84, 3]} of a category-split pickle's object."""
  images, labels = np.asarray(entry(obj, 'data')), np.asarray(entry(obj, 'labels'))
  names = {label: text(name) for name, label in entry(obj, 'catname2label').items()}
  return {names[label]: images[labels == label] for label in sorted(names, key=names.get)}


def text(value):
  return value.decode('latin1') if isinstance(value, bytes) else str(value)


def find(source: str) -> dict:
  """{split: (path, reader)} of the pickles of either layout in folder `source` (empty if
  there are none)."""
  found = {}
  for split in ('train', 'val', 'test'):
    cache = os.path.join(source, CACHE.format(split))
    category = os.path.join(source, CATEGORY.format(CATEGORY_PARTS[split]))
    if os.path.exists(cache):
      found[split] = (cache, classes_from_cache)
    elif os.path.exists(category):
      found[split] = (category, classes_from_category)
  return found


def read(path: str, reader) -> dict:
  """{class: uint8 [n, 84, 84, 3]} of one pickle; PickleError names the file when its content
  is not the layout its name says."""
  obj = load(path)
  try:
    classes = reader(obj)
  except (KeyError, TypeError, IndexError, AttributeError) as e:
    raise PickleError(f'{path} lacks the {e} entry of its layout (see data/mimgnet_pickles.py)'
                      ) from None
  for name, images in classes.items():
    if images.dtype != np.uint8 or images.shape[1:] != (84, 84, 3):
      raise PickleError(f'{path}: class {name} holds {images.dtype} {images.shape}; expected '
                        'uint8 [n, 84, 84, 3]')
  return classes
