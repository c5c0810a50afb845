"""Where and how a run executes: the tf.distribute strategy, the run directory and its
checkpoints, the thread pools."""
