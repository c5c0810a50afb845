"""Serve exported SavedModels over TensorFlow Serving's REST API (docs/serving.md). Example:

  python serve.py --export_dir=scratch/exports/omni1 --port=8501

Each --export_dir holds a SavedModel (or numbered version folders; the newest is served) and
is served under its folder name, or --model_name. SIGTERM or Ctrl-C finish the requests in
flight, then stop.
"""

from metadrop_tf.cli import launch

if __name__ == '__main__':
  launch.serve()
