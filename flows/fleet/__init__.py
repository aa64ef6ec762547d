"""Run the Prefect side of a fleet on one host: a local server and a supervised set of workers."""
