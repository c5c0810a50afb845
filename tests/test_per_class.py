"""evaluation/per_class.py: per-class accuracies beside eval_lib's other outputs."""

import numpy as np
import tensorflow as tf

import helpers
from metadrop_tf import learners
from metadrop_tf.episodes import data
from metadrop_tf.evaluation import eval_lib
from metadrop_tf.evaluation import per_class


def test_class_accuracies_average_to_the_task_accuracy_beside_an_attack(tmp_path):
  from metadrop_tf.episodes import sampling  # pylint: disable=g-import-not-at-top
  from metadrop_tf.evaluation import attacks  # pylint: disable=g-import-not-at-top
  config, _ = helpers.saved_run(tmp_path, maml=True)
  images = data.load_splits(config, ('test',))['test']
  learner = learners.build(config)
  attack = attacks.Attack('linf', (0.1,), steps=1)
  step = eval_lib.make_eval_step(learner, 1, config.seed, attack=attack,
                                 extra=per_class.class_accuracies)
  sampler = sampling.make_sampler(config, 'test', images)
  episode = next(iter(sampling.make_dataset(sampler, 2, 0, 1)))
  out = step(episode, tf.constant(0, tf.int64))
  by_class = out['acc_class'].numpy()
  assert by_class.shape == (2, config.way) and eval_lib.attack_key('linf', 0.1) in out
  hits = by_class * config.query  # whole queries of each class
  np.testing.assert_allclose(hits, np.round(hits), atol=1e-5)
  np.testing.assert_allclose(by_class.mean(axis=1), out['acc'].numpy(), atol=1e-6)
