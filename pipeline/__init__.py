"""Orchestration: stages wired by bounded queues in threads, shutdown, progress and the CLI."""
