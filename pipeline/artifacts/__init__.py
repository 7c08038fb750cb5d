"""Where artifacts are defined and written: every Parquet schema (`schemas.py`), the generic Parquet
I/O with metadata (`parquet.py`), one reader/writer module per feature artifact (`visual_features.py`,
`text_features.py`, `confounders.py`), the part files of a multi-process run and feature checksums
(`shards.py`), model checkpoints (`checkpoint.py`) and `cra inspect` (`inspect.py`)."""
