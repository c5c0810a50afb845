"""TF's graph rewrites (grappler): kept by default, turned off for bitwise-reproducible runs.

Measured (docs/reproducing.md, "A rerun is not the same run"): with grappler's default
passes, two processes given the same flags and episodes compute meta-gradients that differ in
the last bits (about 1e-7 relative) from Omniglot 5-way, 4-task, 5-step shapes up, and Adam
turns those differences into diverging trajectories. With every grappler pass off, the
processes agreed bitwise. Turning off the arithmetic optimizer alone did not suffice.
"""

from absl import logging
import tensorflow as tf

from metadrop_tf import config as config_lib

# The one grappler option that turns every pass off.
OFF_OPTION = 'disable_meta_optimizer'


def configure(config: config_lib.Config) -> None:
  """Turns grappler off when config.bitwise_reproducible; call before the first tf.function
  is traced (functions traced earlier keep the rewrites they were optimized with)."""
  if config.bitwise_reproducible:
    tf.config.optimizer.set_experimental_options({OFF_OPTION: True})
    logging.info('bitwise_reproducible: TF graph rewrites (grappler) off')


def rewrites_off() -> bool:
  """Whether this process has grappler's passes turned off."""
  return bool(tf.config.optimizer.get_experimental_options().get(OFF_OPTION))
