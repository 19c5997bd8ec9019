"""Ingest: input files to validated rows (the tables' schema, value readers, file readers, row validation,
and the parallel import of large CSVs); `lib.store` writes what it accepts in one transaction."""
