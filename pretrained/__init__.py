"""Pretrained CACE models shipped with cace_calc: one folder per model holding model.pt,
the training config that reproduces it and its model card (README.md)."""
