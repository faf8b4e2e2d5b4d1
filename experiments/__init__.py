"""One module per chapter: each registers its tables and figures (config, presets, reported
numbers, claim checks). Modules here import nothing heavy; the science is in the chapter folders."""
