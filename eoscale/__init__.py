"""eoscale: run satellite-image processing chains on every core, tile-exact, from shared memory."""

__version__ = "2.0.0.dev0"
