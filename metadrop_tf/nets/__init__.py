"""The networks on one interface (network.py): conv-4 (model.py), ResNet-12, the sinusoid MLP;
their layers and noise."""
