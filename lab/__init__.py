"""The fleet lab and the throwaway PostgreSQL cluster: kept out of the installed etlctl."""
