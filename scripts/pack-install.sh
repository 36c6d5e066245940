#!/usr/bin/env bash
# Proves that the packed package installs and runs on a machine without a C++
# compiler: `npm pack`, then `npm install <tarball>` in a clean temp directory
# with every compiler and make made unusable (PATH shims that fail) and npm
# told not to build, then `ternorm evaluate` on the shipped model from there.
# node-gyp-build (the "install" script) must find the prebuild for this
# platform in the tarball's prebuilds/ and never reach node-gyp.
#   npm run prebuild && bash scripts/pack-install.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

plat="$(node -p 'process.platform + "-" + process.arch')"
if [ ! -f "prebuilds/$plat/ternorm.node" ]; then
  echo "pack-install: prebuilds/$plat/ternorm.node is missing; run npm run prebuild first" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# prepare (tsc) runs as part of npm pack, so dist/ is current in the tarball.
tarball="$(npm pack --silent --pack-destination "$work" | tail -n 1)"
echo "pack-install: packed $tarball ($(du -h "$work/$tarball" | cut -f1))"
tar -tzf "$work/$tarball" >"$work/contents"
for f in package/prebuilds/linux-x64/ternorm.node package/prebuilds/linux-arm64/ternorm.node \
  package/dist/lib/cli/main.js package/models/base.tnm; do
  grep -qx "$f" "$work/contents" || { echo "pack-install: the tarball lacks $f" >&2; exit 1; }
done

# Every compiler and build tool a source build would call fails loudly.
mkdir -p "$work/shims"
for tool in cc gcc g++ c++ clang clang++ make cmake aarch64-linux-gnu-gcc aarch64-linux-gnu-g++; do
  printf '#!/bin/sh\necho "pack-install: %s is not available on this machine" >&2\nexit 127\n' \
    "$tool" >"$work/shims/$tool"
  chmod +x "$work/shims/$tool"
done

mkdir -p "$work/app"
cd "$work/app"
printf '{ "name": "pack-install-check", "version": "1.0.0", "private": true }\n' >package.json
export PATH="$work/shims:$PATH"
export CC=false CXX=false
# npm settings node-gyp reads: no source build, no headers to build against.
export npm_config_build_from_source=false
export npm_config_nodedir=/nonexistent-node-headers
export npm_config_node_gyp=/nonexistent/node-gyp
npm install --no-audit --no-fund --prefer-offline "$work/$tarball"
if [ -e node_modules/ternorm/build ]; then
  echo "pack-install: node_modules/ternorm/build exists: the install compiled instead of using the prebuild" >&2
  exit 1
fi

# The shipped model on a short text, through the installed CLI.
sed -n '1,40p' "$root/README.md" >text.txt
npx --no-install ternorm evaluate --model node_modules/ternorm/models/base.tnm --text text.txt \
  --json >eval.json
node -e '
const r = JSON.parse(require("fs").readFileSync("eval.json", "utf8"));
if (!(r.tokens > 1 && Number.isFinite(r.perplexity) && r.perplexity > 1))
  throw new Error("pack-install: unexpected evaluate output " + JSON.stringify(r));
console.log(`pack-install: ternorm evaluate from the installed tarball: ${r.tokens} tokens, perplexity ${r.perplexity.toFixed(3)}`);
'
# generate, when the CLI has it.
if npx --no-install ternorm --help 2>&1 | grep -q '^  generate'; then
  npx --no-install ternorm generate --model node_modules/ternorm/models/base.tnm \
    --prompt "The people" >generated.txt
  echo "pack-install: ternorm generate from the installed tarball: $(wc -c <generated.txt) bytes"
fi
echo "pack-install: ok"
