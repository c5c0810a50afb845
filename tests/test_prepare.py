"""Tests of data/download.py and data/prepare.py on archives and folders built here."""

import hashlib
import io
import json
import os
import zipfile

import numpy as np
from PIL import Image
import pytest

from data import download
from data import prepare
import helpers
from metadrop_tf.episodes import data as data_lib

ALPHABETS = {'background': ['Alpha', 'Beta'], 'evaluation': ['Gamma']}
CHARS_PER_ALPHABET = 2


def _png(seed):
  rng = np.random.default_rng(seed)
  image = Image.fromarray(rng.random((105, 105)) > 0.1)  # mode "1", True = white
  buffer = io.BytesIO()
  image.save(buffer, format='PNG')
  return buffer.getvalue()


def _fake_omniglot_files():
  """{'images_<set>/Alphabet/characterNN/XXXX_YY.png': png bytes}, 6 characters."""
  files, cid = {}, 0
  for set_name, alphabets in ALPHABETS.items():
    for alphabet in alphabets:
      for nn in range(1, CHARS_PER_ALPHABET + 1):
        cid += 1
        for drawer in range(1, 21):
          name = f'images_{set_name}/{alphabet}/character{nn:02d}/{cid:04d}_{drawer:02d}.png'
          files[name] = _png(cid * 100 + drawer)
  return files


def _write_zips(folder, files):
  os.makedirs(folder, exist_ok=True)
  for set_name in ALPHABETS:
    with zipfile.ZipFile(os.path.join(folder, f'images_{set_name}.zip'), 'w') as archive:
      for name, payload in files.items():
        if name.startswith(f'images_{set_name}/'):
          archive.writestr(name, payload)


def test_omniglot_from_archives_follows_the_documented_preprocessing(tmp_path):
  files = _fake_omniglot_files()
  _write_zips(str(tmp_path / 'raw'), files)
  out = str(tmp_path / 'out')
  prepare.main(['--source', str(tmp_path / 'raw'), '--out_dir', out,
                '--n_train_characters=4'])
  train = np.load(os.path.join(out, 'train.npz'))['images']
  test = np.load(os.path.join(out, 'test.npz'))['images']
  assert train.shape == (16, 20, 28, 28) and test.shape == (8, 20, 28, 28)
  assert train.dtype == np.uint8
  splits = json.load(open(os.path.join(out, 'splits.json')))
  names = sorted({'/'.join(n.split('/')[1:3]) for n in files})
  perm = np.random.default_rng(0).permutation(len(names))
  assert splits['train'] == [names[i] for i in perm[:4]]
  assert splits['test'] == [names[i] for i in perm[4:]]
  first = splits['train'][0]
  png = next(v for k, v in files.items() if f'/{first}/' in k and k.endswith('_03.png'))
  gray = np.asarray(Image.open(io.BytesIO(png)).convert('L').resize(
      (28, 28), Image.Resampling.LANCZOS))
  np.testing.assert_array_equal(train[0, 2], 255 - gray)  # drawer 03 -> index 2
  np.testing.assert_array_equal(train[1, 2], np.rot90(255 - gray))  # class 1: 90 deg CCW
  # The extracted folders give the same shards.
  for name, payload in files.items():
    path = tmp_path / 'extracted' / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
  prepare.main(['--source', str(tmp_path / 'extracted'), '--out_dir', str(tmp_path / 'o2'),
                '--n_train_characters=4'])
  np.testing.assert_array_equal(np.load(str(tmp_path / 'o2' / 'train.npz'))['images'], train)


