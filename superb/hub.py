"""Register the project's upstreams (`ehmam`, `ehmam_teacher`, ...) on `s3prl.hub`.

The runner looks upstreams up with `getattr(s3prl.hub, name)`, so setting attributes is enough;
they then also show in `-u` help, `s3prl.hub.options()` and `S3PRLUpstream.available_names()`.
Call after `superb.compat.apply_compat()`: importing `s3prl.hub` needs the shims.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import types

log = logging.getLogger("superb.hub")

HUBCONF_MODULE = "upstream_ehmam.hubconf"


def hubconf_entries(hubconf: types.ModuleType) -> dict[str, object]:
    """The public functions a hubconf defines itself (imported helpers are not upstreams)."""
    return {
        name: value
        for name, value in vars(hubconf).items()
        if not name.startswith("_") and inspect.isfunction(value) and value.__module__ == hubconf.__name__
    }


def register_upstreams(hubconf_module: str = HUBCONF_MODULE) -> list[str]:
    """Set every upstream of `hubconf_module` on `s3prl.hub`; returns the registered names.

    A missing `upstream_ehmam` package is not an error (s3prl's own upstreams still work);
    any other import failure is raised, since it means the upstream is broken.
    """
    import s3prl.hub as hub

    try:
        hubconf = importlib.import_module(hubconf_module)
    except ModuleNotFoundError as error:
        if error.name is None or not hubconf_module.startswith(error.name):
            raise
        log.info("%s not found; only s3prl's own upstreams are available", hubconf_module)
        return []
    entries = hubconf_entries(hubconf)
    for name, factory in entries.items():
        setattr(hub, name, factory)
    return sorted(entries)
