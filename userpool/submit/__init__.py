"""The submit language, from a submit description file to a cluster of job ads."""
