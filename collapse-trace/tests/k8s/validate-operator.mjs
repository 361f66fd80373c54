// Validates Prometheus-operator manifests (ServiceMonitor, PodMonitor) against the operator's
// CRD schemas, as shipped by the npm package @kubernetes-models/prometheus-operator: one line
// per file, "FILE: passed" or "FILE: FAILED why"; exit 1 when any failed. Run by
// tests/web.rs from the directory `cargo xtask test` installed the packages into.
import fs from "node:fs";
import YAML from "yaml";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";
const kinds = { ServiceMonitor, PodMonitor };
let bad = 0;
for (const f of process.argv.slice(2)) {
  const doc = YAML.parse(fs.readFileSync(f, "utf8"));
  const K = kinds[doc.kind];
  if (!K) { console.log(`${f}: no schema for kind ${doc.kind}`); bad++; continue; }
  try { new K(doc).validate(); console.log(`${f}: passed`); }
  catch (e) { console.log(`${f}: FAILED ${e.message}`); bad++; }
}
process.exit(bad ? 1 : 0);
