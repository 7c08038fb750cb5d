"""Where data is read: dataset adapters (`datasets/`), the synthetic benchmark generator (`synthetic/`),
video probing and frame sampling (`video.py`) and frame decoding (`decode.py`)."""
