"""The study: its configuration, axes, plan of typed jobs, builders, runner, dry run,
data checks, locks."""
