"""Where features are made: the open_clip frame encoder (`visual.py`) and how frames of many videos are
batched for it (`frame_batches.py`), the text encoder (`text.py`), the dependency parsers
(`dependency_parsers.py`) and the 8-node semantic graphs built from their parses (`semantic_graph.py`)."""
