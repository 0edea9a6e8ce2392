/**
 * One problem with one stack config key: what was given and what is allowed. Planning reports them by
 * key; config parsing collects them with its own and shows them all at once.
 */
export interface KeyProblem {
    /** The config key without its namespace (`gpus`), or undefined for the stack itself (its name). */
    key?: string;
    value: unknown;
    allowed: string;
}

/** Collects problems as a function of typed inputs finds them. */
export class Problems {
    readonly list: KeyProblem[] = [];

    add(key: string | undefined, value: unknown, allowed: string): void {
        this.list.push({ key, value, allowed });
    }
}
