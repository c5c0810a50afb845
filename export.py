"""Export a trained run. Examples:

  python export.py --savedir=runs/omni1_metadrop --export_dir=exports/omni1   # SavedModel
  python export.py --savedir=runs/omni1_metadrop --mode=visualize             # dump + plots
"""

from metadrop_tf import main

if __name__ == '__main__':
  main.export()
