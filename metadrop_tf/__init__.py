"""metadrop-tf: Meta Dropout (Lee et al., ICLR 2020) and MAML in TensorFlow 2 / Keras 3."""

__version__ = "0.1.0"
