// One-command build of the pages (npm run build): generates the TypeScript client from proto/
// into src/gen, bundles each page into dist/ (embedded in the liangma binary at compile time).
// `node build.mjs --check` builds into a temporary folder and fails unless src/gen and dist/
// are exactly what a fresh build gives, so the embedded assets never drift from the source.
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = fileURLToPath(new URL(".", import.meta.url));
const PAGES = [
  { name: "console", entry: "console.ts", copy: ["index.html", "console.css"] },
  { name: "code", entry: "code.ts", copy: ["index.html", "code.css"] },
];

function generate(out) {
  const template = join(mkdtempSync(join(tmpdir(), "liangma-buf-")), "buf.gen.yaml");
  writeFileSync(
    template,
    `version: v2\nplugins:\n  - local: ${join(here, "node_modules/.bin/protoc-gen-es")}\n    out: ${out}\n    opt: target=ts\n`,
  );
  rmSync(out, { recursive: true, force: true });
  execFileSync(join(here, "node_modules/.bin/buf"), ["generate", join(here, "../proto"), "--template", template], {
    stdio: "inherit",
  });
}

async function bundle(out) {
  rmSync(out, { recursive: true, force: true });
  for (const page of PAGES) {
    const pageOut = join(out, page.name);
    mkdirSync(pageOut, { recursive: true });
    await esbuild.build({
      entryPoints: [join(here, "src", page.name, page.entry)],
      bundle: true,
      minify: true,
      format: "esm",
      target: ["es2020"],
      legalComments: "none",
      outfile: join(pageOut, page.entry.replace(/\.ts$/, ".js")),
      logLevel: "warning",
    });
    for (const file of page.copy) cpSync(join(here, "src", page.name, file), join(pageOut, file));
  }
}

function files(root) {
  const found = new Map();
  const walk = (folder) => {
    for (const name of readdirSync(folder)) {
      const path = join(folder, name);
      if (statSync(path).isDirectory()) walk(path);
      else found.set(relative(root, path), readFileSync(path));
    }
  };
  walk(root);
  return found;
}

function same(expected, actual, what) {
  const [want, have] = [files(expected), files(actual)];
  const differing = [...new Set([...want.keys(), ...have.keys()])].filter(
    (name) => !want.has(name) || !have.has(name) || !want.get(name).equals(have.get(name)),
  );
  if (differing.length) {
    console.error(`${what} differs from a fresh build: ${differing.join(", ")}; run \`npm run build\` in web/`);
    process.exit(1);
  }
}

if (process.argv.includes("--check")) {
  const scratch = mkdtempSync(join(tmpdir(), "liangma-web-"));
  generate(join(scratch, "gen"));
  same(join(scratch, "gen"), join(here, "src/gen"), "web/src/gen");
  await bundle(join(scratch, "dist"));
  same(join(scratch, "dist"), join(here, "dist"), "web/dist");
  rmSync(scratch, { recursive: true, force: true });
  console.log("web: src/gen and dist match a fresh build");
} else {
  generate(join(here, "src/gen"));
  await bundle(join(here, "dist"));
  console.log("web: built dist/");
}
