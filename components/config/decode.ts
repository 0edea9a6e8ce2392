/** Structured values (lists, objects) reach the program as JSON text; plain values as strings. */
export function decodeConfigValue(value: string): unknown {
    const text = value.trim();
    if (text.startsWith("[") || text.startsWith("{")) {
        try {
            return JSON.parse(text);
        } catch {
            return value;
        }
    }
    return value;
}
