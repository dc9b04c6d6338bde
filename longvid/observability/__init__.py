"""What the people who run the cluster see without opening run folders: application metrics
through Ray's metrics API (scraped by Prometheus from each node's metrics agent) and
structured (JSON) log lines that carry the run, segment, provider and task they concern."""
