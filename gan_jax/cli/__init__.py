"""The `gan-jax` command line: `main` (train, sample, eval, sweep, edit, export, ...) and
`edit_cli` (`gan-jax edit`). Parses flags, loads configs, turns errors into one line."""
