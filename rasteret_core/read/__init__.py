"""Pixel reads: plan tiles and byte ranges, fetch and decode them, assemble grids, xarray, points and statistics."""
