/** IPv4 subnets of the stack's Docker network: parsing, addresses in them, and the range Docker hands out. */

export interface Subnet {
    /** The network address as an unsigned 32-bit number. */
    base: number;
    /** Number of addresses. */
    size: number;
}

/** Parses `a.b.c.d/n` with a prefix from /16 to /28 and a network-aligned address; undefined otherwise. */
export function parseSubnet(cidr: string): Subnet | undefined {
    const match = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(cidr);
    if (!match) {
        return undefined;
    }
    const octets = match.slice(1, 5).map(Number);
    const prefix = Number(match[5]);
    if (octets.some((o) => o > 255) || prefix < 16 || prefix > 28) {
        return undefined;
    }
    const address = ((octets[0] << 24) | (octets[1] << 16) | (octets[2] << 8) | octets[3]) >>> 0;
    const size = 2 ** (32 - prefix);
    if (address % size !== 0) {
        return undefined;
    }
    return { base: address, size };
}

/** The address of host number `host` in `subnet`, dotted. */
export function subnetAddress(subnet: Subnet, host: number): string {
    const address = subnet.base + host;
    return [24, 16, 8, 0].map((shift) => (address >>> shift) & 255).join(".");
}

/**
 * The upper half of the stack's subnet, where Docker hands out addresses to containers without a fixed
 * one (the balancer), so they never take a replica's address in the lower half.
 */
export function dynamicRange(cidr: string): string {
    const subnet = parseSubnet(cidr);
    if (subnet === undefined) {
        throw new Error(`networkSubnet ${JSON.stringify(cidr)} reached the network without validation`);
    }
    const prefix = 32 - Math.log2(subnet.size) + 1;
    return `${subnetAddress(subnet, subnet.size / 2)}/${prefix}`;
}

/**
 * A /24 for the stack's network, derived from the stack name so that stacks on one host get different
 * subnets. Replicas get fixed addresses in it, so nginx never has to resolve a replica's name.
 */
export function defaultSubnet(stack: string): string {
    let hash = 2166136261;
    for (const char of stack) {
        hash = Math.imul(hash ^ char.charCodeAt(0), 16777619) >>> 0;
    }
    return `172.29.${hash % 256}.0/24`;
}

export function isIpv4(text: string): boolean {
    const parts = text.split(".");
    return parts.length === 4 && parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255);
}

/** Whether an address is the loopback's (127.0.0.0/8, or `localhost`): nothing beyond this machine reaches it. */
export function isLoopback(address: string): boolean {
    return /^127\./.test(address) || address === "localhost";
}
