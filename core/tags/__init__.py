"""Auto-tagging with WD14-style ONNX taggers, and tag filtering that encodes the guides' pruning rules."""
