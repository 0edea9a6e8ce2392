/**
 * The relay between the balancer and the replicas of other hosts: nginx's stream module at both ends,
 * with mutual TLS, so that nothing on the network between hosts reads a prompt or reaches a replica.
 *
 * - The egress runs on the balancer's host, on the stack's network at a fixed address. It listens on one
 *   port per replica of another host (open to the containers of the network's upper half, the balancer
 *   and monitoring, not to replicas), and opens TLS to that host's gate: it presents its own certificate,
 *   accepts only the gate's, and names the replica in the TLS server name.
 * - The gate runs on every other host, publishes one port on the host's address, accepts only the
 *   egress's certificate, and passes the connection to the replica the server name names. Replicas of
 *   other hosts publish nothing.
 *
 * Each end makes its own key at its first start, and the key never leaves its container: the install
 * (`scripts/install.sh`) gives each end the other ends' certificates, and nothing secret reaches the
 * stack's state. Pure: the plan in, nginx's stream config out.
 */
import type { ReplicaPlan } from "../planning";

/** Where an end keeps its key, its certificate (`self.key`, `self.crt`) and its peers' certificates (`peers/`). */
export const RELAY_DIR = "/var/lib/vllm-nginx/relay";
/** Where the ends' stream config goes (included inside `stream {}` by the image's nginx.conf). */
export const RELAY_CONFIG_FILE = "/etc/nginx/stream.d/relay.conf";
/** Every end's certificate names `*.relay.vllm-nginx`; the egress asks a gate for `<replica>.relay.vllm-nginx`. */
export const RELAY_DOMAIN = "relay.vllm-nginx";
/** How long each end's certificate lasts; a new container makes a new one, and the install exchanges it. */
export const RELAY_CERTIFICATE_DAYS = 3650;

/** The TLS server name the egress sends for a replica, and the gate routes on. */
export function relayServerName(replica: string): string {
    return `${replica}.${RELAY_DOMAIN}`;
}

/** One replica of another host, as the relay reaches it. */
export interface RelayRoute {
    replica: string;
    host: string;
    /** The egress's port for this replica, on the stack's network of the balancer's host. */
    egressPort: number;
    /** `address:port` of the replica's host's gate. */
    gate: string;
    /** `ip:port` of the replica on its host's stack network, where the gate sends it. */
    replicaAddress: string;
}

/** The routes of the replicas that run beyond the balancer's host (those with a relay in their plan). */
export function relayRoutes(slots: ReplicaPlan[]): RelayRoute[] {
    return slots.flatMap((slot) =>
        slot.relay ? [{ replica: slot.name, host: slot.host, egressPort: slot.relay.egressPort, gate: slot.relay.gate, replicaAddress: slot.relay.replica }] : [],
    );
}

/** What both ends' configs share: TLS 1.3, and idle streams kept as long as the balancer waits for a replica. */
interface RelayTiming {
    /** nginx's `proxy_timeout`: the balancer's `readTimeout` in seconds, so that the relay never ends a stream the balancer still waits on. */
    timeoutSeconds: number;
}

/**
 * The egress's stream config: per replica, a listener on the stack's network open to `allow` (a CIDR)
 * only, which opens TLS to the replica's gate.
 */
export function renderEgressConfig(routes: RelayRoute[], options: RelayTiming & { allow: string }): string {
    const lines = ["# vllm-nginx relay (egress): rendered by the program, installed and reloaded by `pulumi up`."];
    for (const route of routes) {
        lines.push(
            `# ${route.replica} on host ${route.host}`,
            "server {",
            `    listen ${route.egressPort};`,
            `    allow ${options.allow};`,
            "    deny all;",
            `    proxy_pass ${route.gate};`,
            "    proxy_connect_timeout 5s;",
            `    proxy_timeout ${options.timeoutSeconds}s;`,
            "    proxy_ssl on;",
            "    proxy_ssl_protocols TLSv1.3;",
            `    proxy_ssl_certificate ${RELAY_DIR}/self.crt;`,
            `    proxy_ssl_certificate_key ${RELAY_DIR}/self.key;`,
            "    proxy_ssl_verify on;",
            `    proxy_ssl_trusted_certificate ${RELAY_DIR}/peers/${peerFile(route.host)};`,
            "    proxy_ssl_server_name on;",
            `    proxy_ssl_name ${relayServerName(route.replica)};`,
            "    proxy_ssl_session_reuse on;",
            "}",
        );
    }
    return `${lines.join("\n")}\n`;
}

/**
 * A gate's stream config: one TLS listener that accepts only the egress's certificate and passes each
 * connection to the replica its server name names; any other name reaches nothing.
 */
export function renderGateConfig(routes: RelayRoute[], options: RelayTiming & { port: number }): string {
    return `${[
        "# vllm-nginx relay (gate): rendered by the program, installed and reloaded by `pulumi up`.",
        "map $ssl_server_name $vllm_nginx_replica {",
        '    default "";',
        ...routes.map((route) => `    ${relayServerName(route.replica)} ${route.replicaAddress};`),
        "}",
        "server {",
        `    listen ${options.port} ssl;`,
        "    ssl_protocols TLSv1.3;",
        `    ssl_certificate ${RELAY_DIR}/self.crt;`,
        `    ssl_certificate_key ${RELAY_DIR}/self.key;`,
        "    ssl_verify_client on;",
        `    ssl_client_certificate ${RELAY_DIR}/peers/${EGRESS_PEER_FILE};`,
        "    ssl_handshake_timeout 10s;",
        "    proxy_pass $vllm_nginx_replica;",
        "    proxy_connect_timeout 5s;",
        `    proxy_timeout ${options.timeoutSeconds}s;`,
        "}",
    ].join("\n")}\n`;
}

/** The file a gate keeps the egress's certificate in. */
export const EGRESS_PEER_FILE = "egress.crt";

/** The file the egress keeps a host's gate certificate in. */
export function peerFile(host: string): string {
    return `gate-${host}.crt`;
}

/**
 * The shell lines that make an end's key and self-signed certificate in `dir`, once: an EC P-256 key that
 * never leaves the end, and a certificate for `*.relay.vllm-nginx`, which its peers trust as it is.
 */
export function relayIdentityScript(dir: string = RELAY_DIR): string {
    return [
        `mkdir -p ${dir}/peers`,
        `if [ ! -s ${dir}/self.crt ]; then`,
        "  umask 077",
        `  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days ${RELAY_CERTIFICATE_DAYS} -subj /CN=${RELAY_DOMAIN} ` +
            `-addext subjectAltName=DNS:*.${RELAY_DOMAIN} -keyout ${dir}/self.key.new -out ${dir}/self.crt.new 2>/dev/null`,
        `  mv ${dir}/self.key.new ${dir}/self.key`,
        `  mv ${dir}/self.crt.new ${dir}/self.crt`,
        "fi",
    ].join("\n");
}

/**
 * The command an end's container runs: it makes the end's key and certificate at its first start (kept in
 * the container across restarts), then runs nginx, which serves no HTTP there.
 */
export function relayCommand(workers: number): string[] {
    const script = ["set -e", relayIdentityScript(), "mkdir -p /etc/nginx/stream.d", "rm -f /etc/nginx/conf.d/*.conf", `exec nginx -g "daemon off; worker_processes ${workers};"`].join("\n");
    return ["sh", "-c", script];
}