def test_prepare_downloads_when_no_source(tmp_path, monkeypatch):
  _write_zips(str(tmp_path / 'server'), _fake_omniglot_files())
  archives = {}
  for name in download.OMNIGLOT_ARCHIVES:
    path = str(tmp_path / 'server' / name)
    archives[name] = download.Archive('file://' + path,
                                      ('md5', download.file_digest(path, 'md5')))
  monkeypatch.setattr(download, 'OMNIGLOT_ARCHIVES', archives)
  out = str(tmp_path / 'out')
  prepare.main(['--out_dir', out, '--raw_dir', str(tmp_path / 'raw'), '--n_train_characters=4'])
  assert sorted(os.listdir(tmp_path / 'raw')) == sorted(archives)
  assert data_lib.load_split(out, 'test', (28, 28, 1)).shape == (8, 20, 28, 28, 1)
  listed = json.load(open(os.path.join(out, 'manifest.json')))['files']
  assert sorted(listed) == ['test.npz', 'train.npz']
  assert listed['train.npz'] == {'bytes': os.path.getsize(os.path.join(out, 'train.npz')),
                                 'sha256': download.file_digest(os.path.join(out, 'train.npz'))}
  # --normalize's statistics of the train shard, stored with the shards.
  stats = json.load(open(os.path.join(out, 'channel_stats.json')))
  train = data_lib.load_split(out, 'train', (28, 28, 1)) / 255.0
  np.testing.assert_allclose(stats['mean'], [train.mean()], rtol=1e-9)
  np.testing.assert_allclose(stats['std'], [train.std()], rtol=1e-9)


def test_a_failed_download_leaves_no_empty_folders(tmp_path, monkeypatch, capsys):
  archives = {name: download.Archive('http://127.0.0.1:9/' + name)
              for name in download.OMNIGLOT_ARCHIVES}
  monkeypatch.setattr(download, 'OMNIGLOT_ARCHIVES', archives)
  out, raw = tmp_path / 'data' / 'omniglot', tmp_path / 'data' / 'raw'
  with pytest.raises(SystemExit, match='cannot download http://127.0.0.1:9/'):
    prepare.main(['--out_dir', str(out), '--raw_dir', str(raw)])
  assert not out.exists() and not raw.exists()
  assert '\r' not in capsys.readouterr().err  # no progress bars outside a terminal


def test_download_verifies_skips_and_never_leaves_half_files(tmp_path):
  source = tmp_path / 'file.bin'
  source.write_bytes(b'x' * 5000)
  digest = ('sha256', hashlib.sha256(b'x' * 5000).hexdigest())
  dest = str(tmp_path / 'raw' / 'file.bin')
  (tmp_path / 'raw').mkdir()
  (tmp_path / 'raw' / 'file.bin.part').write_bytes(b'garbage from an interrupted run')
  assert download.download('file://' + str(source), dest, digest, progress=False) == dest
  assert open(dest, 'rb').read() == b'x' * 5000 and not os.path.exists(dest + '.part')
  source.write_bytes(b'changed')  # an existing verified file is not fetched again
  assert download.download('file://' + str(source), dest, digest, progress=False) == dest
  bad = str(tmp_path / 'raw' / 'bad.bin')
  with pytest.raises(download.DownloadError, match='bad.bin.part has sha256'):
    download.download('file://' + str(source), bad, digest, progress=False)
  assert not os.path.exists(bad) and not os.path.exists(bad + '.part')


def test_offline_download_names_the_url_and_the_way_out(tmp_path):
  with pytest.raises(download.DownloadError) as err:
    download.download('http://127.0.0.1:9/images_background.zip',
                      str(tmp_path / 'a.zip'), timeout=5, progress=False)
  message = str(err.value)
  assert 'http://127.0.0.1:9/images_background.zip' in message and '--source' in message
  assert '\n' not in message


@pytest.mark.parametrize('argv, words', [
    (['--dataset=imagenet'], "argument --dataset: invalid choice: 'imagenet'"),
    (['--n_train_characters=x'], "argument --n_train_characters: invalid int value: 'x'"),
    (['--bogus=1'], 'unrecognized arguments: --bogus=1'),
])
def test_bad_options_are_one_line_errors(argv, words, capsys):
  with pytest.raises(SystemExit) as exit_info:
    prepare.main(argv)
  assert exit_info.value.code == 2
  lines = capsys.readouterr().err.splitlines()
  assert len(lines) == 1 and lines[0].startswith(f'error: {words}'), lines
  assert lines[0].endswith('(--help lists the options)')


def test_bad_sources_are_one_line_errors(tmp_path, capsys):
  (tmp_path / 'empty').mkdir()
  with pytest.raises(SystemExit) as exit_info:
    prepare.main(['--source', str(tmp_path / 'empty'), '--out_dir', str(tmp_path / 'o')])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert err.startswith('error: ') and 'neither images_background.zip' in err
  assert len(err.splitlines()) == 1
  (tmp_path / 'zips').mkdir()
  for s in ('background', 'evaluation'):
    (tmp_path / 'zips' / f'images_{s}.zip').write_bytes(b'not a zip')
  with pytest.raises(SystemExit, match='not a valid zip archive'):
    prepare.main(['--source', str(tmp_path / 'zips'), '--out_dir', str(tmp_path / 'o')])


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(os.path.join(helpers.SHARED_OMNIGLOT, 'source')),
                    reason='needs ../shared/data/omniglot/source')
