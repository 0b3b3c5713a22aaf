"""The web: the views every worker serves (orders, a client's orders, stats, health), the metrics,
the dashboard and the lifecycle's drawing."""
