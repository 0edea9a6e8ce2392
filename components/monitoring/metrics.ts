/**
 * The metric names the rules, the dashboard and the status command read, as vLLM exports them
 * (`vllm/v1/metrics/loggers.py`, `PrometheusStatLogger`; labels `model_name` and `engine`; unchanged from
 * v0.11 to v0.32.0, whose every one the real-vLLM tier finds in Prometheus), plus the
 * FastAPI instrumentator's request counter and the nginx exporter's gauges. Counters appear with the
 * `_total` suffix that prometheus_client adds; histograms as `_bucket`, `_sum` and `_count`.
 */
export const VLLM = {
    running: "vllm:num_requests_running",
    waiting: "vllm:num_requests_waiting",
    /** 0..1. Replaces `vllm:gpu_cache_usage_perc`, hidden since v0.10. */
    kvCacheUsage: "vllm:kv_cache_usage_perc",
    promptTokens: "vllm:prompt_tokens_total",
    generationTokens: "vllm:generation_tokens_total",
    /**
     * Finished requests, labelled `finished_reason` (`stop`, `length`, `abort`, `error`, `repetition`).
     * A request its client aborted is not counted (v0.32.0 too): `abort` counts the engine's own aborts.
     */
    requestSuccess: "vllm:request_success_total",
    ttft: "vllm:time_to_first_token_seconds",
    /**
     * v0.11 renamed `vllm:time_per_output_token_seconds` to this (same buckets); the old name is still
     * exported in v0.11, hidden in v0.12 and gone in v0.13, so the rules read the new one.
     */
    interTokenLatency: "vllm:inter_token_latency_seconds",
    e2eLatency: "vllm:e2e_request_latency_seconds",
    queueTime: "vllm:request_queue_time_seconds",
    /** In tokens queried and tokens found, not in requests. */
    prefixCacheQueries: "vllm:prefix_cache_queries_total",
    prefixCacheHits: "vllm:prefix_cache_hits_total",
    /** prometheus-fastapi-instrumentator: labels `handler`, `method`, `status` (`2xx`, `4xx`, `5xx`). */
    httpRequests: "http_requests_total",
} as const;

/** nginx-prometheus-exporter (stub_status), the same names in Debian's 0.11 and upstream 1.x. */
export const NGINX = {
    /** 1 while the exporter can read stub_status, 0 when it cannot. */
    up: "nginx_up",
    connectionsActive: "nginx_connections_active",
    requests: "nginx_http_requests_total",
} as const;