def test_real_omniglot_source_rebuilds_the_shared_shards(tmp_path):
  out = str(tmp_path / 'omniglot')
  prepare.main(['--source', os.path.join(helpers.SHARED_OMNIGLOT, 'source'), '--out_dir', out])
  readme = open(os.path.join(helpers.SHARED_OMNIGLOT, 'README.md')).read()
  for split in ('train', 'test'):
    images = np.load(os.path.join(out, f'{split}.npz'))['images']
    digest = hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()
    assert f'- {split} images: `{digest}`' in readme


def _jpeg(path, seed, size=(100, 90)):
  rng = np.random.default_rng(seed)
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def test_mimgnet_from_folders_and_csv(tmp_path):
  layout = {'train': ['n01', 'n02', 'n03'], 'val': ['n04', 'n05'], 'test': ['n06', 'n07']}
  rows = {}
  for split, wnids in layout.items():
    for c, wnid in enumerate(wnids):
      for i in range(4):
        name = f'{wnid}{i:08d}.jpg'
        _jpeg(tmp_path / 'folders' / split / wnid / name, c * 10 + i)
        _jpeg(tmp_path / 'flat' / 'images' / name, c * 10 + i)
        rows.setdefault(split, []).append(f'{name},{wnid}')
  for split, lines in rows.items():
    (tmp_path / 'flat' / f'{split}.csv').write_text('filename,label\n' + '\n'.join(lines) + '\n')
  prepare.main(['--dataset=mimgnet', '--source', str(tmp_path / 'folders'),
                '--out_dir', str(tmp_path / 'a')])
  prepare.main(['--dataset=mimgnet', '--source', str(tmp_path / 'flat'),
                '--out_dir', str(tmp_path / 'b')])
  for split, wnids in layout.items():
    a = data_lib.load_split(str(tmp_path / 'a'), split, (84, 84, 3))
    b = data_lib.load_split(str(tmp_path / 'b'), split, (84, 84, 3))
    assert isinstance(a, np.memmap) and a.shape == (len(wnids), 4, 84, 84, 3)
    np.testing.assert_array_equal(a, b)
  assert json.load(open(tmp_path / 'a' / 'splits.json'))['val'] == ['n04', 'n05']
  first = Image.open(tmp_path / 'folders' / 'train' / 'n01' / 'n0100000000.jpg').convert('RGB')
  expected = np.asarray(first.resize((84, 84), Image.Resampling.LANCZOS))
  train = data_lib.load_split(str(tmp_path / 'a'), 'train', (84, 84, 3))
  np.testing.assert_array_equal(train[0, 0], expected)


def test_mimgnet_reference_npy_and_unequal_classes(tmp_path):
  src = tmp_path / 'ref'
  src.mkdir()
  values = np.random.default_rng(0).random((2, 3, 84 * 84 * 3)).astype(np.float32)
  np.save(src / 'train.npy', values)
  np.save(src / 'test.npy', (values * 255).astype(np.uint8))
  prepare.main(['--dataset=mimgnet', '--source', str(src), '--out_dir', str(tmp_path / 'o')])
  train = data_lib.load_split(str(tmp_path / 'o'), 'train', (84, 84, 3))
  np.testing.assert_array_equal(train.reshape(2, 3, -1), np.rint(values * 255).astype(np.uint8))
  _jpeg(tmp_path / 'uneven' / 'train' / 'n01' / 'a.jpg', 0)
  _jpeg(tmp_path / 'uneven' / 'train' / 'n02' / 'a.jpg', 1)
  _jpeg(tmp_path / 'uneven' / 'train' / 'n02' / 'b.jpg', 2)
  with pytest.raises(SystemExit, match='different image counts'):
    prepare.main(['--dataset=mimgnet', '--source', str(tmp_path / 'uneven'),
                  '--out_dir', str(tmp_path / 'u')])
