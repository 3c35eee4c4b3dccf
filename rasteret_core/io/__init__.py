"""Object access: byte stores for local files, HTTP and S3, the process-wide I/O runtime, freshness checks."""
