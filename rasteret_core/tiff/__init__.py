"""The GeoTIFF format: header and IFD parsing, GeoKeys to CRS, tile decoding."""
