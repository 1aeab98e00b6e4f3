"""The scikit-learn anchor of scripts/bench-model.sh: TF-IDF (word 1-2 +
char_wb 2-5, sublinear tf) + LogisticRegression, trained on one labeled
file and scored on another, printed as JSON (macro-F1, accuracy, ECE over
15 equal-width bins, seconds to train and to predict).

    python3 scripts/anchor_sklearn.py TRAIN.csv TEST.csv
"""
import csv
import json
import sys
import time

import numpy as np
from scipy.sparse import hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score


def read(path):
    with open(path, newline="", encoding="utf-8") as f:
        sample = f.readline()
        f.seek(0)
        delimiter = ";" if sample.count(";") > sample.count(",") else ","
        rows = list(csv.DictReader(f, delimiter=delimiter))
    return [r["description"] for r in rows], [r["category"] for r in rows]


def ece(confidence, correct, bins=15):
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            total += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(total)


def main():
    train_x, train_y = read(sys.argv[1])
    test_x, test_y = read(sys.argv[2])
    started = time.perf_counter()
    words = TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True)
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)
    x = hstack([words.fit_transform(train_x), chars.fit_transform(train_x)]).tocsr()
    model = LogisticRegression(max_iter=1000)
    model.fit(x, train_y)
    trained = time.perf_counter() - started
    started = time.perf_counter()
    xt = hstack([words.transform(test_x), chars.transform(test_x)]).tocsr()
    proba = model.predict_proba(xt)
    predicted = model.classes_[proba.argmax(axis=1)]
    predicting = time.perf_counter() - started
    correct = (predicted == np.array(test_y)).astype(float)
    print(json.dumps({
        "model": "scikit-learn TF-IDF word 1-2 + char_wb 2-5 (sublinear) + LogisticRegression",
        "train_rows": len(train_x),
        "test_rows": len(test_x),
        "macro_f1": f1_score(test_y, predicted, average="macro"),
        "accuracy": accuracy_score(test_y, predicted),
        "ece": ece(proba.max(axis=1), correct),
        "train_seconds": trained,
        "predict_seconds": predicting,
    }))


if __name__ == "__main__":
    main()
