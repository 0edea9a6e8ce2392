import type * as pulumi from "@pulumi/pulumi";

/**
 * Adjusts what a component creates without forking it, as sst's `transform` does: an object is merged
 * into the child's args (top-level keys replace), a function may change the args and options in place.
 *
 * @example
 * // Add a label to every replica container.
 * transform: { replicaContainer: (args) => { args.labels = [...(args.labels as any[]), { label: "team", value: "ml" }]; } }
 */
export type Transform<T> = Partial<T> | ((args: T, opts: pulumi.CustomResourceOptions, name: string) => void);

/** Applies `transform` (if any) to a child's name, args and options, and returns what to create it with. */
export function applyTransform<T extends object>(transform: Transform<T> | undefined, name: string, args: T, opts: pulumi.CustomResourceOptions): [string, T, pulumi.CustomResourceOptions] {
    if (transform === undefined) {
        return [name, args, opts];
    }
    if (typeof transform === "function") {
        transform(args, opts, name);
        return [name, args, opts];
    }
    return [name, { ...args, ...transform }, opts];
}
