"""Train a small ResNet on CIFAR-10 from the binary batches (cifar-10-binary.tar.gz, extracted).

    python examples/train_cifar10.py ~/data/cifar-10-batches-bin [--epochs 30]

The folder holds data_batch_1.bin .. data_batch_5.bin and test_batch.bin. Training uses random
4-pixel shifts and horizontal flips; on a CPU expect minutes per epoch (a GPU is much faster).
"""

import argparse

from fconv import data, models, train

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("data_dir")
parser.add_argument("--epochs", type=int, default=30)
args = parser.parse_args()

ds = data.load_cifar10(args.data_dir)  # (N, 3, 32, 32) in [0, 1]
model = models.resnet_small(ds.num_classes, ds.input_shape)  # BatchNorm state is threaded by fit

history, state = train.fit(
    model,
    ds,
    epochs=args.epochs,
    batch_size=128,
    optimizer={"name": "momentum", "learning_rate": 0.1, "schedule": "cosine", "warmup_steps": 390},
    weight_decay=5e-4,
    augment=train.make_augment(crop_padding=4, flip=True),
    normalize=True,
    seed=0,
    out_dir="runs/example-cifar10",
    resume=True,
    config={"model": "resnet_small", "data": "cifar10", "data_dir": args.data_dir},
)
print(f"final test accuracy {history[-1]['test_acc']:.4f}")
