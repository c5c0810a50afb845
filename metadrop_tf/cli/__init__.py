"""The programs: flags, --help, a quiet start-up, thread pools, and the one library call of each
program."""
