"""Meta-train a learner (Meta Dropout, MAML, Meta-SGD, ANIL, ...). Example:

  python train.py --flagfile=configs/omniglot_1shot_metadrop.cfg --savedir=scratch/omni1_metadrop

Rerunning the same command resumes from the last checkpoint.
"""

from metadrop_tf.cli import launch

if __name__ == '__main__':
  launch.train()
