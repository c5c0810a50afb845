"""Export a trained run. Examples:

  python export.py --savedir=scratch/omni1_metadrop --export_dir=scratch/export_omni1   # SavedModel
  python export.py --savedir=scratch/omni1_metadrop --mode=visualize             # dump + plots
"""

from metadrop_tf.cli import launch

if __name__ == '__main__':
  launch.export()
