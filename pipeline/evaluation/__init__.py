"""Where scores are computed: NExT-GQA's official metrics and result files (`scoring.py`), running a model
over a split, grounding and scoring it (`predict.py`), attention and shortcut diagnostics (`diagnostics.py`),
and the pictures of training and evaluation (`plots.py`)."""
