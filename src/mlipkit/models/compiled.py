"""Optional ``torch.compile`` of a potential's inference core.

A potential's atomic energies split into an eager prelude (choosing the
edges within its cutoff, index bookkeeping: shapes that depend on the data)
and a core of tensor operations on those edges. Only the core is compiled,
with dynamic shapes, so a new structure or neighbour list does not compile
again. Compiled code serves energies and their first derivatives (forces,
stress); training on forces and Hessians differentiate twice and run eager.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mlipkit.models.derivatives import first_order_only


class CompiledCore:
    """Mixin for a :class:`~mlipkit.models.base.Potential` with a ``_core``
    method; :meth:`compiled_or` picks the compiled or eager version."""

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

    def compiled_or(self, core: Callable) -> Callable:
        """The compiled ``core`` when compilation is on and only first
        derivatives will be taken, else ``core`` itself."""
        if self._compile_options is None or not first_order_only():
            return core
        if self._compiled is None:
            self._compiled = torch.compile(core, **self._compile_options)
        return self._compiled
