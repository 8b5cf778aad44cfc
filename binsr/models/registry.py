"""The registries of :mod:`binsr.models`: network types and autoencoders, by the names model files use.

    @register_network("my_unet", MyUNetConfig)
    class MyUNet(Denoiser): ...

A plugin package registers its own from a module named in the ``binsr.networks`` (or
``binsr.autoencoders``) entry-point group; a model file can only name what is registered.
"""

from __future__ import annotations

from collections.abc import Callable

from binsr.utils.registry import ComponentType, Registry

NETWORKS: Registry[ComponentType] = Registry("network type", "binsr.networks")
AUTOENCODERS: Registry[ComponentType] = Registry("autoencoder", "binsr.autoencoders")


def register_network(name: str, config: type) -> Callable[[type], type]:
    """Class decorator: a :class:`~binsr.models.denoiser.Denoiser` built as ``cls(config)``."""
    return NETWORKS.decorator(name, lambda cls: ComponentType(name, config, cls))


def register_autoencoder(name: str, config: type) -> Callable[[type], type]:
    """Class decorator: an :class:`~binsr.models.autoencoder.Autoencoder` built as ``cls(config)``."""
    return AUTOENCODERS.decorator(name, lambda cls: ComponentType(name, config, cls))
