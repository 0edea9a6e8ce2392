/**
 * The fleet's spec, known before anything is created: a digest of every setting that replicas are created
 * from (what they serve, how they run, their image's inputs, proxies, secrets). When it differs from the
 * one the last deployment exported, this update rolls the replicas, and can say so at preview.
 */
import { createHash } from "crypto";
import * as path from "path";
import type { FleetSettings } from "../config";
import { contextDigest } from "../docker/build";

export function fleetSpec(settings: FleetSettings, secretsDigest = ""): string {
    const build = settings.images.vllmBuild;
    const image = build ? { build: { ...build, context: contextDigest(path.resolve(build.context), build.dockerfile) } } : { pull: settings.images.vllmImage };
    // The order replicas first start in does not change what they run.
    const replica: Partial<FleetSettings["replica"]> = { ...settings.replica };
    delete replica.warmFirstReplica;
    return createHash("sha256")
        .update(JSON.stringify({ serve: settings.serve, replica, image, proxy: settings.proxy, secrets: secretsDigest }))
        .digest("hex")
        .slice(0, 16);
}
