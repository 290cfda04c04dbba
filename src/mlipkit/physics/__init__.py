"""Physical terms that compose with learned potentials."""

from mlipkit.physics.zbl import ZBL

__all__ = ["ZBL"]
