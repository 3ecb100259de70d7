"""Saved ensembles (safetensors + JSON) and end-to-end prediction on new images."""
