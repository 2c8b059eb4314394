#!/usr/bin/env bash
# The README's main command (`make demo`): the built-in default run on Fashion-MNIST, on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
FMNIST_DIR=${FMNIST_DIR:-/usr/share/datasets/fashion-mnist}

if [ ! -f "$FMNIST_DIR/train-images-idx3-ubyte.gz" ]; then
  echo "Fashion-MNIST not found in $FMNIST_DIR: installing Debian's dataset-fashion-mnist package"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get install -y dataset-fashion-mnist || {
    echo "error: could not install dataset-fashion-mnist; put the four Fashion-MNIST IDX .gz files in a" >&2
    echo "       directory and run: FMNIST_DIR=<that directory> make demo" >&2
    exit 1; }
fi

# Until the trainer lands, the demo builds the Fashion-MNIST networks and prints their sizes per stage.
$PY -m progan_tf.networks --resolution=32 --num_channels=1 --label_size=10 --fmap_base=2048 --fmap_max=256
