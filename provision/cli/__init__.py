"""The command line: options in, one call into the core, results out through provision.report."""
