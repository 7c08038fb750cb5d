"""Training support: the model's inputs assembled from the feature artifacts (`batches.py`), and dvclive's
metric history read back (`history.py`)."""
