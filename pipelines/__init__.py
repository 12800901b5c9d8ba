"""Built-in pipelines written against the public streampipe API."""
