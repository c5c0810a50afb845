"""Tests of the shard manifest: sizes and sha256 written by data/prepare.py, checked on load."""

from metadrop_tf.episodes import manifest


def test_round_trip_and_what_it_catches(tmp_path):
  (tmp_path / 'a.npz').write_bytes(b'12345')
  manifest.write(str(tmp_path), ['a.npz'])
  assert manifest.check(str(tmp_path / 'a.npz')) is None
  assert manifest.check(str(tmp_path / 'unlisted.npz')) is None
  (tmp_path / 'a.npz').write_bytes(b'1234')
  assert 'has 4 bytes' in manifest.check(str(tmp_path / 'a.npz'))
  (tmp_path / 'a.npz').write_bytes(b'12346')
  assert 'does not match the sha256' in manifest.check(str(tmp_path / 'a.npz'))
  (tmp_path / 'manifest.json').write_text('{')
  assert 'cannot be read' in manifest.check(str(tmp_path / 'a.npz'))
