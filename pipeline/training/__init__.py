"""Training support: the model's inputs assembled from the feature artifacts (`batches.py`), the resume
state of a killed run (`resume.py`), and DistributedDataParallel training under torchrun (`distributed.py`)."""
