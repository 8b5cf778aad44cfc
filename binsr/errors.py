"""Exceptions binsr raises for problems with the user's input.

Every :class:`BinsrError` carries a message that is complete on one line and names the
offending file, key or value; the CLI prints exactly that line and exits non-zero.
"""


class BinsrError(Exception):
    """Base class: a problem with inputs, data, configs or weights (not a bug in binsr)."""


class ImageReadError(BinsrError):
    """An image file is missing, empty, truncated, corrupt or of an unsupported kind."""


class DataError(BinsrError):
    """A dataset folder is empty, or its images do not fit the requested scale or patch size."""


class MetricUnavailable(BinsrError):  # noqa: N818 - a state ("unavailable"), caught by name in the CLI
    """A metric cannot be computed here (e.g. LPIPS without its network weights)."""


class BinsrWarning(UserWarning):
    """Something was changed on the way in (e.g. an alpha channel dropped); work goes on."""
