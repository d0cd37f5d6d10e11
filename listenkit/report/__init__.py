"""Stage 5, report: evidence files and the verdict ledger, plots, the command line."""
