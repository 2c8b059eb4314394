"""progan_tf: Progressive Growing of GANs (Karras et al., ICLR 2018) on TensorFlow 2 / Keras 3."""
from setuptools import find_packages, setup

setup(
    name="progan_tf",
    version="0.1.0",
    description="ProGAN (Progressive Growing of GANs) for TensorFlow 2.21 / Keras 3",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["progan_tf", "progan_tf.*"]),
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.12,<4",
        "tensorflow-datasets>=4.9,<5",
        "numpy>=1.26,<3",
        "pillow>=10,<13",
        "absl-py>=2.1,<3",
        "ml-collections>=1.0,<2",
        "tqdm>=4.66,<5",
        "tensorboard>=2.20,<3",
        "scipy>=1.11,<2",
        "lmdb>=1.4,<3",
        "imageio>=2.31,<3",
        "imageio-ffmpeg>=0.5,<1",
    ],
    extras_require={
        "plot": ["matplotlib>=3.7,<4"],
        "test": ["pytest>=8,<10", "pytest-timeout>=2.3,<3", "matplotlib>=3.7,<4"],
    },
    entry_points={
        "console_scripts": [
            "progan-dataset=progan_tf.datasets.cli:run",
            "progan-metrics=progan_tf.metrics.cli:run",
            "progan-train=progan_tf.train:run",
            "progan-bench=progan_tf.bench:run",
            "progan-export=progan_tf.export:run",
            "progan-generate=progan_tf.generate:run",
            "progan-import=progan_tf.official_import:run",
            "progan-experiment=progan_tf.experiment:run",
        ],
    },
    license="Apache-2.0",
)
