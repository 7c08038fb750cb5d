"""Training support: the model's inputs assembled from the feature artifacts (`batches.py`), the resume
state of a killed run (`resume.py`), DistributedDataParallel training under torchrun (`distributed.py`), and
dvclive's metric history read back (`history.py`)."""
