"""nbkit: a workbench for comparing image-classification models."""

__version__ = "0.1.0"

from .models import create_model, variant_table  # noqa: E402
from .settings import Settings  # noqa: E402
from .variants import VARIANTS, get_variant, resolve  # noqa: E402

__all__ = ["Settings", "VARIANTS", "create_model", "get_variant", "resolve", "variant_table"]
