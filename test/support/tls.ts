/** Certificates made by a test, with the openssl command line: self-signed pairs a client can trust by name. */
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

export interface TestCertificate {
    /** PEM certificate (self-signed: clients pass it as their CA). */
    certificate: string;
    /** PEM private key. */
    privateKey: string;
}

/** The openssl binary, or an error that says how to install it. Tests never skip silently. */
export function requireOpenssl(): string {
    for (const candidate of ["/usr/bin/openssl", "/usr/local/bin/openssl"]) {
        if (fs.existsSync(candidate)) {
            return candidate;
        }
    }
    throw new Error("the openssl command is needed to make test certificates: `sudo apt-get install -y openssl` (Debian/Ubuntu)");
}

/**
 * A fresh self-signed EC P-256 (or RSA 2048) pair for `names` (openssl's subjectAltName form, e.g.
 * `IP:127.0.0.1,DNS:localhost`), valid for `days`.
 */
export function makeCertificate(names = "IP:127.0.0.1,DNS:localhost", days = 2, commonName = "vllm-nginx test", keyType: "ec" | "rsa" = "ec"): TestCertificate {
    const openssl = requireOpenssl();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vllm-nginx-cert-"));
    try {
        execFileSync(
            openssl,
            ["req", "-x509", ...(keyType === "ec" ? ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] : ["-newkey", "rsa:2048"]), "-nodes", "-days", String(days), "-subj", `/CN=${commonName}`, "-addext", `subjectAltName=${names}`, "-keyout", "key.pem", "-out", "cert.pem"],
            { cwd: dir, stdio: "pipe" },
        );
        return { certificate: fs.readFileSync(path.join(dir, "cert.pem"), "utf8"), privateKey: fs.readFileSync(path.join(dir, "key.pem"), "utf8") };
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
}
