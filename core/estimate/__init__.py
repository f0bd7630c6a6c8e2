"""Memory estimates before launch: model architecture numbers, the per-GPU peak, a verdict and the fixes."""
