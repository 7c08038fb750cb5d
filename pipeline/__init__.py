"""Pipeline infrastructure: typed config, table schemas and I/O, the CLI, runtime helpers, datasets."""
