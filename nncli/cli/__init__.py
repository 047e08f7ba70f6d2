"""The `nncli` command line: one module per command group; each parses, calls the library
and renders."""
