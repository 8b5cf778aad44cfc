"""Training recipes shipped as named presets (YAML)."""
