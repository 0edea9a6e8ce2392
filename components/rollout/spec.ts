/**
 * The fleet's spec, known before anything is created: a digest of every setting that replicas are created
 * from (what they serve, how they run, their image's inputs, proxies, secrets). When it differs from the
 * one the last deployment exported, this update rolls the replicas, and can say so at preview. One spec per
 * model group (the first group's by default): a change to one group rolls that group alone.
 */
import { createHash } from "crypto";
import * as path from "path";
import type { FleetSettings } from "../config";
import { groupServe, type ModelGroupSettings } from "../config/groups";
import { contextDigest } from "../docker/build";

export function fleetSpec(settings: FleetSettings, secretsDigest = "", group: ModelGroupSettings = settings.groups[0]): string {
    const build = settings.images.vllmBuild;
    const image = group.vllmImage
        ? { pull: group.vllmImage }
        : build
          ? { build: { ...build, context: contextDigest(path.resolve(build.context), build.dockerfile) } }
          : { pull: settings.images.vllmImage };
    // The order replicas first start in does not change what they run; a group has its own startup timeout.
    const replica: Partial<FleetSettings["replica"]> = { ...settings.replica, startupTimeoutSeconds: group.startupTimeoutSeconds };
    delete replica.warmFirstReplica;
    return createHash("sha256")
        .update(JSON.stringify({ serve: groupServe(group), replica, image, proxy: settings.proxy, secrets: secretsDigest }))
        .digest("hex")
        .slice(0, 16);
}
