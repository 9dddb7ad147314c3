// A training run's settings as the API describes them (GET /api/runs/defaults, derived from the
// runconfig package): each setting's label, unit, bounds, choices and the methods it applies to,
// the form's sections and the app objects it names (a mask set, a finished run). From it: how a
// run's settings read (only those that apply to its method, budgets in grey levels /255), and
// what applies while a form is filled in. The pages keep no list of their own.
// Usage: import { loadRunSettings, configEntries, configValue } from "../lib/run-settings.js";
//   const settings = await loadRunSettings();   // fetched once per page load
//   configEntries(run.config) -> [{key, label, value}];  configValue("eps", 8 / 255) -> "8/255"

import { api } from "./api.js";
import { greyLevels } from "./format.js";

let loading = null;
let described = null;

/** The description, fetched once (a failed fetch is tried again on the next call). */
export function loadRunSettings() {
  if (!loading) {
    loading = api("/api/runs/defaults").then((d) => {
      described = {
        ...d,
        byName: new Map([...d.fields, ...d.refs].map((item) => [item.name, item])),
        refNames: new Set(d.refs.map((r) => r.name)),
      };
      return described;
    }).catch((err) => {
      loading = null;
      throw err;
    });
  }
  return loading;
}

/** The setting or reference of that name (null before loadRunSettings() or when unknown). */
/** The setting a field of a run's reproducibility record belongs to, when it is named
 * otherwise (the mask set's hash belongs to the mask set), or null. */
export function recordOwner(key) {
  return (described && (described.record_owners || {})[key]) || null;
}

export function settingOf(name) {
  return (described && described.byName.get(name)) || null;
}

/** Whether a setting (or reference) applies to a config: its method is one of the item's, and
 * the setting it depends on (`when`) holds one of its values. `value(name)` reads the config. */
export function applies(item, value) {
  const method = value(described.method_setting);
  if (method !== undefined && method !== null && !item.methods.includes(method)) return false;
  return whenHolds(item, value);
}

/** Only the `when` part of applies(): the setting this one depends on holds one of its values. */
export function whenHolds(item, value) {
  if (!item.when) return true;
  const current = value(item.when.field);
  return item.when.values.some((v) => String(v) === String(current));
}

/** The label of a setting on a run of this method (some read differently on some methods). */
export function labelOf(item, method, key = "label") {
  const own = (item.by_method || {})[method];
  return own ? own[key] : item[key];
}

/** Every setting and reference in the form's order: by section, a reference right after the
 * setting it depends on (else first in its section). [{section, items: [...]}] */
export function sectionsInOrder() {
  return described.sections.map((section) => {
    const fields = described.fields.filter((f) => f.section === section.key);
    const items = [];
    const refs = described.refs.filter((r) => r.section === section.key);
    items.push(...refs.filter((r) => !r.when || !fields.some((f) => f.name === r.when.field)));
    for (const f of fields) {
      items.push(f);
      items.push(...refs.filter((r) => r.when && r.when.field === f.name));
    }
    return { section, items };
  });
}

/** A setting's value as people read it: budgets in grey levels, named choices by their names,
 * what an unset value or 0 means where it means something, references as #id, lists joined. */
export function configValue(key, value) {
  const item = settingOf(key);
  if (item && described.refNames.has(key)) return value ? `#${value}` : "none";
  if (value === null || value === undefined) return (item && item.none_means) || "none";
  if (item) {
    if (value === 0 && item.zero_means) return item.zero_means;
    if (item.budget) return Array.isArray(value) ? value.map(greyLevels).join(", ") : greyLevels(value);
    const named = (item.choice_labels || {})[String(value)];
    if (named) return named;
  }
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (Array.isArray(value)) return value.join(", ");
  if (typeof value === "object") { // a group of values reads "name: value, ...", not as JSON
    return Object.entries(value).map(([k, v]) => `${k}: ${configValue("", v)}`).join(", ");
  }
  return String(value);
}

/** The settings that apply to a run's method, in the form's order: [{key, label, value}]. A
 * standard run has no training ε (its ε is where AutoAttack and the per-epoch check attack);
 * each method's own settings show only on its runs. Empty before loadRunSettings(). */
export function configEntries(config) {
  const c = config || {};
  if (!described) return [];
  const value = (name) => c[name];
  const rows = [];
  for (const { items } of sectionsInOrder()) {
    for (const item of items) {
      if (!(item.name in c) || !applies(item, value)) continue;
      rows.push({ key: item.name, label: labelOf(item, c[described.method_setting]), value: configValue(item.name, c[item.name]) });
    }
  }
  return rows;
}
