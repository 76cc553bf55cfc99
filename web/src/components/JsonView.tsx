// Inputs and outputs as JSON. Secrets are redacted by the server already; anything that
// still looks like a secret reference or a credential is masked here as a second guard.

const MASK = "••••••";
const SECRETISH = /(secret|password|passwd|token|api[_-]?key|authorization|credential|private[_-]?key)/i;
const SECRET_REF = /\$\{\s*secrets\.|^secret:\/\/|^vault:/i;

/** `value` with every secret-looking key's value and every secret reference masked. */
export function masked(value: unknown, key = ""): unknown {
  if (SECRETISH.test(key) && value !== null && typeof value !== "object") return MASK;
  if (typeof value === "string") return SECRET_REF.test(value) ? MASK : value;
  if (Array.isArray(value)) return value.map((item) => masked(item));
  if (value !== null && typeof value === "object") {
    const record = value as Record<string, unknown>;
    if ("$secret" in record || "secret_ref" in record) return MASK;
    return Object.fromEntries(Object.entries(record).map(([k, v]) => [k, masked(v, k)]));
  }
  return value;
}

export function JsonView({ value, label }: { value: unknown; label: string }) {
  return (
    <pre className="json" aria-label={label} tabIndex={0}>
      {JSON.stringify(masked(value), null, 2) ?? "null"}
    </pre>
  );
}
