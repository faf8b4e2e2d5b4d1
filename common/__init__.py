"""The shared layer: data registry, trainer, results and reports, claim checks, plotting, CLI.

It knows nothing of any chapter; chapters import it.
"""
