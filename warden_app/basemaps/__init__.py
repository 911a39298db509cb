"""Base maps: what every map of fieldsync draws under its records (TILE_URL or none)."""
