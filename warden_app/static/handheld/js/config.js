// The shell's configuration (no user data: the same page for everyone) and label helpers.

const element = document.getElementById("fieldsync-config");
export const config = element ? JSON.parse(element.textContent) : {};

export const POOR_FIX_M = 50;

export function label(list, code) {
  const names = (config.labels && config.labels[list]) || {};
  if (code === null || code === undefined || code === "") return "";
  return names[code] || String(code).replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());
}

export function options(list, codes) {
  return codes.map((code) => [code, label(list, code)]);
}

export function describe(type, data) {
  const d = data || {};
  if (type === "observation") return `Observation: ${label("incident_type", d.incident_type) || "(no type)"}`;
  if (type === "street_audit") return `Street audit: ${d.title || "untitled"}`;
  if (type === "audit_item") {
    return `Audit item: ${label("issue_type", d.issue_type) || "(no issue)"}${d.grade ? ` (grade ${d.grade})` : ""}`;
  }
  return type;
}
