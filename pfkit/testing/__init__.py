"""Public test helpers: fakes users can use in their own tests too."""

from ._echo import EchoModel

__all__ = ["EchoModel"]
