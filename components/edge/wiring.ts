/**
 * What the balancer's container and commands need from the front door: its ports, labels and scheme, and
 * the command that installs the secret files (its script, environment and secret stdin).
 */
import * as pulumi from "@pulumi/pulumi";
import type { BalancerSettings, EdgeSettings, FleetSecrets } from "../config/settings";
import { decodeConfigValue } from "../config/decode";
import { BALANCER_CONTAINER_PORT } from "../nginx/paths";
import { EDGE_TLS_CONTAINER_PORT } from "./render";
import { EDGE_INSTALL_SCRIPT, EDGE_RENEW_SCRIPT, EDGE_SCRIPT } from "./scripts";
import { renderEdgeSecrets } from "./secrets";

/** No client keys, no TLS, the operator endpoints refused: the front door of a balancer given none. */
export const OPEN_EDGE_SETTINGS: EdgeSettings = {
    clients: [],
    replicaKey: false,
    tls: { mode: "off", http: "off", httpPort: 80, hosts: ["localhost", "127.0.0.1"] },
    exposeMetrics: false,
};

/** The secret bundle of a front door without keys or a provided pair. */
export function emptyEdgeBundle(): string {
    return renderEdgeSecrets({ clientKeys: [] });
}

/** The self-signed certificate's names as openssl's subjectAltName takes them: `DNS:localhost,IP:127.0.0.1`. */
export function subjectAltNames(hosts: string[]): string {
    return hosts.map((h) => (/^\d+\.\d+\.\d+\.\d+$/.test(h) ? `IP:${h}` : `DNS:${h}`)).join(",");
}

/**
 * The ports the balancer's container publishes: the public one (`lbPort` on `lbBind`) on nginx's plain
 * port, or with TLS on its HTTPS port; with TLS and `http: redirect`, plain HTTP on `tls.httpPort` too.
 */
export function edgePorts(edge: EdgeSettings, publish: Pick<BalancerSettings, "port" | "bind">): Array<{ internal: number; external: number; ip: string }> {
    if (edge.tls.mode === "off") {
        return [{ internal: BALANCER_CONTAINER_PORT, external: publish.port, ip: publish.bind }];
    }
    return [
        { internal: EDGE_TLS_CONTAINER_PORT, external: publish.port, ip: publish.bind },
        ...(edge.tls.http === "redirect" ? [{ internal: BALANCER_CONTAINER_PORT, external: edge.tls.httpPort, ip: publish.bind }] : []),
    ];
}

/** `http` or `https`: the scheme of the balancer's endpoint. */
export function edgeScheme(edge: EdgeSettings): "http" | "https" {
    return edge.tls.mode === "off" ? "http" : "https";
}

/**
 * Values of the balancer's `clientKeys` and `tls` labels (`vllm-nginx.client-keys`, `vllm-nginx.tls`):
 * whether it checks keys, not how many, since a new label value replaces the container and a key added
 * is a reload.
 */
export function edgeLabels(edge: EdgeSettings): { clientKeys: "on" | "off"; tls: "on" | "off" } {
    return { clientKeys: edge.clients.length > 0 ? "on" : "off", tls: edge.tls.mode === "off" ? "off" : "on" };
}

/**
 * The secret stdin of the edge install: every client key, the replicas' key (which nginx checks itself
 * when there are no client keys), and a provided TLS pair. A secret output, so that the command's stdin is encrypted in state.
 */
export function edgeSecretBundle(edge: EdgeSettings, secrets: FleetSecrets = {}): pulumi.Output<string> {
    const none = pulumi.output<string | undefined>(undefined);
    return pulumi.secret(
        pulumi
            .all([secrets.clientKeys ?? none, secrets.apiKey ?? none, secrets.tlsCertificate ?? none, secrets.tlsKey ?? none])
            .apply(([clientKeys, apiKey, certificate, privateKey]) => {
                const keyed = edge.clients.length > 0;
                const pairs = keyed && clientKeys ? (decodeConfigValue(clientKeys) as Array<{ name: string; key: string }>) : [];
                return renderEdgeSecrets({
                    clientKeys: pairs.map(({ name, key }) => ({ name, key })),
                    replicaKey: apiKey || undefined,
                    tls: edge.tls.mode === "provided" && certificate && privateKey ? { certificate, privateKey } : undefined,
                });
            }),
    );
}

/**
 * The edge install as a `command.local.Command`'s `create` (and `update`) and `environment`, given the
 * environment that reaches the balancer's container on its engine (`rotationEnvironment`); its `stdin`
 * is `edgeSecretBundle`. Plain values only: the secrets travel on stdin.
 */
export function edgeInstallCommand(edge: EdgeSettings, balancer: pulumi.Input<Record<string, string>>): { create: string; environment: pulumi.Output<Record<string, string>> } {
    return {
        create: 'sh -c "$EDGE_INSTALL_SH" edge-install.sh',
        environment: edgeEnvironment(edge, balancer, { EDGE_INSTALL_SH: EDGE_INSTALL_SCRIPT, TLS_MODE: edge.tls.mode }),
    };
}

/** What an edge script run where `pulumi up` runs reads: the balancer's, edge.sh, the certificate's names, and `own`. */
function edgeEnvironment(edge: EdgeSettings, balancer: pulumi.Input<Record<string, string>>, own: Record<string, string>): pulumi.Output<Record<string, string>> {
    return pulumi.output(balancer).apply((environment): Record<string, string> => ({
        ...environment,
        ...own,
        EDGE_SH: EDGE_SCRIPT,
        TLS_NAMES: edge.tls.mode === "self-signed" ? subjectAltNames(edge.tls.hosts) : "",
    }));
}

/**
 * The certificate check at the end of every `up` (see `afterEveryUp`): a self-signed pair with under 30
 * days left is made again; a provided one gets a warning. Undefined without TLS.
 */
export function edgeRenewCommand(edge: EdgeSettings, balancer: pulumi.Input<Record<string, string>>): { commandLine: string; environment: pulumi.Output<Record<string, string>> } | undefined {
    if (edge.tls.mode === "off") {
        return undefined;
    }
    return {
        commandLine: 'sh -c "$EDGE_RENEW_SH" edge-renew.sh',
        environment: edgeEnvironment(edge, balancer, { EDGE_RENEW_SH: EDGE_RENEW_SCRIPT }),
    };
}
