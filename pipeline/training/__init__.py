"""Training support: the model's inputs assembled from the feature artifacts (`batches.py`)."""
