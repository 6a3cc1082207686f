"""Every model nstdiff knows, looked up by name: the one module that knows which modules define models.

Each of those modules registers its models with the resolver when it is imported; importing them all here means a
lookup by name through this module (or `nstdiff.models`) sees every model, while the resolver holds only the
mechanics (where a file lives, fetching, checking) and imports none of them.
"""
from nstdiff.models import decoders, diffusion_hub, encoders, magenta
from nstdiff.models.resolver import ModelStatus, fetch_model, list_models, model_file, model_status, resolve_model

MODEL_MODULES = (encoders, decoders, magenta, diffusion_hub)  # imported above for their registrations

__all__ = ["MODEL_MODULES", "ModelStatus", "fetch_model", "list_models", "model_file", "model_status", "resolve_model"]
