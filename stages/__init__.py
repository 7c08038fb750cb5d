"""One module per DVC stage; each has `run(params) -> None` doing I/O around pure functions."""
