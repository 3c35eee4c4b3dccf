"""Benchmarks of Rasteret (run each as ``python -m bench.<name>``)."""
