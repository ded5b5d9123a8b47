"""Eval: strategies side by side on a problem file, graded, with accuracy, confidence and cost."""
