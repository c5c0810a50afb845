"""ResNet-12: shapes and parameter counts against the arithmetic, Meta Dropout's noise on it,
second-order meta-gradients against finite differences, and --describe."""

import numpy as np
import pytest
import tensorflow as tf

import helpers
from metadrop_tf import learners
from metadrop_tf.nets import resnet

SEED = tf.constant([3, 5], tf.int32)
TINY_WIDTHS = (2, 3, 2, 2)


def _expected_counts(image_channels, widths, way):
  """Per stage: three 3x3 convs (C_in -> w, w -> w, w -> w) and a 1x1 shortcut in theta, no
  biases; phi mirrors the 3x3 convs, with biases; four batch-norm offsets of w in beta. Head:
  [w_3, N] + [N] in theta, [w_3, 1] + [1] in phi."""
  theta = phi = beta = 0
  c_in = image_channels
  for w in widths:
    three_by_three = 9 * c_in * w + 9 * w * w + 9 * w * w
    theta += three_by_three + 1 * 1 * c_in * w
    phi += three_by_three + 3 * w
    beta += 4 * w
    c_in = w
  return {'theta': theta + c_in * way + way, 'phi': phi + c_in + 1, 'beta': beta}


def _count(group):
  return sum(int(np.prod(v.shape)) for v in group.values())


@pytest.mark.parametrize('image_shape, widths, way, maps', [
    ((28, 28, 1), resnet.WIDTHS, 20, (14, 7, 3, 1)),  # Omniglot
    ((84, 84, 3), resnet.WIDTHS, 5, (42, 21, 10, 5)),  # miniImageNet / tiered
    ((84, 84, 3), resnet.LIGHT_WIDTHS, 5, (42, 21, 10, 5)),
])
@pytest.mark.slow
def test_shapes_and_parameter_counts(image_shape, widths, way, maps):
  net = resnet.ResNet12(way, image_shape, widths)
  expected = _expected_counts(image_shape[-1], widths, way)
  assert {g: _count(getattr(net, g)) for g in ('theta', 'phi', 'beta')} == expected
  x = tf.zeros((2,) + image_shape)
  outputs = net.stage_outputs(x)
  assert [tuple(o.shape) for o in outputs] == [(2, m, m, w) for m, w in zip(maps, widths)]
  assert net.features(x).shape == (2, widths[-1])
  assert net(x, sample=True, seed=SEED, copies=3).shape == (6, way)


def test_the_default_resnet12_has_the_usual_size():
  # 12.4M parameters for 64-160-320-640 (the figure few-shot papers quote), head excluded.
  counts = _expected_counts(3, resnet.WIDTHS, 0)
  assert 12.3e6 < counts['theta'] < 12.5e6


def _tiny(noisy=True, way=3):
  return resnet.ResNet12(way, helpers.TINY_IMAGE, TINY_WIDTHS, noisy=noisy, dtype='float64',
                         seed=1)


def test_noise_multiplies_every_3x3_conv_and_the_head():
  net = _tiny()
  x = helpers.random_episode().query_x[0]
  scales = net.noise_scales(x)
  assert sorted(scales) == sorted([f'stage{s}_conv{c}' for s in range(4) for c in 'abc']
                                  + ['logit_sigma'])
  assert scales['stage1_convb'].shape == (x.shape[0], 8, 8, 3)  # stage 1 runs at 16 / 2
  deterministic = net(x)
  noisy = [net(x, sample=True, seed=tf.constant([0, s], tf.int32)) for s in range(2)]
  assert not np.allclose(noisy[0], noisy[1])
  assert not np.allclose(noisy[0], deterministic)
  np.testing.assert_array_equal(net(x, sample=True, seed=SEED), net(x, sample=True, seed=SEED))
  assert _tiny(noisy=False).noise_scales(x) == {}


def test_monte_carlo_copies_are_normalized_apart():
  net = _tiny(noisy=False)
  x = helpers.random_episode().query_x[0]
  np.testing.assert_allclose(net(x, copies=3), np.tile(net(x), (3, 1)), rtol=1e-12)


def test_fast_weights_equal_the_variables():
  net = _tiny()
  x = helpers.random_episode().query_x[0]
  np.testing.assert_array_equal(net(x, theta=net.initial_theta()), net(x))


@pytest.mark.parametrize('name, group, variable', [
    ('metadrop', 'theta', 'stage1_convb_kernel'),
    ('metadrop', 'theta', 'stage0_shortcut_kernel'),
    ('metadrop', 'phi', 'stage0_conva_kernel'),
    ('metadrop', 'phi', 'dense_kernel'),
    ('metadrop', 'beta', 'stage2_bnc'),
    ('maml', 'theta', 'stage3_convc_kernel'),
    ('maml', 'beta', 'stage1_bnshortcut'),
])
@pytest.mark.slow
def test_second_order_meta_gradient_matches_finite_differences(name, group, variable):
  network = _tiny(noisy=name != 'maml')
  learner = learners.REGISTRY[name](network, 2, 0.2)
  helpers.check_against_finite_differences(
      learner, helpers.random_episode(metabatch=1), getattr(network, group)[variable])


def test_describe_prints_the_counts(capsys):
  assert helpers.run_program('train', '--describe', '--backbone=resnet12',
                             '--resnet_widths=64,128,256,512', '--dataset=mimgnet',
                             '--way=5') == 0
  out = capsys.readouterr().out
  expected = _expected_counts(3, resnet.LIGHT_WIDTHS, 5)
  assert f"theta   {expected['theta']:>14,}" in out
  assert f"phi     {expected['phi']:>14,}" in out
  assert 'stage3_convc_kernel' in out and '(3, 3, 512, 512)' in out
  assert out.startswith('resnet12 --resnet_widths=64,128,256,512, mimgnet (84, 84, 3) 5-way')


def test_channels_with_resnet12_is_one_line():
  with pytest.raises(Exception, match='`channels=4` does not apply to `backbone=resnet12`'):
    learners.check(helpers.tiny_config(backbone='resnet12', channels=4))
  with pytest.raises(Exception, match='`resnet_widths=.*` must be four positive integers'):
    helpers.tiny_config(backbone='resnet12', channels=0, resnet_widths='64,128')


def test_deterministic_forward_keeps_the_noise_mean_factor():
  net = _tiny()
  x = helpers.random_episode().query_x[0]
  before = net(x).numpy()
  net.phi['stage1_convb_bias'].assign_add(tf.fill([3], tf.constant(0.5, tf.float64)))
  assert not np.allclose(net(x), before)  # softplus(alpha) multiplies the conv's output


def test_inductive_batch_norm_meta_gradient_and_independence():
  # Two support images per class: with one, the query's activations, normalized by the
  # statistics of 3 support images, grow through the 16 norms of this random net (logits
  # ~1e219, README "Batch-norm modes").
  network = _tiny()
  learner = learners.REGISTRY['metadrop'](network, 2, 0.2, bn_mode='inductive')
  episode = helpers.random_episode(metabatch=1, shot=2, query=3)
  helpers.check_against_finite_differences(learner, episode,
                                           network.theta['stage2_conva_kernel'])
  state = learner.adapt(episode.support_x[0], episode.support_y[0], SEED)[-1]
  query = episode.query_x[0]
  alone = learner.predict(state, query[:1])[0]
  np.testing.assert_allclose(learner.predict(state, query)[0], alone, rtol=1e-12, atol=1e-14)
