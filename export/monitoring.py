"""The server's Prometheus metrics, at `/monitoring/prometheus/metrics` as TF Serving has them:
requests by model, version, API, protocol and status; their latency; the rows and requests each
batched model call held; and the text pieces sampled for streamed generation. A request's model
and version labels are those the server serves and has loaded, others count under "" (servables.py's
Models.metric_labels): the names clients send make no new series."""

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServingMetrics:
    """One registry per server, so two servers in one process (tests) keep their own counts."""

    def __init__(self):
        self.batched_requests = self.model_calls = 0  # over every version, for /healthz
        self.registry = CollectorRegistry()
        labels = ["model", "version", "api", "protocol"]
        self.requests = Counter(
            "garden_serving_requests",
            "Requests answered, by status (HTTP code or gRPC status name)",
            [*labels, "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "garden_serving_request_latency_seconds",
            "Time from reading a request to answering it",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "garden_serving_batch_rows",
            "Rows in one model call",
            ["model", "version"],
            buckets=SIZE_BUCKETS,
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            "garden_serving_batch_requests",
            "Requests joined into one model call",
            ["model", "version"],
            buckets=SIZE_BUCKETS,
            registry=self.registry,
        )

        self.streamed_pieces = Counter(
            "garden_serving_streamed_pieces",
            "Text pieces (one or more tokens each) sampled for streamed generation",
            ["model", "version"],
            registry=self.registry,
        )

    def observe(self, model: str, version: str, api: str, protocol: str, status: str, seconds: float) -> None:
        self.requests.labels(model, version, api, protocol, status).inc()
        self.latency.labels(model, version, api, protocol).observe(seconds)

    def batch(self, model: str, version: str, requests: int, rows: int) -> None:
        self.batched_requests, self.model_calls = self.batched_requests + requests, self.model_calls + 1
        self.batch_requests.labels(model, version).observe(requests)
        self.batch_rows.labels(model, version).observe(rows)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
