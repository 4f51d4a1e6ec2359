"""
From image files to predictions in one Pipeline
===============================================

:class:`skltr.FeatureExtractor` turns image files into features with a
frozen backbone, so a whole long-tailed recognition model is one
scikit-learn ``Pipeline``: fit it on file paths and labels, predict on new
files, search its parameters with ``GridSearchCV``.

So that the example runs anywhere, the images are generated (coloured
squares of three classes, long-tailed: 60, 15 and 4 training images) and the
backbone is skltr's CIFAR ResNet-20 with random weights. With your data,
pass your paths and a pretrained backbone, e.g.
``FeatureExtractor("resnet50")`` or ``FeatureExtractor("torchvision/resnet50")``.
"""

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image
from sklearn.metrics import ConfusionMatrixDisplay, balanced_accuracy_score
from sklearn.pipeline import Pipeline

from skltr import FeatureExtractor, LogitAdjustedClassifier

rng = np.random.default_rng(0)
colours = np.array([[200, 40, 40], [40, 160, 40], [40, 60, 200]])


def write_images(folder, counts):
    """Noisy 32 x 32 images of a coloured square, ``counts[j]`` of class j."""
    paths, labels = [], []
    for label, count in enumerate(counts):
        for i in range(count):
            pixels = rng.integers(0, 80, (32, 32, 3))
            corner = rng.integers(0, 16, 2)
            pixels[corner[0] : corner[0] + 16, corner[1] : corner[1] + 16] = colours[
                label
            ] + rng.integers(-30, 30, 3)
            path = Path(folder) / f"class{label}_{i}.png"
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
            paths.append(str(path))
            labels.append(label)
    return paths, np.array(labels)


folder = tempfile.mkdtemp()
train_dir, test_dir = Path(folder, "train"), Path(folder, "test")
train_dir.mkdir()
test_dir.mkdir()
train_paths, y_train = write_images(train_dir, [60, 15, 4])
test_paths, y_test = write_images(test_dir, [20, 20, 20])

# %%
# The pipeline
# ------------
# ``memory=`` caches the features per image on disk: a grid search or a
# second fit extracts each image once.

pipe = Pipeline(
    [
        (
            "features",
            FeatureExtractor(
                "cifar_resnet20",
                pretrained=False,
                memory=Path(folder, "cache"),
                random_state=0,
                verbose=0,
            ),
        ),
        ("classifier", LogitAdjustedClassifier(random_state=0)),
    ]
)
pipe.fit(train_paths, y_train)
predicted = pipe.predict(test_paths)
print(f"balanced test accuracy: {balanced_accuracy_score(y_test, predicted):.2f}")

# %%
# Predictions on the new files
# ----------------------------

ConfusionMatrixDisplay.from_predictions(y_test, predicted)
plt.show()
