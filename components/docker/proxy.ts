import type { ProxySettings } from "../config";

/** Hosts that must never go through a proxy: health checks and traffic inside the host. */
const ALWAYS_DIRECT = ["localhost", "127.0.0.1"];

/**
 * Proxy variables in both spellings, as tools differ in which they read. Used as build args for every
 * image build and as environment for every container. Empty when no proxy is configured.
 */
export function proxyVariables(proxy: ProxySettings): Record<string, string> {
    if (proxy.httpProxy === undefined && proxy.httpsProxy === undefined) {
        return {};
    }
    const vars: Record<string, string> = {};
    const noProxy = [...(proxy.noProxy ? proxy.noProxy.split(",").map((h) => h.trim()) : []), ...ALWAYS_DIRECT].filter(
        (host, index, all) => host !== "" && all.indexOf(host) === index,
    );
    for (const [name, value] of [
        ["http_proxy", proxy.httpProxy],
        ["https_proxy", proxy.httpsProxy],
        ["no_proxy", noProxy.join(",")],
    ] as const) {
        if (value !== undefined) {
            vars[name] = value;
            vars[name.toUpperCase()] = value;
        }
    }
    return vars;
}

/** `KEY=value` pairs for a container's environment. */
export function envList(vars: Record<string, string>): string[] {
    return Object.entries(vars).map(([key, value]) => `${key}=${value}`);
}
