"""The training loop (`loop.py`) and what it is built from: setup, steps, recorder, evaluation."""

from unreid.engine.evaluate import evaluate_model, evaluate_samples
from unreid.engine.loop import train
from unreid.engine.setup import resolve_device, seed_everything

__all__ = ["evaluate_model", "evaluate_samples", "resolve_device", "seed_everything", "train"]
