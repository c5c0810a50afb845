"""Data as episodes: shards and their checks, the seeded episode sampler and tf.data pipeline,
generated sinusoid tasks."""
