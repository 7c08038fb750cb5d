"""Where scores are computed: NExT-GQA's official metrics and result files (`scoring.py`), and running
a model over a split, grounding and scoring it (`predict.py`)."""
