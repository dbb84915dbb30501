"""Train LeNet-5 on MNIST or Fashion-MNIST from the four IDX files (raw or .gz) in a folder.

    python examples/train_mnist.py ~/data/mnist [--fashion]

The folder holds train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
t10k-labels-idx1-ubyte. The same run from the command line (the CLI's default weight decay is
0.001; this script uses none):
``fconv train --data mnist --data-dir ~/data/mnist --epochs 5 --batch-size 128 --lr 1e-3
--weight-decay 0``.
"""

import sys

from fconv import data, models, train

if len(sys.argv) < 2:
    sys.exit("usage: python examples/train_mnist.py IDX_DIR [--fashion]")
fashion = "--fashion" in sys.argv[2:]
ds = data.load_mnist(sys.argv[1], "fashion_mnist" if fashion else "mnist")
model = models.lenet5(ds.num_classes, ds.input_shape)  # (1, 28, 28): 28 -> 14 -> 7

history, state = train.fit(
    model,
    ds,
    epochs=5,
    batch_size=128,
    optimizer={"name": "adam", "learning_rate": 1e-3, "schedule": "cosine"},
    normalize=True,
    seed=0,
    out_dir=f"runs/example-{ds.name}",
    resume=True,  # rerun the script after an interruption: it continues where it stopped
    config={"model": "lenet5", "data": "fashion-mnist" if fashion else "mnist"},
)
print(f"final test accuracy {history[-1]['test_acc']:.4f}")
