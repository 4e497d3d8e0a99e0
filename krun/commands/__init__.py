"""One thin module per subcommand (or small group): parse, call the runtime, map errors.

Each exposes `main(g, name, opts) -> int`: g holds the global options, name the
subcommand as typed, opts its options and arguments (see `krun.cli.COMMANDS`).
"""
