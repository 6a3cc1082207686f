"""Diffusion: the model catalogue and style presets (data in `configs/`), model resolution, shared pipelines."""
