"""Weights: where they live, how they are fetched and checked (`resolver`), and the networks that use them."""
from nstdiff.models.resolver import ModelStatus, fetch_model, list_models, model_status, resolve_model

__all__ = ["ModelStatus", "fetch_model", "list_models", "model_status", "resolve_model"]
