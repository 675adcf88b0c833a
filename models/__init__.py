"""Torch modules, data loading and training for bachbridge's engines, and the shipped `.onnx` files.

Importing this package must not import torch: the runtime (`bridge`) only asks it where the
shipped models are. The torch modules live in submodules (`models.coconet`, ...).
"""
from pathlib import Path

MODEL_DIR = Path(__file__).resolve().parent

# model name -> file shipped in this package
SHIPPED_MODELS = {
    "coconet": "coconet.onnx",
    "coconet-live": "coconet-live.onnx",
    "rnnrbm": "rnnrbm.onnx",
    "biaxial": "biaxial.onnx",
    "phrase": "phrase.onnx",
}
# the shipped models that fill in voices under a given melody: the phrase engine's harmonizers
FILLING_MODELS = ("coconet", "coconet-live", "rnnrbm", "biaxial")


def shipped_model(name: str) -> Path:
    """Path of a model that ships with the package, by name (`coconet`, `coconet-live`, ...)."""
    try:
        return MODEL_DIR / SHIPPED_MODELS[name]
    except KeyError:
        raise KeyError(f"no shipped model named {name!r}; known: {', '.join(SHIPPED_MODELS)}") from None
