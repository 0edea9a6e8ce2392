/**
 * What the integration tier, the end-to-end tier and the benchmark share: waiting, an HTTP/SSE client,
 * stand-in vLLM servers, real vLLM in Docker, the real nginx, the Docker engine, Prometheus text and percentiles.
 */
export * from "./docker";
export * from "./edge";
export * from "./http";
export * from "./nginx";
export * from "./prometheus";
export * from "./standin";
export * from "./stats";
export * from "./tls";
export * from "./vllm";
export * from "./wait";
