"""``python -m progan_tf.datasets``: the ``progan-dataset`` command."""
from progan_tf.datasets.cli import run

run()
