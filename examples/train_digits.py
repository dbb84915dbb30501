"""Train LeNet-5 on scikit-learn's bundled 8x8 digits (no download) and show its mistakes.

python examples/train_digits.py            # about 10 s on two CPU cores, ~98% test accuracy
"""

from fconv import data, models, train

ds = data.load_digits()  # 1,438 train / 359 test images, (N, 1, 8, 8) in [0, 1]
model = models.lenet5(ds.num_classes, ds.input_shape)

history, state = train.fit(
    model,
    ds,
    epochs=40,
    batch_size=32,
    optimizer={"name": "adam", "learning_rate": 2e-3, "schedule": "cosine"},
    weight_decay=1e-3,
    normalize=True,  # per-channel standardisation with the training set's statistics
    seed=0,
    out_dir="runs/example-digits",  # metrics.jsonl + checkpoints: `fconv eval/plot` read them
    overwrite=True,
    config={"model": "lenet5"},
)

mean, std = data.compute_mean_std(ds.x_train)  # the statistics fit normalised with
loss, acc, pred = train.evaluate(
    model, state.params, state.model_state, data.normalize(ds.x_test, mean, std), ds.y_test
)
print(f"test accuracy {acc:.4f}, loss {loss:.4f}")
print("confusion matrix (rows: true digit, columns: predicted):")
print(train.confusion_matrix(ds.y_test, pred, ds.num_classes))
