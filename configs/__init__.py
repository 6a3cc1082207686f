"""Data files (TOML) shipped with nstdiff; importable as `nstdiff.configs` so installs find them."""
