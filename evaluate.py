"""Meta-test a trained run with the reference protocol (1000 episodes, 95% interval). Example:

  python evaluate.py --savedir=scratch/omni1_metadrop [--n_test_mc_samp=30 --split=test]

The model is rebuilt from <savedir>/config.json; flags given explicitly override it.
"""

from metadrop_tf.cli import launch

if __name__ == '__main__':
  launch.evaluate()
