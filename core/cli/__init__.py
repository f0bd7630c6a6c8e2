"""The `tunedeck` command line: the parser, one module per command group, and the printers that follow a job."""
