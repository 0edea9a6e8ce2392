/** The `vllm serve` command line and environment of a replica, from its plan and the fleet's settings. */
import * as pulumi from "@pulumi/pulumi";
import type { FleetSecrets, ReplicaSettings, ServeSettings } from "../config";
import { envList } from "../docker/proxy";
import { VLLM_PORT, type ReplicaPlan } from "../planning";

/** Where the Hugging Face cache is mounted in the container, as in vLLM's docs. */
export const HF_CACHE_PATH = "/root/.cache/huggingface";
/** vLLM's compile cache (torch.compile artifacts), shared by the replicas through a volume. */
export const VLLM_CACHE_PATH = "/root/.cache/vllm";

/**
 * Probes vLLM's `/health` from inside the container, with curl where the image has it and Python (which
 * every vLLM image has) otherwise. Proxies are bypassed: the probe talks to the loopback.
 */
export const REPLICA_HEALTH_PROBE =
    `curl -fsS --noproxy '*' -o /dev/null http://127.0.0.1:${VLLM_PORT}/health || ` +
    `python3 -c "import urllib.request as r; r.build_opener(r.ProxyHandler({})).open('http://127.0.0.1:${VLLM_PORT}/health', timeout=4)"`;

/** The arguments after the image's `vllm serve` entrypoint: the model first, then flags. */
export function vllmServeArgs(serve: ServeSettings, plan: Pick<ReplicaPlan, "tensorParallelSize">): string[] {
    return [
        serve.model,
        "--host",
        "0.0.0.0",
        "--port",
        String(VLLM_PORT),
        ...(serve.servedModelName ? ["--served-model-name", ...([] as string[]).concat(serve.servedModelName)] : []),
        ...(plan.tensorParallelSize > 1 ? ["--tensor-parallel-size", String(plan.tensorParallelSize)] : []),
        // The adapters themselves are loaded at run time by the balancer (see `ServeSettings.lora`).
        ...(serve.lora ? ["--enable-lora"] : []),
        ...serve.vllmArgs,
    ];
}

/**
 * Host folders a replica mounts read-only, at the same path, for the adapters it loads from a path on the
 * host (an adapter from the Hugging Face hub downloads into the cache like the model).
 */
export function adapterMounts(serve: Pick<ServeSettings, "lora">): { hostPath: string; containerPath: string; readOnly: true }[] {
    return (serve.lora?.folders ?? []).map((folder) => ({ hostPath: folder, containerPath: folder, readOnly: true }));
}

/**
 * The environment LoRA needs: vLLM's runtime endpoints (`/v1/load_lora_adapter`, `/v1/unload_lora_adapter`),
 * through which the balancer loads a group's adapters. The front door never forwards them.
 */
export function loraEnv(serve: Pick<ServeSettings, "lora">): Record<string, string> {
    return serve.lora ? { VLLM_ALLOW_RUNTIME_LORA_UPDATING: "True" } : {};
}

/** The container's environment; secret when it carries the HF token or the API key. */
export function replicaEnv(
    runtime: Pick<ReplicaSettings, "backend" | "cpuKvCacheSpace">,
    plan: Pick<ReplicaPlan, "threadsBind">,
    proxyEnv: Record<string, string>,
    secrets: FleetSecrets,
    extra: Record<string, string> = {},
): pulumi.Input<string[]> {
    const plain = [
        ...(runtime.backend === "gpu"
            ? // Docker and CUDA number GPUs differently unless told to use PCI order (vllm#28132).
              ["CUDA_DEVICE_ORDER=PCI_BUS_ID"]
            : [`VLLM_CPU_KVCACHE_SPACE=${runtime.cpuKvCacheSpace}`, `VLLM_CPU_OMP_THREADS_BIND=${plan.threadsBind ?? "auto"}`]),
        ...envList(proxyEnv),
        // A model group's own environment (its `env`), after the program's: it may set what these leave unset.
        ...Object.entries(extra).map(([name, value]) => `${name}=${value}`),
    ];
    const secretVars = Object.entries({ HF_TOKEN: secrets.hfToken, VLLM_API_KEY: secrets.apiKey }).filter(
        (entry): entry is [string, pulumi.Output<string>] => entry[1] !== undefined,
    );
    if (secretVars.length === 0) {
        return plain;
    }
    return pulumi.secret(pulumi.all(secretVars.map(([name, value]) => pulumi.interpolate`${name}=${value}`)).apply((vars) => [...plain, ...vars]));
}
