"""metadrop-tf: Meta Dropout (Lee et al., ICLR 2020) and MAML in TensorFlow 2 / Keras 3."""

import re

from setuptools import find_packages
from setuptools import setup

with open('metadrop_tf/__init__.py') as f:
  VERSION = re.search(r'__version__ = ["\']([^"\']+)', f.read()).group(1)

setup(
    name='metadrop-tf',
    version=VERSION,
    description='Meta Dropout and MAML for few-shot learning in TensorFlow 2 / Keras 3',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    python_requires='>=3.10',
    packages=find_packages(include=['metadrop_tf', 'metadrop_tf.*']),
    package_data={'metadrop_tf.export': ['page/*.html', 'page/*.js', 'page/*.css']},
    install_requires=[
        'tensorflow>=2.18',
        'tf-keras>=2.18',  # tensorflow-probability imports it
        'tensorflow-probability>=0.25',
        'tensorboard',
        'numpy',
        'absl-py',
        'Pillow',
        'tqdm',
    ],
    extras_require={
        'plots': ['matplotlib', 'scikit-learn'],
        'serve': ['starlette', 'uvicorn'],
        'test': ['pytest', 'pytest-xdist', 'matplotlib', 'scikit-learn', 'ruff', 'starlette',
                 'uvicorn', 'httpx', 'selenium'],
        'docs': ['mkdocs', 'mkdocs-material'],
    },
    entry_points={'console_scripts': [
        'metadrop-train=metadrop_tf.cli.launch:train',
        'metadrop-evaluate=metadrop_tf.cli.launch:evaluate',
        'metadrop-export=metadrop_tf.cli.launch:export',
        'metadrop-serve=metadrop_tf.cli.launch:serve',
    ]},
)
