"""From metrics.json files to the summary, tables, charts and comparisons. Imports no torch."""
