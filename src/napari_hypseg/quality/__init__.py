"""The quality suite behind ``hypseg bench --suite``: cases, baselines, the run and its report."""
