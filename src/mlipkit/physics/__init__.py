"""Physical terms that compose with learned potentials."""

# the model registry imports ZBL: loading the models first keeps that import
# from meeting a half-initialised module when this package is imported first
import mlipkit.models  # noqa: F401
from mlipkit.physics.zbl import ZBL

__all__ = ["ZBL"]
