"""The `ember` command line: one module per subcommand, argparse only."""
