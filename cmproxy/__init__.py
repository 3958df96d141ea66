"""cmproxy: manage ConfigMgr site system proxy servers from Python."""

from cmproxy._exceptions import *  # noqa: F403 - the curated error tree
from cmproxy._exceptions import __all__ as _exc_all

__all__ = [*_exc_all]
__version__ = "0.1.0"
