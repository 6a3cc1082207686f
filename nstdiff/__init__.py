"""nstdiff: style transfer from a browser, a CLI or Python.

    from nstdiff import ImageStyleRequest, stylize
    result = stylize(ImageStyleRequest(content="photo.jpg", styles=["starry_night.jpg"], size=512))
    result.save("out.png")
"""
from nstdiff.errors import Cancelled, InputError, ModelFileError, ModelNotFoundError, NstdiffError
from nstdiff.executor import CancelToken, InProcessExecutor, stylize
from nstdiff.registry import get_method, list_methods, register_method
from nstdiff.schema import (
    Controls,
    ImageStyleRequest,
    PreserveColor,
    ProgressEvent,
    RegionPhrase,
    StyleImage,
    StyleResult,
)
from nstdiff.settings import Settings, get_settings
from nstdiff.version import __version__

__all__ = [
    "__version__", "CancelToken", "Cancelled", "Controls", "ImageStyleRequest", "InProcessExecutor", "InputError",
    "ModelFileError", "ModelNotFoundError", "NstdiffError", "PreserveColor", "ProgressEvent", "RegionPhrase",
    "Settings", "StyleImage", "StyleResult", "get_method", "get_settings", "list_methods", "register_method", "stylize",
]
