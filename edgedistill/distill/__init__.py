"""Distillation: Proteus losses and heads, masking, grid alignment, the training loop and stage."""
