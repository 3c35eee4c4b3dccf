"""Geometry and grids: CRS-aware geometries, GDAL's rasterization rule, reprojection of grids and arrays."""
