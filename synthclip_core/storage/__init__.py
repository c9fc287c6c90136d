"""Storage: one run's outputs under any fsspec root, the commit rule, schemas, tables and lineage records."""
