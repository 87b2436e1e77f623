"""modelreg: a local, git-like model registry.

    import modelreg
    reg = modelreg.Registry.open()
    v = reg.log("ckpt/", name="resnet", aliases=["best"], metadata={"epoch": 3})

Attributes load on first use, so that `import modelreg.cli.entry` (run for every TAB
press) stays as cheap as the interpreter itself.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "Registry": "registry",
    "Error": "errors",
    "InvalidInput": "errors",
    "NotFound": "errors",
    "Conflict": "errors",
    "LockTimeout": "errors",
    "IntegrityError": "errors",
    "LogResult": "records",
    "VersionInfo": "records",
    "CollectionInfo": "records",
    "AliasResult": "records",
    "PullResult": "records",
    "DiffResult": "records",
    "Deleted": "records",
    "FileEntry": "manifest",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'modelreg' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
