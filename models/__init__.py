"""CRA model components, one module per paper component. Imports nothing from `stages/` or `pipeline/`."""
