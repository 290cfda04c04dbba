"""Optional ``torch.compile`` of a potential's inference core.

A potential's atomic energies split into an eager prelude (choosing the
edges within its cutoff, index bookkeeping: shapes that depend on the data)
and a core of tensor operations on those edges, ``_core``. Only the core is
compiled, with dynamic shapes, so most new structures and neighbour lists
run the same code (sizes 0 and 1, e.g. an element with a single atom, are
compiled separately). Compiled code serves energies and their first
derivatives (forces, stress); training on forces and Hessians differentiate
twice and run eager.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mlipkit.models.derivatives import first_order_only


class CompiledCore:
    """Mixin for a :class:`~mlipkit.models.base.Potential` with a ``_core``
    method; :meth:`inference_core` picks the compiled or eager version."""

    _compile_options: dict | None = None
    _compiled: Callable | None = None

    def compile_inference(self, enabled: bool = True, **options):
        """Run the core through ``torch.compile`` (``options`` go to it; shapes
        are dynamic unless they say otherwise). The first call per dtype and
        device compiles (tens of seconds to minutes on a CPU). Copies of the
        module compile again on their first call."""
        self._compile_options = {"dynamic": True, **options} if enabled else None
        self._compiled = None
        return self

    def __getstate__(self) -> dict:
        # the compiled function is bound to this instance: copies and pickles drop it
        state = super().__getstate__()
        state["_compiled"] = None
        return state

    def compiling(self) -> bool:
        """True when compilation is on and only first derivatives will be taken."""
        return self._compile_options is not None and first_order_only()

    def inference_core(self) -> Callable:
        """The compiled ``_core`` when :meth:`compiling`, else ``_core`` itself."""
        if not self.compiling():
            return self._core
        if self._compiled is None:
            self._compiled = torch.compile(self._core, **self._compile_options)
        return self._compiled


def compile_for_inference(model: torch.nn.Module) -> torch.nn.Module:
    """Switch on :meth:`CompiledCore.compile_inference` in every part of
    ``model`` that supports it; returns ``model``."""
    for module in model.modules():
        if isinstance(module, CompiledCore):
            module.compile_inference()
    return model
