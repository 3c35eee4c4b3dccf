"""The collection as a table: its schema, Delta storage, records from STAC and tables, header enrichment."""
