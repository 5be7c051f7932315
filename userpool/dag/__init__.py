"""DAGs on the global queue: DAGMan's language (parse.py), its checks, the rescue DAG."""
