"""Forward hooks on an encoder's neuron sites, registered together and always removed together."""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from torch import nn

#: ``hook(module, inputs, output)``: returns None to observe, or a tensor to replace the site output.
Hook = Callable[[nn.Module, Any, Any], Any]


class SiteHooks:
    """Hooks on ``encoder.get_submodule(site)`` for the given sites.

    Use as a context manager (``with SiteHooks(enc, hooks): ...``) or, from a callback, ``attach()`` when
    a stage starts and ``remove()`` when it ends and on exception. ``remove()`` is idempotent, so every
    exit path may call it.

    Args:
        encoder: the module holding the sites.
        hooks: ``(site, hook)`` pairs; a None hook leaves that site alone.
    """

    def __init__(self, encoder: nn.Module, hooks: Sequence[tuple[str, Optional[Hook]]]) -> None:
        self.encoder = encoder
        self.hooks = [(site, h) for site, h in hooks if h is not None]
        self._handles: list[Any] = []

    def attach(self) -> "SiteHooks":
        self.remove()
        try:
            for site, hook in self.hooks:
                self._handles.append(self.encoder.get_submodule(site).register_forward_hook(hook))
        except BaseException:
            self.remove()
            raise
        return self

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def __enter__(self) -> "SiteHooks":
        return self.attach()

    def __exit__(self, *exc: Any) -> None:
        self.remove()
