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

DATASET=${DATASET:-datasets/fashion-mnist}
if [ ! -f "$DATASET/fashion-mnist-r05.tfrecords" ]; then
  .venv/bin/progan-dataset create_mnist "$DATASET" "$FMNIST_DIR" --overwrite
fi

# About 12 minutes of training on 2 CPU cores (DEMO_MINUTES to change it), then a final snapshot.
.venv/bin/progan-train --config=configs/fashion_mnist_cpu.py --dataset_dir="$DATASET" --result_dir=results \
  --config.train.max_time_minutes="${DEMO_MINUTES:-12}"
echo "Images: the newest results/*-cpu-fashion-mnist/fakes*.png (reals.png shows the data)."
