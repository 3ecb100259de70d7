"""Saved ensembles (safetensors + JSON) and end-to-end prediction on new images."""

from clipfuse.ensemble.fit import describe_fit, fit_ensemble
from clipfuse.ensemble.predict import predict_images
from clipfuse.ensemble.saved import SavedEnsemble, backbone_records, load_ensemble

__all__ = [
    "SavedEnsemble",
    "backbone_records",
    "describe_fit",
    "fit_ensemble", "load_ensemble", "predict_images"]
