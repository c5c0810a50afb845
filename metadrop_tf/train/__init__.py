"""Meta-training: the traced outer step, the resumable loop, reporting, tf.distribute, the run
directory and its checkpoints."""
