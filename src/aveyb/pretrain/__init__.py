"""Pretraining: config, loop, optimiser and schedule, checkpoints, distributed set-up."""
