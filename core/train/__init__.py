"""The training loop, objective, optimizer/scheduler registry and resumable state."""
