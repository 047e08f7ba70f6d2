"""The run folder: create, write, lock, read back (one typed reader), list and compare."""
