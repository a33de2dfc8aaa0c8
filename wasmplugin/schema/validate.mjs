// Validates rendered Istio objects offline against Istio's own CRD schemas,
// as shipped (compiled to JSON-schema validators) by the npm package
// @kubernetes-models/istio, pinned in package.json beside this file.
//
//   node validate.mjs --node-modules <dir> [file]
//
// Install (what .ci/bootstrap runs, from the workspace root):
//   mkdir -p .tools/npm-schema
//   cp wasmplugin/schema/package.json wasmplugin/schema/package-lock.json .tools/npm-schema/
//   npm ci --silent --no-audit --no-fund --prefix .tools/npm-schema
// then <dir> is .tools/npm-schema/node_modules (the Rust tests' default).
//
// Input: JSON lines (one object per line) from `file`, or stdin. Each object
// is checked by the model class for its apiVersion/kind. Output: one
// "ok <kind>/<name>" line per valid object on stdout; every problem on
// stderr. Exit 0 when all are valid, 1 when any is not, 2 on a usage or
// setup problem (so a missing install is never mistaken for a verdict).
//
// Beyond the schema, unknown fields are reported. The compiled validators
// ignore them (CRD schemas have no additionalProperties: the API server
// *prunes* unknown fields), so a misspelled `failStrategy` would silently
// vanish on apply and Istio would use its default. To find them, each object
// is wrapped in Proxies recording which properties the validator reads:
//   - a typed object's validator reads every property its schema declares,
//     so a present key it never read is unknown;
//   - a map (additionalProperties) is enumerated, so all its keys are fine;
//   - a free-form object (x-kubernetes-preserve-unknown-fields: pluginConfig,
//     EnvoyFilter patch values) is neither read nor enumerated; it and
//     everything below it are left alone.
// CEL rules (x-kubernetes-validations) are not compiled into the package and
// are not checked here.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const PACKAGE = "@kubernetes-models/istio";

// apiVersion/kind -> module path inside the package. Only kinds cert-sync
// renders; anything else is an error rather than a silent pass.
const MODELS = {
  "extensions.istio.io/v1alpha1/WasmPlugin": "extensions.istio.io/v1alpha1/WasmPlugin.js",
  "networking.istio.io/v1alpha3/EnvoyFilter": "networking.istio.io/v1alpha3/EnvoyFilter.js",
  "networking.istio.io/v1/Gateway": "networking.istio.io/v1/Gateway.js",
  "networking.istio.io/v1/VirtualService": "networking.istio.io/v1/VirtualService.js",
};

function usage(message) {
  process.stderr.write(`validate.mjs: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  let nodeModules = process.env.CERTSYNC_SCHEMA_NODE_MODULES;
  let file;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--node-modules") {
      nodeModules = argv[++i];
    } else if (file === undefined) {
      file = argv[i];
    } else {
      usage(`unexpected argument ${argv[i]}`);
    }
  }
  if (!nodeModules) usage("--node-modules <dir> (or CERTSYNC_SCHEMA_NODE_MODULES) is required");
  return { nodeModules, file };
}

// The installed package must be the pinned one: a different version checks
// against different CRDs.
function checkPinnedVersion(nodeModules) {
  const here = new URL(".", import.meta.url);
  const wanted = JSON.parse(readFileSync(new URL("package.json", here), "utf8")).dependencies[PACKAGE];
  let installed;
  try {
    installed = JSON.parse(readFileSync(join(nodeModules, PACKAGE, "package.json"), "utf8")).version;
  } catch (e) {
    usage(`${PACKAGE} is not installed under ${nodeModules} (${e.code ?? e.message})`);
  }
  if (installed !== wanted) usage(`${PACKAGE} ${installed} is installed under ${nodeModules}, ${wanted} is pinned`);
}

async function loadModel(nodeModules, apiVersion, kind) {
  const rel = MODELS[`${apiVersion}/${kind}`];
  if (!rel) return undefined;
  const mod = await import(pathToFileURL(join(nodeModules, PACKAGE, rel)).href);
  return mod[kind];
}

// Deep copy of `value` in which every non-array object is a Proxy recording
// reads into `nodes` (see the header).
function track(value, path, nodes) {
  if (value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map((v, i) => track(v, `${path}/${i}`, nodes));
  const node = { path, keys: Object.keys(value), read: new Set(), enumerated: false, children: [] };
  nodes.push(node);
  const copy = {};
  for (const [k, v] of Object.entries(value)) {
    const start = nodes.length;
    copy[k] = track(v, `${path}/${k}`, nodes);
    node.children.push(...nodes.slice(start).map((n) => n.path));
  }
  return new Proxy(copy, {
    get(t, k, r) {
      if (typeof k === "string") node.read.add(k);
      return Reflect.get(t, k, r);
    },
    has(t, k) {
      if (typeof k === "string") node.read.add(k);
      return Reflect.has(t, k);
    },
    ownKeys(t) {
      node.enumerated = true;
      return Reflect.ownKeys(t);
    },
  });
}

function unknownFields(nodes) {
  const freeForm = new Set();
  const unknown = [];
  for (const node of nodes) {
    if (freeForm.has(node.path)) continue;
    if (!node.enumerated && node.read.size === 0) {
      node.children.forEach((c) => freeForm.add(c));
      continue;
    }
    if (node.enumerated) continue;
    for (const k of node.keys) if (!node.read.has(k)) unknown.push(`${node.path}/${k}`);
  }
  return unknown;
}

async function validateOne(nodeModules, obj) {
  const label = `${obj?.kind ?? "?"}/${obj?.metadata?.name ?? "?"}`;
  const Model = await loadModel(nodeModules, obj?.apiVersion, obj?.kind);
  if (!Model) return [`${label}: no schema for apiVersion ${obj?.apiVersion} kind ${obj?.kind}`];
  const nodes = [];
  const tracked = track(obj, "", nodes);
  const problems = [];
  try {
    // The model's validate() checks `this`; calling it on the tracked copy
    // (not on `new Model(obj)`, which copies every property) keeps the record
    // of what the schema reads.
    Model.prototype.validate.call(tracked);
  } catch (e) {
    problems.push(`${label}: ${e.message}`);
  }
  for (const path of unknownFields(nodes)) problems.push(`${label}: unknown field ${path}`);
  return problems;
}

async function main() {
  const { nodeModules, file } = parseArgs(process.argv.slice(2));
  checkPinnedVersion(nodeModules);
  const text = readFileSync(file ?? 0, "utf8");
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  if (lines.length === 0) usage("no objects on input");
  let failed = false;
  for (const [i, line] of lines.entries()) {
    let obj;
    try {
      obj = JSON.parse(line);
    } catch (e) {
      usage(`line ${i + 1} is not JSON: ${e.message}`);
    }
    const problems = await validateOne(nodeModules, obj);
    if (problems.length === 0) {
      process.stdout.write(`ok ${obj.kind}/${obj.metadata?.name}\n`);
    } else {
      failed = true;
      for (const p of problems) process.stderr.write(`invalid ${p}\n`);
    }
  }
  process.exit(failed ? 1 : 0);
}

await main();
